"""Five-field cron expressions as EC2 Auto Scaling's scheduled actions take them, and when they
next fire in a time zone.

Auto Scaling's `Recurrence` is crontab's format (minute, hour, day of month, month, day of week;
botocore's PutScheduledUpdateGroupAction documentation), evaluated in the action's `TimeZone`.
This is the subset every crontab reads alike: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`,
lists `a,b`, and the English three-letter month and day names. Day of week 0-7 (0 and 7: Sunday).
As in crontab, when both day of month and day of week are restricted, a day matching either fires.

Written here rather than taken from a library: croniter is no dependency of builder, and `status`
and the cost estimate need only "when next" over this subset, in a time zone.

Daylight saving: a wall time the clock skips (02:30 on the night clocks go forward) fires at the
same instant as the hour before the change would give it, i.e. an hour later on the new clock, as
Python's zoneinfo resolves it (fold 0); a wall time that happens twice fires the first time.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (what, lowest, highest, names: the name of value lowest + i)
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
FORMAT = 'five fields: minute hour day-of-month month day-of-week, e.g. "0 8 * * 1-5"'


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 Sunday .. 6 Saturday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    def fires_on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_day
        return by_day or by_weekday  # crontab: both restricted, either matches

    def times_between(self, zone: str, start: datetime, end: datetime) -> list[datetime]:
        """The instants (UTC) it fires at in [start, end), both aware datetimes."""
        tz = zoneinfo.ZoneInfo(zone)
        found = []
        day = start.astimezone(tz).date() - timedelta(days=1)  # a wall time shifted by DST may fall a day over
        last = end.astimezone(tz).date() + timedelta(days=1)
        while day <= last:
            if self.fires_on(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                        # Through UTC: a skipped wall time comes out as the real instant (fold 0).
                        instant = datetime.fromtimestamp(wall.timestamp(), timezone.utc)
                        if start <= instant < end:
                            found.append(instant)
            day += timedelta(days=1)
        return sorted(set(found))

    def next_after(self, zone: str, moment: datetime) -> datetime | None:
        """The first instant (UTC) after `moment` it fires at; None if not within ~5 years (31 Feb)."""
        window = timedelta(days=62)
        start = moment + timedelta(seconds=1)
        for _ in range(30):
            times = self.times_between(zone, start, start + window)
            if times:
                return times[0]
            start += window
        return None


def parse(expression: str) -> Cron:
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r} has {len(parts)} fields; a recurrence has {FORMAT}")
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in values[4])
    cron = Cron(expression, *map(frozenset, values[:4]), weekdays, parts[2] == "*", parts[4] == "*")
    days = [date(2024, month, day) for month in cron.months for day in cron.days if _real(month, day)]
    if cron.any_weekday and not days:  # e.g. "0 8 31 2 *": no such day
        raise CronError(f"{expression!r} names no day that exists (day of month {parts[2]}, month {parts[3]})")
    return cron


def _real(month: int, day: int) -> bool:
    try:
        date(2024, month, day)  # a leap year: 29 Feb counts
    except ValueError:
        return False
    return True


def _field(text: str, what: str, low: int, high: int, names: list[str] | None) -> set[int]:
    found: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, what, 1, high - low + 1, None)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _number(a, what, low, high, names), _number(b, what, low, high, names)
            if first > last:
                raise CronError(f"{what}: range {span!r} runs backwards")
        else:
            first = _number(span, what, low, high, names)
            last = high if step_text else first  # crontab: "5/15" means 5-max/15
        found.update(range(first, last + 1, step))
    return found


def _number(text: str, what: str, low: int, high: int, names: list[str] | None) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        named = f" or {names[0].upper()}-{names[-1].upper()}" if names else ""
        raise CronError(f"{what}: {text!r} is not a number {low}-{high}{named}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{what}: {value} is outside {low}-{high}")
    return value


def check_timezone(name: str) -> str:
    """An IANA time zone name as Auto Scaling takes it (e.g. Europe/Berlin, Etc/GMT+9, UTC)."""
    if name not in zoneinfo.available_timezones():
        raise CronError(
            f"{name!r} is not an IANA time zone name (such as Europe/Berlin, America/New_York, UTC); "
            "see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones"
        )
    return name
