"""The on-volume backup as `builder status` shows it, on both targets, from the line the agent reports
(firstboot/backup_record.py: the instance's backup tag on AWS, its console locally).

The line names the last good backup's time, not its age: the age is worked out here, now, and a
backup older than two periods of its timer is said to be so even when the agent has not said it yet
(an instance stopped since its last report says nothing new).
"""

from __future__ import annotations

import time

from firstboot.backup_record import STALE_AFTER_HOURS, parse_line


def describe(line: str, now: float | None = None) -> dict | None:
    """{"line", "last_good", "taken_at", "age_hours", "size", "warning"}; None before the agent's first line."""
    reported = parse_line(line) if line and line != "-" else None
    if reported is None:
        return None
    now = time.time() if now is None else now
    age = reported.age_hours(now)
    warnings = [reported.warning] if reported.warning else []
    if age is not None and age > STALE_AFTER_HOURS and not any("older than" in w for w in warnings):
        warnings.insert(0, f"older than {STALE_AFTER_HOURS} h")
    return {
        "line": line,
        "last_good": reported.last_good,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reported.taken_at)) if reported.taken_at else None,
        "age_hours": None if age is None else round(age, 1),
        "size": reported.size,
        "warning": "; ".join(warnings) or None,
    }


def summary(described: dict) -> str:
    """One line for `builder status`: the last good backup, its age and size, and the warning."""
    if described["last_good"]:
        taken = described["taken_at"].replace("T", " ").removesuffix("Z")[:16]
        size = f", {described['size']}" if described["size"] else ""
        text = f"last good {taken} UTC ({age_words(described['age_hours'])}{size})"
    else:
        text = "none yet"
    return text + (f"; WARNING: {described['warning']}" if described["warning"] else "")


def age_words(hours: float) -> str:
    if hours < 0:
        return "in the future: check the clocks"
    if hours < 1:
        return f"{round(hours * 60)} min ago"
    if hours < 48:
        return f"{hours:.0f} h ago"
    return f"{hours // 24:.0f} d {hours % 24:.0f} h ago"
