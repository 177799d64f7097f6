"""builder/cron.py and builder/hours.py: the five-field recurrences Auto Scaling takes, when they
next fire in a time zone (DST in Europe/Berlin included), and the hours they keep an instance on."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from builder.config.schema import PlatformConfig, Schedule
from builder.cron import CronError, parse
from builder.hours import monthly_hours, next_change

BERLIN = Schedule(timezone="Europe/Berlin", start="0 8 * * 1-5", stop="0 20 * * 1-5")


def utc(*fields) -> datetime:
    return datetime(*fields, tzinfo=timezone.utc)


def test_the_next_change_follows_berlins_clock_across_the_spring_change():
    # Fri 27 Mar 2026, 20:00 CET (19:00 UTC) stops it; clocks go forward on Sunday the 29th.
    assert next_change(BERLIN, utc(2026, 3, 27, 12)).at == utc(2026, 3, 27, 19)
    change = next_change(BERLIN, utc(2026, 3, 27, 19))
    assert (change.action, change.at) == ("start", utc(2026, 3, 30, 6))  # 08:00 CEST
    assert change.in_words("Europe/Berlin") == "start at Mon 2026-03-30 08:00 Europe/Berlin (06:00 UTC)"


def test_the_next_change_follows_berlins_clock_across_the_autumn_change():
    # Clocks go back on Sunday 25 Oct 2026: Friday's start is 06:00 UTC, Monday's 07:00 UTC.
    assert next_change(BERLIN, utc(2026, 10, 23, 0)).at == utc(2026, 10, 23, 6)
    assert next_change(BERLIN, utc(2026, 10, 23, 18)).at == utc(2026, 10, 26, 7)


def test_a_wall_time_the_clock_skips_fires_an_hour_later_and_one_it_repeats_fires_once():
    nightly = parse("30 2 * * *")
    # 29 Mar 2026: 02:30 does not exist in Berlin; it fires at 03:30 CEST (01:30 UTC).
    assert nightly.next_after("Europe/Berlin", utc(2026, 3, 29, 0)) == utc(2026, 3, 29, 1, 30)
    # 25 Oct 2026: 02:30 happens twice (00:30 and 01:30 UTC); it fires at the first only.
    first = nightly.next_after("Europe/Berlin", utc(2026, 10, 24, 23))
    assert first == utc(2026, 10, 25, 0, 30)
    assert nightly.next_after("Europe/Berlin", first) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    ("expression", "moment", "fires"),
    [
        ("*/15 9-10 * * *", utc(2026, 1, 5, 9, 20), utc(2026, 1, 5, 9, 30)),
        ("0 8 * * MON,wed", utc(2026, 1, 6, 0), utc(2026, 1, 7, 8)),  # Tue 6 Jan: next is Wednesday
        ("0 8 * * 7", utc(2026, 1, 5, 0), utc(2026, 1, 11, 8)),  # 7 is Sunday, as 0 is
        ("0 8 1 * 5", utc(2026, 1, 1, 9), utc(2026, 1, 2, 8)),  # day 1 OR a Friday: crontab's rule
        ("0 0 29 feb *", utc(2026, 1, 1), utc(2028, 2, 29)),
        ("5/20 0 * jan-mar *", utc(2026, 4, 1), utc(2027, 1, 1, 0, 5)),
    ],
)
def test_recurrences_fire_when_crontab_would(expression, moment, fires):
    assert parse(expression).next_after("UTC", moment) == fires


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 8 * *", "has 4 fields"),
        ("60 8 * * *", "minute: 60 is outside 0-59"),
        ("0 8 * * 1-8", "day of week: 8 is outside 0-7"),
        ("0 8 * foo *", "month: 'foo' is not a number 1-12 or JAN-DEC"),
        ("0 20-8 * * *", "hour: range '20-8' runs backwards"),
        ("0 8 30 2 *", "names no day that exists"),
        ("0 8 ? * MON", "day of month: '?' is not a number"),  # EventBridge's form, not crontab's
    ],
)
def test_a_recurrence_auto_scaling_would_not_take_is_refused_naming_the_field(expression, says):
    with pytest.raises(CronError, match=re.escape(says)):
        parse(expression)


def test_the_config_names_the_field_and_what_is_valid():
    def error(schedule: dict) -> str:
        with pytest.raises(ValueError) as raised:
            PlatformConfig.model_validate({"version": 1, "aws": {"schedule": schedule}})
        return str(raised.value)

    assert "aws.schedule.timezone" in (said := error({"timezone": "Europe/Berlln", "start": "0 8 * * *"}))
    assert "not an IANA time zone name (such as Europe/Berlin" in said
    assert "aws.schedule.stop" in (said := error({"stop": "0 25 * * *"})) and "hour: 25 is outside 0-23" in said
    assert "give start, stop or both" in error({"timezone": "UTC"})


def test_a_month_of_weekdays_from_8_to_20_is_268_hours():
    # From Mon 1 Jun 2026 00:00 UTC (02:00 in Berlin, off) for 730 h: June's 22 weekdays of 12 h,
    # and Wed 1 Jul from 08:00 CEST (06:00 UTC) to the end at 10:00 UTC.
    hours = monthly_hours(BERLIN, utc(2026, 6, 1))
    assert hours.hours == 22 * 12 + 4
    assert "Europe/Berlin" in hours.basis


def test_hours_count_from_the_state_the_schedule_left_it_in():
    # Daily 06:00-18:00 UTC, counted from 12:00: on since 06:00, so 6 h that day, then 30 days of
    # 12 h (the 730 h end at 22:00 on day 30).
    daily = Schedule(timezone="UTC", start="0 6 * * *", stop="0 18 * * *")
    assert monthly_hours(daily, utc(2026, 6, 3, 12)).hours == 6 + 30 * 12
    assert monthly_hours(daily, utc(2026, 6, 3, 19)).hours == 30 * 12  # off until 06:00; the 730 h end at 05:00


def test_without_a_schedule_or_without_its_stop_the_month_is_730_hours():
    assert monthly_hours(None, utc(2026, 6, 1)).hours == 730
    start_only = Schedule(timezone="UTC", start="0 8 * * 1-5")
    assert monthly_hours(start_only, utc(2026, 6, 1)).hours == 730
    stop_only = monthly_hours(Schedule(timezone="UTC", stop="0 20 * * *"), utc(2026, 6, 1))
    assert stop_only.hours == 730 and "upper bound" in stop_only.basis
