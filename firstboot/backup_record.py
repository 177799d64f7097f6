"""The on-volume backups as the agent reports them: the record ai-platform-backup keeps of its runs.

Every `ai-platform-backup create` (daily, ai-platform-backup.timer) writes backups/last.json on the
data volume: its last attempt (when, ok or not, the reason) and the last good backup (its name, a
UTC stamp, when it was taken, its size). `firstboot health` reads it every minute and reports one
line, on the console and, on AWS, as the instance's backup tag (both read by `builder status`):

    ai-platform backup: last good 20250102T033012Z (1.2 GiB); ok
    ai-platform backup: last good 20250102T033012Z (1.2 GiB); warning: older than 48 h; last attempt …
    ai-platform backup: last good none; none yet

It warns when the last good backup is older than two periods of the timer, or the last attempt
failed. The line carries the backup's time, not its age, so it changes only when the state does;
whoever reads it works out the age.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firstboot.report import TAG_VALUE_LIMIT

RECORD = Path("backups/last.json")  # under the data volume
MARKER = "complete"  # in a backup's folder once it is whole and checked (the script's MARKER)
BACKUP_TAG = "ai-platform:backup"
LINE_PREFIX = "ai-platform backup:"
PERIOD_HOURS = 24  # ai-platform-backup.timer runs daily
STALE_AFTER_HOURS = 2 * PERIOD_HOURS
NAME_FORMAT = "%Y%m%dT%H%M%SZ"  # a backup's name: the UTC time it was taken
LINE = re.compile(rf"{LINE_PREFIX} last good (?P<name>\S+)(?: \((?P<size>[^)]*)\))?; (?P<verdict>.*)")


@dataclass(frozen=True)
class BackupReport:
    last_good: str | None  # the last good backup's name (a UTC stamp)
    size: int | None  # its bytes
    warnings: tuple[str, ...]
    age_hours: float | None  # at the time of the report

    @property
    def verdict(self) -> str:
        if self.warnings:
            return "warning: " + "; ".join(self.warnings)
        return "ok" if self.last_good else "none yet"

    def line(self, limit: int = TAG_VALUE_LIMIT) -> str:
        """One line of at most `limit` characters (an EC2 tag value); only the reasons are cut."""
        size = f" ({human_size(self.size)})" if self.size is not None else ""
        return f"{LINE_PREFIX} last good {self.last_good or 'none'}{size}; {self.verdict}"[:limit]

    def to_json(self) -> dict:
        return {
            "last_good": self.last_good,
            "bytes": self.size,
            "age_hours": None if self.age_hours is None else round(self.age_hours, 1),
            "warnings": list(self.warnings),
            "line": self.line(),
        }


def report(data_mount: Path, now: float | None = None) -> BackupReport:
    """What the record on the volume says now; a missing record is "none yet", an unreadable one a warning."""
    now = time.time() if now is None else now
    try:
        document = json.loads((data_mount / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return BackupReport(None, None, (), None)
    except (OSError, ValueError) as exc:
        return BackupReport(None, None, (f"{RECORD} is unreadable: {type(exc).__name__}",), None)
    if not isinstance(document, dict):
        return BackupReport(None, None, (f"{RECORD} is not a record",), None)
    warnings = []
    good = document.get("last_good") if isinstance(document.get("last_good"), dict) else {}
    name, size, age = good.get("name"), good.get("bytes"), None
    taken = taken_at(name) if isinstance(name, str) else None
    if name and taken is None:
        warnings.append(f"the last good backup's name {name!r} is not a time")
    elif taken is not None:
        age = (now - taken) / 3600
        if not (data_mount / RECORD.parent / name / MARKER).is_file():
            warnings.append(f"the last good backup {name} is gone")
        elif age > STALE_AFTER_HOURS:
            warnings.append(f"older than {STALE_AFTER_HOURS} h")
    attempt = document.get("last_attempt") if isinstance(document.get("last_attempt"), dict) else {}
    if attempt and not attempt.get("ok"):
        warnings.append(f"last attempt {attempt.get('started_at', '?')} failed: {attempt.get('reason') or '?'}")
    return BackupReport(name, size if isinstance(size, int) else None, tuple(warnings), age)


def taken_at(name: str) -> float | None:
    """The epoch time a backup's name says, None when it is not such a name."""
    with contextlib.suppress(ValueError):
        return float(calendar.timegm(time.strptime(name, NAME_FORMAT)))
    return None


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass(frozen=True)
class ReportedBackup:
    """A backup line read back (by `builder status`): the last good one's name, its time and the verdict."""

    last_good: str | None
    size: str | None
    taken_at: float | None
    warning: str | None  # the agent's warning; None when it said ok or none yet

    def age_hours(self, now: float) -> float | None:
        return None if self.taken_at is None else (now - self.taken_at) / 3600


def parse_line(line: str) -> ReportedBackup | None:
    """The agent's backup line read back; None when it is not one."""
    match = LINE.fullmatch(line.strip())
    if not match:
        return None
    name = None if match["name"] == "none" else match["name"]
    verdict = match["verdict"]
    warning = verdict.removeprefix("warning: ") if verdict.startswith("warning: ") else None
    return ReportedBackup(name, match["size"], taken_at(name) if name else None, warning)


def publish_backup_tag(ec2: Any, instance_id: str, line: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": BACKUP_TAG, "Value": line[:TAG_VALUE_LIMIT]}])
