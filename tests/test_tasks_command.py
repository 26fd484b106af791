"""``manage.py tasks``: status, failed and health, run as a subprocess against real workers.

The workers are real ``runtasks`` processes; a dead one is a worker killed with
SIGKILL whose heartbeat is then aged in the table (the liveness rule reads the
database's clock, so an old heartbeat is exactly what a dead worker leaves).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_dbtasks import queries
from django_dbtasks.models import FINISHED_STATUSES as FINISHED
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


def quick_json(*args: str) -> dict:
    """``tasks ARGS --json`` in this process (the workers are still real processes)."""
    out = io.StringIO()
    call_command("tasks", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


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
    status = quick_json("status", "--queue", "emails")
    assert [queue["queue"] for queue in status["queues"]] == ["emails"]
    assert [worker["id"] for worker in status["workers"]] == [dead.id]


# health: against real workers, one dead


def health(*args: str, **env: str) -> tuple[int, str]:
    """``tasks health ARGS`` in its own process: its exit code and what it printed."""
    done = tasks_command("health", *args, **env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def quick_health(*args: str) -> tuple[int, str]:
    """``tasks health ARGS`` in this process (the workers are still real processes)."""
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("tasks", "health", *args, stdout=out)
    return int(exited.value.code), out.getvalue()


def test_health_passes_then_warns_of_a_death_then_fails_an_unserved_queue(start_worker):
    start_worker("--queue", "default", "--queue", "low", "--grace-period", "0")
    serves_emails = registered(start_worker("--queue", "emails", "--grace-period", "0").pid)
    wait_until(lambda: Worker.objects.count() == 2)
    code, out = quick_health()
    assert code == 0 and out.startswith("OK - 3 queue(s), 2 live worker(s)"), out

    dead = killed(start_worker("--queue", "emails", "--no-scheduler"))
    code, out = health()
    assert code == 1 and out.startswith("WARNING - worker "), out
    assert f"({dead.id}) died: no heartbeat for 10m" in out

    # A due job no live worker serves: the one that served "emails" has stopped.
    os.kill(serves_emails.pid, signal.SIGTERM)
    wait_until(lambda: Worker.objects.filter(id=serves_emails.id, stopped_at__isnull=False))
    Job.objects.create(task_path=tasks.record_email.module_path, queue_name="emails")
    code, out = health("--json")
    document = json.loads(out)
    assert code == 2 and document["status"] == "critical" and document["exit_code"] == 2
    assert document["checks"] == ["unserved", "wait", "died"]
    assert [(p["check"], p["severity"], p["queue"]) for p in document["problems"]] == [
        ("unserved", "critical", "emails"),
        ("died", "warning", ""),
    ]
    assert document["problems"][1]["worker"] == dead.id
    # The healthy part alone: the dead worker served "emails" only.
    code, out = quick_health("--queue", "default", "--queue", "low")
    assert code == 0 and out.startswith("OK - 2 queue(s)"), out


def test_health_of_this_hosts_worker_by_hostname_and_by_pid(start_worker):
    worker = start_worker("--grace-period", "0")
    live = registered(worker.pid)
    assert health("--hostname", "--heartbeat-within", "5")[0] == 0
    assert quick_health("--pid", str(live.pid))[0] == 0
    assert quick_health("--hostname", live.hostname)[0] == 0
    assert quick_health("--heartbeat-within", "5")[0] == 0  # alone: this host's worker
    missing = "no running worker on another-host (none registered, or it stopped)."
    assert quick_health("--hostname", "another-host") == (
        2,
        f"CRITICAL - {missing}\nCRITICAL: {missing}\n",
    )
    assert quick_health("--pid", str(live.pid + 1))[0] == 2

    os.killpg(worker.pid, signal.SIGSTOP)  # frozen: its heartbeat stops, its row stays
    try:
        time.sleep(1.5)
        code, out = quick_health("--pid", str(live.pid), "--heartbeat-within", "1")
        assert code == 2 and f"the worker pid {live.pid} on {live.hostname} last heartbeated" in out
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    wait_until(lambda: quick_health("--pid", str(live.pid), "--heartbeat-within", "1")[0] == 0)


def test_health_max_wait_and_require_workers(start_worker):
    registered(start_worker("--queue", "default", "--grace-period", "0").pid)
    now = queries.database_now(connection)
    Job.objects.create(
        task_path=tasks.record_email.module_path,
        queue_name="emails",
        run_after=now - timedelta(seconds=120),
    )
    assert quick_health("--max-wait", "600")[0] == 0
    code, out = health("--max-wait", "60")
    assert code == 2 and "queue 'emails': the oldest due job has waited 2m" in out
    code, out = quick_health("--require-workers", "--json")
    problems = json.loads(out)["problems"]
    assert code == 2 and {(p["check"], p["queue"]) for p in problems} == {
        ("no-worker", "emails"),
        ("no-worker", "low"),
    }


#: A database name no server has, and a file SQLite cannot create (its directory is missing).
NO_SUCH_DATABASE = "/dbtasks-no-such-directory/no-such-database"


def test_health_is_unknown_when_the_job_table_cannot_be_read():
    code, out = health(DBTASKS_TEST_DB_NAME=NO_SUCH_DATABASE)
    assert code == 3 and out.startswith("UNKNOWN - Cannot read the job table"), out
    code, out = health("--json", DBTASKS_TEST_DB_NAME=NO_SUCH_DATABASE)
    assert code == 3 and json.loads(out)["status"] == "unknown"


# failed: what real workers failed, grouped


def test_failed_groups_by_task_and_exception_with_the_latest_message(start_worker):
    for message in ("card declined", "card expired", "card stolen"):
        tasks.boom.enqueue(message)
    retried = tasks.always_fails.enqueue("three attempts, one job")
    tasks.returns_a_set.enqueue()
    tasks.add.enqueue(1, 2)
    Job.objects.create(task_path="os.system", args=["rm -rf /"])  # never imported, FAILED
    start_worker("--concurrency", "2")
    wait_until(lambda: not Job.objects.exclude(status__in=FINISHED).exists())
    assert Job.objects.get(pk=retried.id).attempts == 3
    now = queries.database_now(connection)
    old = Job.objects.create(
        task_path=tasks.boom.module_path,
        status=JobStatus.FAILED,
        finished_at=now - timedelta(days=2),
        errors=[{"exception_class_path": "builtins.KeyError", "message": "KeyError: 'old'"}],
    )
    malformed = Job.objects.create(  # written by SQL, say: its errors are no list
        task_path=tasks.add.module_path, status=JobStatus.FAILED, finished_at=now, errors={"x": 1}
    )

    groups = as_json("failed")["groups"]

    assert [(g["task"].rsplit(".", 1)[-1], g["exception"], g["jobs"]) for g in groups] == [
        ("boom", "builtins.ValueError", 3),
        ("add", None, 1),
        ("system", "django_dbtasks.exceptions.TaskNotRegistered", 1),
        ("returns_a_set", "builtins.TypeError", 1),
        ("always_fails", "builtins.RuntimeError", 1),
    ]
    boom = groups[0]
    latest = Job.objects.filter(task_path=tasks.boom.module_path, status="FAILED").exclude(
        pk=old.pk
    )
    assert boom["latest_job"] == latest.order_by("-id")[0].pk
    assert boom["latest_message"] == "ValueError: card stolen"
    assert groups[1]["latest_job"] == malformed.pk and groups[1]["latest_message"] == ""
    assert groups[4]["latest_message"] == "RuntimeError: failure number 3"

    older = quick_json("failed", "--since", "3d", "--limit", "2")["groups"]
    assert [(g["exception"], g["jobs"]) for g in older] == [("builtins.ValueError", 3), (None, 1)]
    every = quick_json("failed", "--since", "3d", "--limit", "10")["groups"]
    assert ("builtins.KeyError", 1) in [(g["exception"], g["jobs"]) for g in every]
    assert quick_json("failed", "--queue", "emails")["groups"] == []

    text = tasks_command("failed").stdout
    assert text.splitlines()[0] == (
        "Jobs of backend 'default' failed in the last 1d00h, by task and exception (largest first):"
    )
    assert "      ValueError: card stolen" in text
    assert "(no error kept)" in text
