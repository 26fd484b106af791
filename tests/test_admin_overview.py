"""The overview page: its numbers for a known set of rows, its chart, and the link to it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.models import JobStatus, Worker

from .shared_admin import OVERVIEW, job, staff, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


def _stat(page: str, queue: str, name: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}"[^>]*>(.*?)</tr>', page, re.S)
    assert row, queue
    cell = re.search(rf'data-stat="{name}">(?:<a [^>]*>)?([^<]*)<', row.group(1))
    assert cell, name
    return cell.group(1).strip()


def test_overview_numbers_for_a_known_set_of_rows(admin_client_):
    now = timezone.now()
    # Half-minute offsets: PostgreSQL's now() is the test transaction's start, a little earlier.
    job(run_after=now - timedelta(minutes=5, seconds=30))
    job(run_after=now + timedelta(hours=1))
    job(JobStatus.RUNNING, claimed_by="w-1", lease_expires_at=now + timedelta(seconds=30))
    for minutes in (1.5, 1.5, 2.5, 30.5):
        job(JobStatus.SUCCESSFUL, finished_at=now - timedelta(minutes=minutes))
    job(JobStatus.FAILED, finished_at=now - timedelta(minutes=2.5))
    job(JobStatus.FAILED, finished_at=now - timedelta(hours=3))  # outside the window
    job(JobStatus.CANCELLED)
    job(JobStatus.SUCCESSFUL, queue_name="emails", finished_at=now - timedelta(hours=2))
    Worker.objects.create(id="w-1", hostname="h", pid=1, queues=["default", "emails"])
    Worker.objects.create(
        id="w-2",
        hostname="h",
        pid=2,
        queues=["default"],
        last_heartbeat_at=now - timedelta(hours=1),
    )
    page = text(admin_client_.get(OVERVIEW))
    assert '<meta http-equiv="refresh" content="10">' in page
    assert _stat(page, "default", "ready") == "2"
    assert _stat(page, "default", "due") == "1"
    assert _stat(page, "default", "oldest-wait").startswith("5 min")
    assert _stat(page, "default", "running") == "1"
    assert _stat(page, "default", "successful-window") == "4"
    assert _stat(page, "default", "rate") == "0.8"  # 4 jobs in minutes 1 and 2, over 5 minutes
    assert _stat(page, "default", "failed-window") == "1"
    assert _stat(page, "default", "failure-rate") == "20.0%"
    assert _stat(page, "default", "failed-total") == "2"
    assert _stat(page, "default", "cancelled-total") == "1"
    assert _stat(page, "default", "workers") == "1"
    assert _stat(page, "emails", "successful-window") == "0"
    assert _stat(page, "emails", "failure-rate") == "–"
    assert _stat(page, "emails", "workers") == "1"
    assert _stat(page, "low", "ready") == "0"  # configured, empty
    # The chart: one bar of 2 successful a minute ago, the tallest, at full height.
    assert "<title>1 min ago: 2 successful, 0 failed</title>" in page
    assert "<title>2 min ago: 1 successful, 1 failed</title>" in page
    assert 'height="120.00"' in page
    paused = text(admin_client_.get(OVERVIEW + "?refresh=0"))
    assert 'http-equiv="refresh"' not in paused and "Not reloading" in paused
    assert "http" not in re.search(r"<svg.*?</svg>", page, re.S).group(0).replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_app_index_links_to_the_overview(admin_client_):
    page = text(admin_client_.get(reverse("admin:app_list", args=["django_dbtasks"])))
    assert OVERVIEW in page
