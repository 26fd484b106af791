"""Real ``runtasks`` subprocesses against the real test database."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_dbtasks.compat import TaskResultStatus
from django_dbtasks.models import Job, JobStatus

from .conftest import IS_POSTGRES, postgres_only, run_worker, wait_until
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def test_round_trip_through_the_standard_api():
    ok = tasks.add.enqueue(2, 3)
    failing = tasks.boom.enqueue("it broke")
    standard = tasks.standard_multiply.enqueue(6, 7)

    finished = run_worker()
    assert finished.returncode == 0, finished.stderr

    ok = tasks.add.get_result(ok.id)
    assert ok.status == TaskResultStatus.SUCCESSFUL and ok.return_value == 5
    assert ok.started_at and ok.finished_at and ok.finished_at >= ok.started_at
    assert len(ok.worker_ids) == 1 and ok.attempts == 1
    assert tasks.standard_multiply.get_result(standard.id).return_value == 42

    failing.refresh()
    assert failing.status == TaskResultStatus.FAILED
    [error] = failing.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "Traceback (most recent call last)" in error.traceback
    assert "ValueError: it broke" in error.traceback
    assert f"job={ok.id} task=tests.testapp.tasks.add outcome=SUCCESSFUL" in finished.stderr
    assert "outcome=FAILED" in finished.stderr and 'error="ValueError: it broke"' in finished.stderr


def test_worker_sends_task_started_and_task_finished():
    result = tasks.record_run.enqueue("signals")
    finished = run_worker()
    assert finished.returncode == 0
    assert "receiver" not in finished.stderr, finished.stderr
    labels = list(
        Execution.objects.filter(job_id=result.id).order_by("id").values_list("label", flat=True)
    )
    assert labels == ["started:RUNNING", "signals", "finished:SUCCESSFUL:signals"]


def test_startup_log_names_worker_queues_concurrency_and_tasks():
    finished = run_worker("--concurrency", "2", "--queue", "emails")
    assert finished.returncode == 0, finished.stderr
    assert "started" in finished.stderr
    assert "queues=emails concurrency=2" in finished.stderr
    assert "tests.testapp.tasks.record_email" in finished.stderr


def test_async_task_and_context():
    result = tasks.async_double.enqueue(21)
    assert run_worker().returncode == 0
    result.refresh()
    assert result.return_value == 42
    assert Execution.objects.get(label="async").job_id == result.id


def test_return_value_that_is_not_json_fails_clearly():
    result = tasks.returns_a_set.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.TypeError"  # as Django records it
    assert "returned a set (builtins.set), which is not JSON serialisable" in (
        result.errors[0].traceback
    )


def test_priority_then_age_decides_the_order():
    for label, priority in [
        ("low", -10),
        ("first-normal", 0),
        ("urgent", 50),
        ("second-normal", 0),
    ]:
        tasks.record_run.using(priority=priority).enqueue(label)
    assert run_worker("--concurrency", "1").returncode == 0
    order = list(Execution.objects.order_by("id").values_list("label", flat=True))
    assert order == ["urgent", "first-normal", "second-normal", "low"]


def test_run_after_defers_a_job():
    tasks.record_run.using(run_after=timezone.now() + dt.timedelta(hours=1)).enqueue("later")
    tasks.record_run.using(run_after=timezone.now() - dt.timedelta(seconds=1)).enqueue("due")
    assert run_worker().returncode == 0
    assert list(Execution.objects.values_list("label", flat=True)) == ["due"]
    assert Job.objects.get(args=["later"]).status == JobStatus.READY


def test_queue_option_restricts_what_a_worker_takes():
    tasks.record_run.enqueue("default-queue")
    tasks.record_email.enqueue("emails-queue")
    assert run_worker("--queue", "emails").returncode == 0
    assert list(Execution.objects.values_list("label", flat=True)) == ["emails-queue"]
    assert run_worker("--queue", "default").returncode == 0
    assert Execution.objects.count() == 2


def test_retries_with_growing_delays_then_success(start_worker):
    result = tasks.flaky.enqueue("flaky", failures=2)
    worker = start_worker()
    result.wait(timeout=30)

    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    runs = list(Execution.objects.filter(label="flaky").order_by("id").values_list("at", flat=True))
    assert len(runs) == 3
    first_gap, second_gap = (runs[1] - runs[0]).total_seconds(), (runs[2] - runs[1]).total_seconds()
    assert 0.24 <= first_gap and first_gap < second_gap, (first_gap, second_gap)
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 3
    assert [e["traceback"].strip().splitlines()[-1] for e in job.errors] == [
        "ConnectionError: attempt 1 failed",
        "ConnectionError: attempt 2 failed",
    ]
    assert "outcome=RETRY" in worker.output()


def test_always_failing_task_ends_failed_with_every_error_kept(start_worker):
    result = tasks.always_fails.enqueue("doomed")
    start_worker()
    result.wait(timeout=30)

    assert result.status == TaskResultStatus.FAILED
    assert [e.traceback.strip().splitlines()[-1] for e in result.errors] == [
        "RuntimeError: failure number 1",
        "RuntimeError: failure number 2",
        "RuntimeError: failure number 3",
    ]
    assert Execution.objects.filter(label="doomed").count() == 3


def test_unregistered_task_path_is_failed_and_never_imported(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = Job.objects.create(task_path="os.system", args=[f"touch {marker}"])
    tasks.record_run.enqueue("after")

    finished = run_worker()
    assert finished.returncode == 0

    evil.refresh_from_db()
    assert evil.status == JobStatus.FAILED
    [error] = evil.errors
    assert error["exception_class_path"] == "django_dbtasks.exceptions.TaskNotRegistered"
    assert "Task 'os.system' is not registered" in error["traceback"]
    assert not marker.exists()
    assert list(Execution.objects.values_list("label", flat=True)) == ["after"]


def test_sigterm_lets_the_running_job_finish(start_worker):
    result = tasks.record_then_sleep.enqueue(2, "slow")
    worker = start_worker()
    # Its body has started (a claimed job that no pool process has started yet is
    # put back to READY by a graceful stop instead: not running, nothing to finish).
    wait_until(lambda: Execution.objects.filter(label="slow-started").exists())
    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker.output()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert Execution.objects.filter(label="slow").count() == 1
    assert not Job.objects.filter(status="RUNNING").exists()
    assert "signal=SIGTERM" in worker.output()


def test_sigterm_after_grace_period_puts_the_job_back(start_worker):
    result = tasks.slow_first_run.enqueue(30)
    worker = start_worker("--grace-period", "0.5")
    # Its body runs: a claimed job not started yet would be put back without waiting.
    wait_until(lambda: Execution.objects.filter(label="slow-first-started").exists())
    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker.output()
    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.READY and job.attempts == 0 and job.lease_token is None
    assert not Execution.objects.filter(label="slow-first").exists()
    assert 'event=released jobs=1 why="unfinished at stop"' in worker.output()
    # The line other tests look for to tell a grace period that ran out.
    assert 'event="grace period over" grace_period=0.5s' in worker.output()

    next_worker = start_worker()
    result.wait(timeout=30)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.attempts == 2
    assert result.return_value == result.worker_ids[1]
    assert next_worker.process.poll() is None


def test_second_signal_exits_at_once_and_loses_nothing(start_worker):
    result = tasks.record_then_sleep.enqueue(30, "interrupted")
    worker = start_worker()
    # Its body runs (a job not started yet would let the first signal end the worker).
    wait_until(lambda: Execution.objects.filter(label="interrupted-started").exists())
    started = time.monotonic()
    worker.signal(signal.SIGINT)
    time.sleep(0.3)
    worker.signal(signal.SIGINT)

    assert worker.wait(timeout=15) == 1
    assert time.monotonic() - started < 10
    assert Job.objects.get(pk=result.id).status == JobStatus.READY


def test_timeout_stops_a_sleeping_job_and_retries_it(start_worker):
    result = tasks.sleeps_forever.enqueue()
    after = tasks.record_run.enqueue("next")
    started = time.monotonic()
    start_worker()
    result.wait(timeout=30)

    assert time.monotonic() - started < 15
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    assert all(e.exception_class_path.endswith("JobTimedOut") for e in result.errors)
    assert "Timed out after 1 s" in result.errors[0].traceback
    after.wait(timeout=10)
    assert after.status == TaskResultStatus.SUCCESSFUL


def test_timeout_stops_a_busy_loop(start_worker):
    result = tasks.spins_forever.enqueue()
    start_worker()
    result.wait(timeout=20)
    assert result.status == TaskResultStatus.FAILED
    assert "Timed out after 1 s" in result.errors[0].traceback


def test_crashing_child_fails_the_attempt_and_the_worker_goes_on():
    crashing = tasks.exits_hard.enqueue()
    after = tasks.record_run.enqueue("after-crash")
    finished = run_worker("--concurrency", "1")
    assert finished.returncode == 0, finished.stderr

    crashing.refresh()
    assert crashing.status == TaskResultStatus.FAILED
    assert crashing.errors[0].exception_class_path == "django_dbtasks.exceptions.WorkerCrashed"
    assert "exited with code 1" in crashing.errors[0].traceback
    assert tasks.record_run.get_result(after.id).status == TaskResultStatus.SUCCESSFUL


@postgres_only
def test_a_job_in_an_open_transaction_is_not_claimed_before_commit(start_worker):
    worker = start_worker()
    with transaction.atomic():
        result = tasks.record_run.enqueue("after-commit")
        time.sleep(1.0)  # the worker polls every 50 ms meanwhile
        assert not Execution.objects.exists()
    result.wait(timeout=10)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert worker.process.poll() is None


def test_rolled_back_job_never_runs():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        tasks.record_run.enqueue("ghost")
        raise Rollback
    assert run_worker().returncode == 0
    assert not Execution.objects.exists() and not Job.objects.exists()


def _race(workers: int, jobs: int, start_worker, concurrency: str = "2") -> None:
    tasks.record_run.enqueue_many([((f"job-{i}",), {}) for i in range(jobs)])
    started = [start_worker("--burst", "--concurrency", concurrency) for _ in range(workers)]
    for worker in started:
        assert worker.wait(timeout=300) == 0, worker.output()
    counts = Counter(Execution.objects.values_list("job_id", flat=True))
    assert len(counts) == jobs
    assert set(counts.values()) == {1}, [job for job, n in counts.items() if n > 1][:10]
    assert Job.objects.filter(status="SUCCESSFUL").count() == jobs
    assert len({pid for pid in Execution.objects.values_list("pid", flat=True)}) > workers


@postgres_only
def test_exactly_once_with_four_workers_racing_over_5000_jobs(start_worker):
    _race(4, 5000, start_worker)


@pytest.mark.skipif(IS_POSTGRES, reason="the SQLite variant of the race")
def test_exactly_once_with_three_workers_on_one_sqlite_file(start_worker):
    _race(3, 300, start_worker)


def test_unreachable_database_at_start_is_a_clear_error():
    if IS_POSTGRES:
        settings_dict = connection.settings_dict
        url = f"postgres://{settings_dict['USER']}@127.0.0.1:1/{settings_dict['NAME']}"
        finished = run_worker(DATABASE_URL=url)
    else:
        finished = run_worker(DBTASKS_TEST_DB_NAME="/nonexistent-dir/db.sqlite3")
    assert finished.returncode == 1
    assert "Cannot connect to database 'default'" in finished.stderr
    assert "Is the database server running" in finished.stderr
    assert "Traceback" not in finished.stderr
