"""Next-fire computation with a controllable clock: every call takes the instant to start from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from django_dbtasks import cron


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def hhmm(times: list[datetime]) -> list[str]:
    return [t.strftime("%m-%d %H:%M:%S") for t in times]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", ["01-01 01:00:00", "01-01 02:00:00"]),
        ("@daily", ["01-02 00:00:00", "01-03 00:00:00"]),
        ("@weekly", ["01-04 00:00:00", "01-11 00:00:00"]),  # Sundays
        ("@monthly", ["02-01 00:00:00", "03-01 00:00:00"]),
        ("@yearly", ["01-01 00:00:00", "01-01 00:00:00"]),
    ],
)
def test_aliases(alias, expected):
    assert hhmm(cron.fire_times(alias, "UTC", utc(2026, 1, 1, 0, 30), limit=2)) == expected


def test_seconds_field_comes_last_as_in_croniter():
    times = cron.fire_times("* * * * * */2", "UTC", utc(2026, 1, 1, 12, 0, 1), limit=3)
    assert hhmm(times) == ["01-01 12:00:02", "01-01 12:00:04", "01-01 12:00:06"]


def test_month_end_skips_months_without_a_31st():
    times = cron.fire_times("0 9 31 * *", "UTC", utc(2026, 1, 1), limit=4)
    assert [t.strftime("%Y-%m-%d") for t in times] == [
        "2026-01-31",
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
    ]


def test_leap_day_fires_only_in_leap_years():
    times = cron.fire_times("0 0 29 2 *", "UTC", utc(2025, 1, 1), limit=2)
    assert [t.year for t in times] == [2028, 2032]


@pytest.mark.parametrize(
    ("zone", "spring", "expected_utc"),
    [
        # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00.
        ("Europe/Berlin", utc(2026, 3, 28, 12), ["03-29 01:00:00", "03-30 00:30:00"]),
        # America/New_York springs forward on 2026-03-08 at 02:00 -> 03:00.
        ("America/New_York", utc(2026, 3, 7, 12), ["03-08 07:00:00", "03-09 06:30:00"]),
    ],
)
def test_a_daily_time_inside_the_spring_gap_fires_once_right_after_it(zone, spring, expected_utc):
    assert hhmm(cron.fire_times("30 2 * * *", zone, spring, limit=2)) == expected_utc


@pytest.mark.parametrize(
    ("zone", "autumn", "expected_utc"),
    [
        # Europe/Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice.
        ("Europe/Berlin", utc(2026, 10, 24, 12), ["10-25 00:30:00", "10-26 01:30:00"]),
        # America/New_York falls back on 2026-11-01 at 02:00 -> 01:00: 01:30 happens twice.
        ("America/New_York", utc(2026, 10, 31, 12), ["11-01 05:30:00", "11-02 06:30:00"]),
    ],
)
def test_a_daily_time_repeated_in_autumn_fires_once(zone, autumn, expected_utc):
    expression = "30 2 * * *" if zone == "Europe/Berlin" else "30 1 * * *"
    assert hhmm(cron.fire_times(expression, zone, autumn, limit=2)) == expected_utc


@pytest.mark.parametrize(
    ("start", "zone"),
    [
        (utc(2026, 3, 28, 23, 50), "Europe/Berlin"),
        (utc(2026, 10, 24, 23, 50), "Europe/Berlin"),
        (utc(2026, 3, 8, 5, 50), "America/New_York"),
        (utc(2026, 11, 1, 4, 50), "America/New_York"),
    ],
)
def test_every_15_minutes_keeps_real_time_across_dst(start, zone):
    times = cron.fire_times("*/15 * * * *", zone, start, limit=16)
    gaps = {
        (later - earlier).total_seconds() for earlier, later in zip(times, times[1:], strict=False)
    }
    assert gaps == {900.0}, "a quarter of an hour apart in UTC, through the change"
    assert times[0].minute % 15 == 0


def test_recent_fire_times_walks_back_from_now():
    times = cron.recent_fire_times(
        "* * * * * *", "UTC", after=utc(2026, 1, 1), until=utc(2026, 1, 2), limit=3
    )
    assert hhmm(times) == ["01-01 23:59:58", "01-01 23:59:59", "01-02 00:00:00"]


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "every day", "@fortnightly", ""])
def test_invalid_expressions_are_explained_with_examples(expression):
    with pytest.raises(cron.InvalidCron, match="is not a valid cron expression.*for example"):
        cron.validate(expression)


def test_unknown_timezone_is_explained():
    with pytest.raises(cron.InvalidCron, match="'Mars/Olympus' is not a known IANA timezone"):
        cron.zone("Mars/Olympus")


def test_descriptions_are_readable():
    assert cron.describe("0 3 * * *") == "At 03:00"
    assert cron.describe("* * * * * */2") == "Every 2 seconds"
    assert cron.describe("@daily") == "At 00:00"
