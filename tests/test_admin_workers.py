"""The worker admin, and the liveness rules it shares with the overview (``WorkerQuerySet``)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_dbtasks import queries
from django_dbtasks.admin import overview, setup
from django_dbtasks.models import Job, JobStatus, Worker, WorkerState

from .shared_admin import JOBS, WORKERS, job, staff, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


def test_worker_list_and_page_show_state_and_current_jobs(admin_client_):
    now = timezone.now()
    Worker.objects.create(id="w-live", hostname="web-1", pid=10, queues=["default"], concurrency=4)
    Worker.objects.create(
        id="w-dead",
        hostname="web-2",
        pid=11,
        queues=["emails"],
        last_heartbeat_at=now - timedelta(hours=2),
    )
    running = job(JobStatus.RUNNING, claimed_by="w-live", progress=70, progress_message="almost")
    job(JobStatus.RUNNING, claimed_by="w-live")
    page = text(admin_client_.get(WORKERS))
    live = re.search(r"<tr.*?w-live.*?</tr>", page, re.S).group(0)
    dead = re.search(r"<tr.*?w-dead.*?</tr>", page, re.S).group(0)
    assert ">live<" in live and "2 running" in live and "web-1" in live
    assert ">dead<" in dead and "0 running" in dead and "2 h ago" in dead
    assert text(admin_client_.get(WORKERS + "?state=live")).count("w-dead") == 0
    current = text(admin_client_.get(JOBS + "?status__exact=RUNNING&claimed_by=w-live"))
    assert set(re.findall(r'name="_selected_action" value="(\d+)"', current)) == {
        str(j) for j in Job.objects.filter(claimed_by="w-live").values_list("pk", flat=True)
    }
    detail = text(admin_client_.get(reverse("admin:django_dbtasks_worker_change", args=["w-live"])))
    assert reverse("admin:django_dbtasks_job_change", args=[running.pk]) in detail
    assert 'value="70"' in detail and "almost" in detail


# WorkerQuerySet: live, dead and stopped, by the database's clock

LEASE = 60.0


def worker(worker_id: str, heartbeat_age: float, stopped: bool = False) -> Worker:
    """A worker whose last heartbeat is ``heartbeat_age`` seconds old by the database's clock."""
    now = queries.database_now(connection)
    return Worker.objects.create(
        id=worker_id,
        hostname="h",
        pid=1,
        queues=["default"],
        last_heartbeat_at=now - timedelta(seconds=heartbeat_age),
        stopped_at=now if stopped else None,
    )


def ids(workers) -> set[str]:
    return set(workers.values_list("id", flat=True))


def test_a_worker_is_live_dead_or_stopped_by_its_heartbeats_age():
    worker("w-live", 1)
    worker("w-late", LEASE - 5)  # late, but within a lease: its jobs are not rescued yet
    worker("w-dead", LEASE + 5)
    worker("w-stopped", 1, stopped=True)
    worker("w-stopped-long-ago", 3 * LEASE, stopped=True)
    assert ids(Worker.objects.live(LEASE)) == {"w-live", "w-late"}
    assert ids(Worker.objects.dead(LEASE)) == {"w-dead"}
    assert ids(Worker.objects.stopped()) == {"w-stopped", "w-stopped-long-ago"}
    assert dict(Worker.objects.with_state(LEASE).values_list("id", "state")) == {
        "w-live": WorkerState.LIVE,
        "w-late": WorkerState.LIVE,
        "w-dead": WorkerState.DEAD,
        "w-stopped": WorkerState.STOPPED,
        "w-stopped-long-ago": WorkerState.STOPPED,
    }


def test_the_list_its_filter_and_the_overview_agree_on_who_is_live(admin_client_):
    seconds = setup.liveness_seconds()
    worker("w-live", 1)
    worker("w-dead", seconds + 5)
    worker("w-stopped", 1, stopped=True)
    every = {"w-live", "w-dead", "w-stopped"}
    for state in WorkerState.values:
        page = text(admin_client_.get(WORKERS, {"state": state}))
        assert {w for w in every if w in page} == {f"w-{state}"}, state
        row = re.search(rf"<tr.*?w-{state}.*?</tr>", page, re.S).group(0)
        assert f">{state}<" in row
    assert {w.id for w in overview.snapshot().workers if w.live} == {"w-live"}
