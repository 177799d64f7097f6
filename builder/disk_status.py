"""The data volume's room as `builder status` shows it, on both targets, from the line the agent
reports (firstboot/disk_space.py: the instance's disk tag on AWS, its console locally)."""

from __future__ import annotations

from firstboot.disk_space import parse_line


def describe(line: str) -> dict | None:
    """{"line", "state", "warning"}; None before the agent's first line."""
    parsed = parse_line(line) if line and line != "-" else None
    if parsed is None:
        return None
    state, warning = parsed
    return {"line": line, "state": state, "warning": warning}


def disk_line(line: str) -> str | None:
    """One line for `builder status`: how full, and the warning in capitals; None before any."""
    described = describe(line)
    if described is None:
        return None
    return described["state"] + (f"; WARNING: {described['warning']}" if described["warning"] else "")
