"""``task_finished``: sent once per attempt, after its outcome is written, where the job ran.

The pool process that ran a job sends it when the worker's main process
says the outcome is written (see ``django_dbtasks/announcing.py``). These
tests mix the cases that must not change that: failures, retries, a long
job that keeps its pool process busy behind fast ones, a pool process
killed for overrunning its timeout, and pool processes recycled.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from django_dbtasks.models import Job, JobStatus, Worker
from django_dbtasks.pool import ANNOUNCE_WITHIN

from .conftest import run_worker, wait_until
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def announcements() -> list[Execution]:
    return list(Execution.objects.filter(label__startswith="announced:").order_by("id"))


def ran_in(job_id: int) -> set[int]:
    rows = Execution.objects.filter(job_id=str(job_id), label__startswith="ran:")
    return set(rows.values_list("pid", flat=True))


def worker_pids() -> set[int]:
    return set(Worker.objects.values_list("pid", flat=True))


def warmed_up_worker(start_worker):
    """A worker that has timed 100 fast jobs, so it hands the next ones out in chunks."""
    for n in range(100):
        tasks.announced.enqueue(f"warm-{n}")
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 100)
    return worker


def test_each_attempt_is_announced_once_after_its_write_by_the_process_that_ran_it():
    fast = [tasks.announced.enqueue(f"fast-{n}") for n in range(40)]
    failing = [tasks.announced.enqueue(f"bad-{n}", fail=True) for n in range(3)]
    while Job.objects.exclude(status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED]).exists():
        finished = run_worker("--concurrency", "2")  # again for the retries, once due
        assert finished.returncode == 0, finished.stderr
        assert "a signal receiver raised" not in finished.stderr, finished.stderr

    by_job = Counter(row.job_id for row in announcements())
    assert by_job == {
        **{result.id: 1 for result in fast},
        **{result.id: 2 for result in failing},  # the retry, then the final failure
    }
    for row in announcements():
        _, sent_status, written_status = row.label.split(":")
        assert sent_status == written_status, row.label  # the row was written before
        assert row.pid in ran_in(int(row.job_id)), row  # a pool process, where it ran
        assert row.pid not in worker_pids()  # not the worker's main process
    statuses = Counter(row.label for row in announcements())
    assert statuses == {
        "announced:SUCCESSFUL:SUCCESSFUL": 40,
        "announced:READY:READY": 3,
        "announced:FAILED:FAILED": 3,
    }


def test_a_long_job_behind_fast_ones_does_not_hold_back_their_task_finished(start_worker):
    # Warm the pace up, so that the pool process gets the next jobs in chunks.
    worker = warmed_up_worker(start_worker)
    fast = [tasks.announced.enqueue(f"fast-{n}") for n in range(30)]
    long = tasks.announced.enqueue("long", seconds=8)
    wait_until(lambda: ran_in(int(long.id)))
    started = time.monotonic()
    fast_ids = {result.id for result in fast}
    wait_until(
        lambda: fast_ids <= {row.job_id for row in announcements()},
        timeout=ANNOUNCE_WITHIN + 4,
    )
    assert time.monotonic() - started < 6  # not held until the long job ends at 8 s
    assert Job.objects.get(pk=long.id).status == JobStatus.RUNNING
    wait_until(lambda: long.id in {row.job_id for row in announcements()}, timeout=20)
    worker.stop()
    by_job = Counter(row.job_id for row in announcements())
    assert set(by_job.values()) == {1}, by_job
    assert len(by_job) == 131


def test_a_pool_process_killed_for_its_timeout_loses_no_announcement(start_worker):
    worker = warmed_up_worker(start_worker)
    fast = [tasks.announced.enqueue(f"fast-{n}") for n in range(30)]
    overrun = tasks.announced_overrun.enqueue("overrun")
    wait_until(lambda: Job.objects.get(pk=overrun.id).status == JobStatus.FAILED, timeout=20)
    expected = {result.id for result in fast} | {overrun.id}
    wait_until(lambda: expected <= {row.job_id for row in announcements()})
    worker.stop()
    by_job = Counter(row.job_id for row in announcements())
    assert set(by_job.values()) == {1}, by_job
    assert len(by_job) == 131
    [killed] = [row for row in announcements() if row.job_id == overrun.id]
    assert killed.label == "announced:FAILED:FAILED"
    assert killed.pid in worker_pids()  # its pool process was gone: the main process sent it


def test_recycled_pool_processes_announce_every_job_once():
    results = [tasks.announced.enqueue(f"job-{n}") for n in range(25)]
    finished = run_worker("--concurrency", "2", "--max-tasks-per-child", "3")
    assert finished.returncode == 0, finished.stderr
    by_job = Counter(row.job_id for row in announcements())
    assert by_job == {result.id: 1 for result in results}
    assert all(row.label == "announced:SUCCESSFUL:SUCCESSFUL" for row in announcements())


def test_a_receiver_that_exits_ends_no_job_and_no_pool_process():
    before = [tasks.announced.enqueue(f"before-{n}") for n in range(20)]
    exits = tasks.announced.enqueue("receiver-exits")
    after = [tasks.announced.enqueue(f"after-{n}") for n in range(20)]
    finished = run_worker("--concurrency", "1")
    assert finished.returncode == 0, finished.stderr
    assert f'job={exits.id} event="a signal receiver raised"' in finished.stderr
    assert "SystemExit: 3" in finished.stderr
    jobs = Job.objects.all()
    assert {job.status for job in jobs} == {JobStatus.SUCCESSFUL}
    assert {job.crashes for job in jobs} == {0}  # no pool process died between jobs
    assert "pool process running this attempt" not in finished.stderr
    by_job = Counter(row.job_id for row in announcements())
    assert by_job == {result.id: 1 for result in [*before, exits, *after]}
