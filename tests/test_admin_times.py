"""Times and durations in the admin: seconds everywhere, full precision on hover, human units."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from django_dbtasks.admin import display
from django_dbtasks.models import JobStatus, Schedule, Worker

from .shared_admin import BOOM, JOBS, SCHEDULES, WORKERS, error, job, staff, text

pytestmark = pytest.mark.django_db

#: Django's own rendering of a time, to the minute ("Dec. 2, 2026, 6:28 p.m.", "midnight").
TO_THE_MINUTE = re.compile(r"\b\d{4}, (?:\d{1,2}(?::\d\d)? [ap]\.m\.|noon|midnight)")
#: A time shown by the admin: its seconds, and an ISO tooltip to the microsecond with its zone.
SHOWN = re.compile(
    r'<time datetime="[^"]+" title="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d [^"]+)">'
    r"(.*?)</time>",
    re.S,
)


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


def moment(*, hours: int, micro: int) -> datetime:
    return datetime(2026, 5, 4, 10, 0, 1, micro, tzinfo=UTC) + timedelta(hours=hours)


def shown_times(page: str) -> list[tuple[str, str]]:
    return [(title, re.sub(r"<[^>]+>", "", inner)) for title, inner in SHOWN.findall(page)]


def test_every_page_shows_times_with_seconds_and_to_the_microsecond_on_hover(admin_client_):
    worker = Worker.objects.create(id="w-1", hostname="web-1", pid=7, queues=["default"])
    Worker.objects.filter(pk=worker.pk).update(
        started_at=moment(hours=0, micro=1), last_heartbeat_at=moment(hours=1, micro=2)
    )
    schedule = Schedule.objects.create(name="nightly", task_path=BOOM, cron="0 3 * * *")
    Schedule.objects.filter(pk=schedule.pk).update(last_fire_at=moment(hours=2, micro=3))
    failed = job(
        JobStatus.FAILED,
        BOOM,
        errors=[error("x")],
        started_at=moment(hours=3, micro=4),
        last_attempted_at=moment(hours=3, micro=5),
        finished_at=moment(hours=3, micro=250_006),
        schedule=schedule,
        scheduled_for=moment(hours=3, micro=0),
    )
    pages = {
        "job list": JOBS,
        "job page": reverse("admin:django_dbtasks_job_change", args=[failed.pk]),
        "worker list": WORKERS,
        "worker page": reverse("admin:django_dbtasks_worker_change", args=[worker.pk]),
        "schedule list": SCHEDULES,
        "schedule page": reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk]),
    }
    found = {name: text(admin_client_.get(url)) for name, url in pages.items()}
    for name, page in found.items():
        assert not TO_THE_MINUTE.search(page), (name, TO_THE_MINUTE.search(page))
        assert shown_times(page), name
        for title, inner in shown_times(page):
            assert re.search(r"\d\d:\d\d:\d\d", inner), (name, inner)
            assert title[11:19] in inner, (name, title, inner)  # the same second
    expected = {
        "job list": ["13:00:01.000004", "13:00:01.250006"],
        "job page": ["13:00:01.000004", "13:00:01.000005", "13:00:01.250006", "13:00:01.000000"],
        "worker list": ["10:00:01.000001", "11:00:01.000002"],
        "worker page": ["10:00:01.000001", "11:00:01.000002"],
        "schedule list": ["12:00:01.000003"],
        "schedule page": ["12:00:01.000003"],
    }
    for name, micros in expected.items():
        titles = [title for title, _ in shown_times(found[name])]
        for micro in micros:
            assert f"2026-05-04T{micro}+00:00 UTC" in titles, (name, micro, titles)
    # A page spells the day out and says how long ago; a list is compact.
    assert "2026-05-04 13:00:01 UTC" in found["job page"]
    assert "May 04</span> 13:00:01" in found["job list"]


@override_settings(TIME_ZONE="Europe/Berlin")
def test_times_are_in_the_current_time_zone_with_its_offset(admin_client_):
    job(JobStatus.SUCCESSFUL, finished_at=moment(hours=0, micro=123_456))
    titles = [title for title, _ in shown_times(text(admin_client_.get(JOBS)))]
    assert "2026-05-04T12:00:01.123456+02:00 CEST" in titles


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0 ms"),
        (0.85, "850 ms"),
        (0.9994, "999 ms"),
        (0.9996, "1.0 s"),
        (1.0, "1.0 s"),
        (12.34, "12.3 s"),
        (59.9, "59.9 s"),
        (59.96, "1 min"),
        (60, "1 min"),
        (245, "4 min 5 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h"),
        (7380, "2 h 3 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d"),
        (273600, "3 d 4 h"),
        (None, "–"),
    ],
)
def test_durations_read_in_human_units(seconds, shown):
    assert display.duration(seconds) == shown


UNITS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


@given(st.floats(min_value=0, max_value=10**8, allow_nan=False))
@example(59.99)
@example(3599.5)
def test_a_duration_reads_back_to_within_its_last_unit(seconds):
    """Hypothesis: any duration is one or two parts in descending units, true to its last unit."""
    shown = display.duration(seconds)
    parts = re.fullmatch(r"(\d+(?:\.\d)?) (ms|s|min|h|d)(?: (\d+) (s|min|h))?", shown)
    assert parts, shown
    value, unit, second_value, second_unit = parts.groups()
    total = float(value) * UNITS[unit] + (
        int(second_value) * UNITS[second_unit] if second_unit else 0
    )
    last = UNITS[second_unit or unit] * (0.1 if "." in value else 1)
    assert total <= seconds + last / 2 + 1e-9 and seconds < total + last, (seconds, shown)
    if second_unit:
        assert (
            UNITS[second_unit] < UNITS[unit]
            and 0 < int(second_value) < UNITS[unit] // UNITS[second_unit]
        )
