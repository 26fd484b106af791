"""Log levels are for alerting: a job that gave up is an ERROR, everything short of it less.

The lines are read from a real burst worker's output (tests.settings puts the
level first on each line). A retry's WARNING and a final failure's ERROR are
tests/test_standard_api.py's; here, the jobs a worker rescues from a dead one.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from django_dbtasks.models import Job, JobStatus

from .conftest import run_worker
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def left_running(crashes: int) -> int:
    """A job its (dead) worker left RUNNING, with ``crashes`` deaths in a row behind it."""
    job = tasks.record_run.enqueue(f"crashes-{crashes}")
    Job.objects.filter(pk=job.id).update(
        status=JobStatus.RUNNING,
        attempts=1,
        crashes=crashes,
        claimed_by="a-worker-that-died",
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() - timedelta(minutes=5),
    )
    return int(job.id)


def test_a_rescue_is_a_warning_and_a_poison_job_an_error():
    rescued, poison = left_running(crashes=0), left_running(crashes=2)  # MAX_CRASHES is 3

    finished = run_worker()

    assert finished.returncode == 0, finished.stderr
    lines = {
        int(job): (level, outcome)
        for level, job, outcome in re.findall(
            r"^(\w+) job=(\d+) task=\S+ outcome=(RESCUED|POISON)", finished.stderr, re.M
        )
    }
    assert lines == {rescued: ("WARNING", "RESCUED"), poison: ("ERROR", "POISON")}
    assert Job.objects.get(pk=poison).status == JobStatus.FAILED
    assert Job.objects.get(pk=rescued).status == JobStatus.SUCCESSFUL
    assert not re.search(rf"^ERROR job={rescued} ", finished.stderr, re.M)
