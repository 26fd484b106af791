"""Progress reports from running jobs, and arguments a task marks as sensitive."""

from __future__ import annotations

import pytest

from django_dbtasks import report_progress, task
from django_dbtasks.compat import InvalidTask
from django_dbtasks.models import Job, JobStatus
from django_dbtasks.registry import redact_job
from django_dbtasks.sensitive import REDACTED

from .conftest import IS_POSTGRES, run_worker, wait_until
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


def test_sensitive_arguments_are_redacted_by_name_or_all():
    assert redact_job(tasks.calls_an_api.module_path, [7, "sk-live-123"], {"retries": 3}) == (
        [7, REDACTED],
        {"retries": 3},
    )
    assert redact_job(tasks.calls_an_api.module_path, [7], {"api_key": "sk-live-123"}) == (
        [7],
        {"api_key": REDACTED},
    )
    assert redact_job(tasks.all_secret.module_path, [], {"token": "t0k3n"}) == (
        [],
        {"token": REDACTED},
    )
    # A stored call that no longer fits the signature is redacted whole.
    assert redact_job(tasks.calls_an_api.module_path, [1, 2, 3, 4], {}) == ([REDACTED] * 4, {})


def test_sensitive_must_name_real_arguments():
    def charge(card_number, amount):
        return None

    with pytest.raises(InvalidTask, match=r"sensitive names 'card', which .*charge\(\) does not"):
        task(sensitive="card")(charge)


def test_the_worker_log_never_shows_a_sensitive_value():
    tasks.calls_an_api.enqueue(7, "sk-live-123")
    finished = run_worker()
    assert finished.returncode == 0
    assert "outcome=FAILED" in finished.stderr
    assert "sk-live-123" not in finished.stderr + finished.stdout
