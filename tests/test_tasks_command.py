"""``manage.py tasks``: status, failed and health, run as a subprocess against real workers.

The workers are real ``runtasks`` processes; a dead one is a worker killed with
SIGKILL whose heartbeat is then aged in the table (the liveness rule reads the
database's clock, so an old heartbeat is exactly what a dead worker leaves).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_dbtasks import queries
from django_dbtasks.models import Job, JobStatus, Worker

from .conftest import ROOT, manage, wait_until, worker_env
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def tasks_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py tasks ARGS`` as an operator would, in its own process."""
    connection.close()  # SQLite: release any lock this process holds
    return subprocess.run(
        manage("tasks", *args),
        env=worker_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(*args: str) -> dict:
    done = tasks_command(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def registered(pid: int) -> Worker:
    return wait_until(lambda: Worker.objects.filter(pid=pid).first())


def age_heartbeat(worker_id: str, seconds: float) -> None:
    """Make a worker's last heartbeat ``seconds`` old by the database's clock."""
    now = queries.database_now(connection)
    Worker.objects.filter(id=worker_id).update(last_heartbeat_at=now - timedelta(seconds=seconds))


def killed(worker, age: float = 600) -> Worker:
    """SIGKILL a worker (and its pool) once registered; age its heartbeat past the lease."""
    row = registered(worker.pid)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    age_heartbeat(row.id, age)
    return row


@pytest.fixture
def busy_and_dead(start_worker):
    """A live worker running a long job on "default", and a dead one that served "emails"."""
    live = start_worker("--concurrency", "2", "--queue", "default", "--grace-period", "0")
    long_job = tasks.record_then_sleep.enqueue(30, "long")
    dead = killed(start_worker("--queue", "emails", "--no-scheduler"))
    wait_until(lambda: Job.objects.filter(pk=long_job.id, status=JobStatus.RUNNING).exists())
    tasks.record_email.enqueue("nobody takes me")
    tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    Job.objects.create(task_path=tasks.boom.module_path, status=JobStatus.FAILED, attempts=1)
    return registered(live.pid), dead, int(long_job.id)


def test_status_shows_live_and_dead_workers_and_each_queue(busy_and_dead):
    live, dead, long_job = busy_and_dead

    status = as_json("status")

    queues = {queue["queue"]: queue for queue in status["queues"]}
    assert set(queues) == {"default", "emails", "low"}
    assert (queues["default"]["ready"], queues["default"]["due"]) == (1, 0)  # deferred
    assert queues["default"]["running"] == 1 and queues["default"]["failed"] == 1
    assert queues["default"]["live_workers"] == [live.id]
    assert queues["default"]["oldest_due_wait_seconds"] is None
    assert (queues["emails"]["ready"], queues["emails"]["due"]) == (1, 1)
    assert queues["emails"]["live_workers"] == []
    assert queues["emails"]["oldest_due_wait_seconds"] >= 0
    workers = {worker["id"]: worker for worker in status["workers"]}
    assert set(workers) == {live.id, dead.id}
    assert workers[live.id]["state"] == "live" and workers[dead.id]["state"] == "dead"
    assert workers[live.id]["concurrency"] == 2 and workers[live.id]["pid"] == live.pid
    assert workers[live.id]["heartbeat_age_seconds"] < 3
    assert workers[dead.id]["heartbeat_age_seconds"] >= 600
    [running] = workers[live.id]["running"]
    assert running["id"] == long_job and running["task"] == tasks.record_then_sleep.module_path
    assert running["running_seconds"] >= 0
    assert workers[dead.id]["running"] == []

    text = tasks_command("status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split()[:2] == ["DEAD", dead.hostname] for line in lines), text.stdout
    assert f"job {long_job} {tasks.record_then_sleep.module_path} (default)" in text.stdout
    [emails] = [line.split() for line in lines if line.split()[:1] == ["emails"]]
    assert emails[1:4] == ["1", "1", "0"] and emails[-1] == "0"


def test_status_of_one_queue(busy_and_dead):
    live, dead, _ = busy_and_dead
    status = as_json("status", "--queue", "emails")
    assert [queue["queue"] for queue in status["queues"]] == ["emails"]
    assert [worker["id"] for worker in status["workers"]] == [dead.id]


def test_status_refuses_an_unknown_queue_and_says_which_exist():
    done = tasks_command("status", "--queue", "nope")
    assert done.returncode == 1
    assert "Unknown queue 'nope'" in done.stderr and "'default', 'emails', 'low'" in done.stderr
    assert "Traceback" not in done.stderr
