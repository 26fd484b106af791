"""Crashes, freezes, poison jobs and outages, done for real to real worker processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter

import pytest
from django.db import DatabaseError, connection

from django_dbtasks.compat import TaskResultStatus
from django_dbtasks.models import Job, JobStatus

from .conftest import IS_POSTGRES, postgres_only, wait_until
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

#: Short leases so that rescues happen within seconds: heartbeat 0.5 s, lease 1.5 s.
SHORT_LEASE = {"DBTASKS_TEST_LEASE": "1.5", "DBTASKS_TEST_HEARTBEAT": "0.5"}


def running(job_id) -> bool:
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()


def test_long_job_on_a_healthy_worker_is_never_rescued(start_worker):
    result = tasks.sleep_and_report.enqueue(6)  # four leases long
    workers = [start_worker(**SHORT_LEASE), start_worker(**SHORT_LEASE)]
    result.wait(timeout=30)

    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.SUCCESSFUL
    assert (job.attempts, job.crashes, len(job.worker_ids)) == (1, 0, 1)
    assert Execution.objects.count() == 1
    assert not any("RESCUED" in worker.output() for worker in workers)


def test_sigkilled_worker_job_is_rerun_by_another_after_its_lease(start_worker):
    victim = tasks.slow_first_run.enqueue(30)
    doomed = start_worker("--concurrency", "1", **SHORT_LEASE)
    wait_until(lambda: running(victim.id))
    others = tasks.record_run.enqueue_many([((f"other-{i}",), {}) for i in range(50)])
    os.killpg(doomed.pid, signal.SIGKILL)  # worker and child die at once, like a power cut
    assert doomed.wait(timeout=10) == -signal.SIGKILL

    rescuer = start_worker("--concurrency", "2", **SHORT_LEASE)
    victim.wait(timeout=60)
    job = Job.objects.get(pk=victim.id)
    assert job.status == JobStatus.SUCCESSFUL
    assert job.return_value == job.worker_ids[1] != job.worker_ids[0]
    assert job.attempts == 1, "a worker's death must not use up an attempt"
    for other in others:
        other.wait(timeout=30)
    finished = Execution.objects.exclude(label="slow-first-started")
    counts = Counter(finished.values_list("job_id", flat=True))
    assert all(counts[other.id] == 1 for other in others)
    assert counts[victim.id] == 1  # the killed run never reached its record()
    assert f"job={victim.id} task=tests.testapp.tasks.slow_first_run outcome=RESCUED" in (
        rescuer.output()
    )


def test_a_job_that_keeps_killing_its_worker_is_failed_as_poison(start_worker):
    result = tasks.kills_its_worker.enqueue()
    dead = 0
    for _ in range(6):
        worker = start_worker("--concurrency", "1", **SHORT_LEASE)
        wait_until(
            lambda: (
                worker.process.poll() is not None  # noqa: B023 - called in this iteration
                or Job.objects.filter(pk=result.id, status=JobStatus.FAILED).exists()
            ),
            timeout=30,
        )
        if worker.process.poll() is not None:
            assert worker.process.returncode == -signal.SIGKILL
            dead += 1
        else:
            break
    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.FAILED and dead == 3
    [error] = job.errors
    assert error["exception_class_path"] == "django_dbtasks.exceptions.PoisonJob"
    assert "dying 3 times in a row" in error["traceback"]


def test_dead_worker_rows_are_cleaned_up():
    from django_dbtasks import queries
    from django_dbtasks.models import Worker

    queries.register_worker(connection, "gone", "host", 1, ["default"], 1)
    queries.register_worker(connection, "alive", "host", 2, ["default"], 1)
    Worker.objects.filter(pk="gone").update(last_heartbeat_at="2000-01-01T00:00:00Z")
    assert queries.delete_dead_workers(connection, retention_seconds=3600) == 1
    assert list(Worker.objects.values_list("pk", flat=True)) == ["alive"]


def _count_successful() -> int:
    try:
        return Job.objects.filter(status=JobStatus.SUCCESSFUL).count()
    except DatabaseError:
        connection.close()  # the server is restarting: ask again later
        return 0


@postgres_only
@pytest.mark.skipif(not os.environ.get("DBTASKS_PGDATA"), reason="needs the test server's data")
def test_workers_survive_a_postgres_restart(start_worker):
    total = 5000
    tasks.resilient_record.enqueue_many([((f"r-{i}",), {}) for i in range(total)])
    workers = [start_worker("--concurrency", "2") for _ in range(2)]
    wait_until(lambda: _count_successful() >= 300, timeout=60)

    connection.close()
    pg_ctl = [
        "runuser",
        "-u",
        "postgres",
        "--",
        os.path.join(os.environ["DBTASKS_PG_BINDIR"], "pg_ctl"),
        "-D",
        os.environ["DBTASKS_PGDATA"],
        "-w",
    ]
    subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)
    time.sleep(3)
    log = os.path.join(os.environ["DBTASKS_PGDATA"], "server.log")
    subprocess.run([*pg_ctl, "-l", log, "start"], check=True, capture_output=True)

    wait_until(lambda: _count_successful() == total, timeout=300, interval=0.5)
    assert not Job.objects.exclude(status=JobStatus.SUCCESSFUL).exists()
    assert Execution.objects.values("job_id").distinct().count() == total
    for worker in workers:
        assert worker.process.poll() is None, worker.output()
    outputs = "".join(worker.output() for worker in workers)
    assert "database unavailable" in outputs and "database reachable again" in outputs


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite: a locked database file is its outage")
def test_worker_waits_out_a_locked_sqlite_database(start_worker):
    result = tasks.record_run.enqueue("after-lock")
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the file's write lock
        worker = start_worker()
        time.sleep(1.5)
        assert locker.execute("SELECT COUNT(*) FROM testapp_execution").fetchone() == (0,)
    finally:
        locker.execute("COMMIT")
        locker.close()
    result.wait(timeout=30)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert worker.process.poll() is None
