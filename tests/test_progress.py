"""Progress reports from running jobs: ``report_progress()`` and what the row shows."""

from __future__ import annotations

import pytest

from django_dbtasks import report_progress
from django_dbtasks.models import Job, JobStatus

from .conftest import IS_POSTGRES, wait_until
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def _job(result) -> Job:
    return Job.objects.get(pk=result.id)


def test_a_running_job_shows_its_progress_even_from_inside_its_own_transaction(
    start_worker, tmp_path
):
    result = tasks.reports_progress.enqueue(str(tmp_path), IS_POSTGRES)
    start_worker("--concurrency", "1")

    job = wait_until(lambda: (j := _job(result)).progress == 40 and j, timeout=30)
    assert job.status == JobStatus.RUNNING and job.progress_message == "first half"

    (tmp_path / "one").touch()
    if IS_POSTGRES:
        # The task holds a transaction open; its report is committed through another connection.
        job = wait_until(lambda: (j := _job(result)).progress == 70 and j, timeout=30)
        assert job.status == JobStatus.RUNNING
        assert job.progress_message == "inside a transaction"
        assert not Execution.objects.filter(label="progress").exists()
        (tmp_path / "two").touch()

    job = wait_until(lambda: (j := _job(result)).status == JobStatus.SUCCESSFUL and j, timeout=30)
    assert job.return_value == "done"


def test_report_progress_outside_a_job_does_nothing_and_rejects_bad_percentages():
    assert report_progress(10, "called directly") is False
    with pytest.raises(ValueError, match="between 0 and 100, got 150"):
        report_progress(150)
