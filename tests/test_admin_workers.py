"""The worker admin: the list, its state filter, a worker's page and its running jobs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.models import Job, JobStatus, Worker

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
    assert ">dead<" in dead and "0 running" in dead and "2 h 00 min ago" in dead
    assert text(admin_client_.get(WORKERS + "?state=live")).count("w-dead") == 0
    current = text(admin_client_.get(JOBS + "?status__exact=RUNNING&claimed_by=w-live"))
    assert set(re.findall(r'name="_selected_action" value="(\d+)"', current)) == {
        str(j) for j in Job.objects.filter(claimed_by="w-live").values_list("pk", flat=True)
    }
    detail = text(admin_client_.get(reverse("admin:django_dbtasks_worker_change", args=["w-live"])))
    assert reverse("admin:django_dbtasks_job_change", args=[running.pk]) in detail
    assert 'value="70"' in detail and "almost" in detail
