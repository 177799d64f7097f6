"""What a schedule (`aws.schedule`) means in time: its next change, and the instance's hours in a
month, for `builder status` and the cost estimate. Pure: the clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from builder.cron import parse

HOURS_PER_MONTH = 730  # AWS's own month for monthly prices (8760 h / 12)
_LOOK_BACK = timedelta(days=32)  # far enough to see the last change of a monthly schedule


@dataclass(frozen=True)
class Change:
    action: str  # "start" or "stop"
    at: datetime  # UTC

    def in_words(self, zone: str) -> str:
        import zoneinfo

        local = self.at.astimezone(zoneinfo.ZoneInfo(zone))
        return f"{self.action} at {local:%a %Y-%m-%d %H:%M} {zone} ({self.at:%H:%M} UTC)"


def _changes(schedule, start: datetime, end: datetime) -> list[Change]:
    changes = []
    for action in ("start", "stop"):
        expression = getattr(schedule, action)
        if expression:
            changes += [Change(action, at) for at in parse(expression).times_between(schedule.timezone, start, end)]
    # A start and a stop at the same minute: the stop counts last (Auto Scaling's order is not documented).
    return sorted(changes, key=lambda change: (change.at, change.action == "stop"))


def next_change(schedule, now: datetime) -> Change | None:
    found = []
    for action in ("start", "stop"):
        expression = getattr(schedule, action)
        at = parse(expression).next_after(schedule.timezone, now) if expression else None
        if at is not None:
            found.append(Change(action, at))
    return min(found, key=lambda change: change.at) if found else None


@dataclass(frozen=True)
class MonthlyHours:
    hours: float
    basis: str  # how they were counted, for the estimate's reader


def monthly_hours(schedule, now: datetime) -> MonthlyHours:
    """The instance's hours in the 730 h from `now`, as the schedule runs it (no hand start/stop)."""
    if schedule is None:
        return MonthlyHours(HOURS_PER_MONTH, "always on (no aws.schedule)")
    if schedule.start is None:
        return MonthlyHours(
            HOURS_PER_MONTH, "counted as always on: the schedule only stops it, a start is by hand (an upper bound)"
        )
    end = now + timedelta(hours=HOURS_PER_MONTH)
    changes = _changes(schedule, now - _LOOK_BACK, end)
    before = [change for change in changes if change.at <= now]
    running = before[-1].action == "start" if before else True  # launch leaves it running
    on = timedelta()
    since = now
    for change in (change for change in changes if change.at > now):
        if running and change.action == "stop":
            on += change.at - since
            running = False
        elif not running and change.action == "start":
            since, running = change.at, True
    if running:
        on += end - since
    basis = f"from the schedule (start {schedule.start!r}, stop {schedule.stop!r}, {schedule.timezone})"
    if schedule.stop is None:
        basis += ": never stopped by it, so always on once started"
    return MonthlyHours(round(on.total_seconds() / 3600, 1), basis)
