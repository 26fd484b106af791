"""How a worker stops, whoever stops it, proved on real worker processes.

- A SIGTERM or SIGINT sent to the worker's whole process group (supervisor's
  ``stopasgroup``, systemd's control-group kill, Ctrl-C, ``kill -TERM -PGID``)
  is a graceful stop: the running jobs finish, once each, and the worker exits 0;
  the jobs it had not started stay READY for the next worker.
- The same, through a real ``supervisord`` running the shipped program file
  (``example_project/deploy/supervisor.conf``) and ``supervisorctl restart``.
- When the worker's main process is SIGKILLed alone, none of its pool processes
  outlives it, idle or busy; the jobs they held are rescued by another worker.
- A pool process killed while the worker stops is not its job's crash: the job is
  put back to READY, its attempt not counted, and the next worker runs it.
- A crash report gives the real duration of the attempt that crashed.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from django_dbtasks.compat import TaskResultStatus
from django_dbtasks.models import Job, JobStatus

from .conftest import ROOT, run_worker, wait_until, worker_env
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

#: Short leases so that rescues happen within seconds: heartbeat 0.5 s, lease 1.5 s.
SHORT_LEASE = {"DBTASKS_TEST_LEASE": "1.5", "DBTASKS_TEST_HEARTBEAT": "0.5"}
SHIPPED_SUPERVISOR_PROGRAM = ROOT / "example_project" / "deploy" / "supervisor.conf"
VENV_BIN = Path(sys.executable).parent
WORKER_CRASHED = "django_dbtasks.exceptions.WorkerCrashed"


# Processes, as the kernel sees them


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, process group, session) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid, pgrp, session = text.rsplit(")", 1)[1].split()[:4]
    return state, int(ppid), int(pgrp), int(session)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def live_processes_of(worker_pid: int) -> list[int]:
    """Every live process in the worker's process group or session (zombies are dead).

    The worker is started in a new session, so its pid is its group's and
    session's id, and its pool processes keep both even once reparented.
    """
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and worker_pid in (stat[2], stat[3]):
            found.append(pid)
    return found


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (the worker's pool processes)."""
    found = []
    for child in _all_pids():
        stat = _stat(child)
        if stat is not None and stat[0] != "Z" and stat[1] == pid:
            found.append(child)
    return found


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "(gone)"
        lines.append(f"{pid} {_stat(pid)} {command}")
    return "\n".join(lines)


def assert_all_gone_within(worker_pid: int, seconds: float, since: float) -> None:
    deadline = since + seconds
    while live_processes_of(worker_pid):
        if time.monotonic() > deadline:
            left = live_processes_of(worker_pid)
            raise AssertionError(
                f"{len(left)} process(es) of the killed worker still alive after {seconds} s:\n"
                + describe(left)
            )
        time.sleep(0.05)


# Jobs and their runs


def runs_of(label: str) -> int:
    return Execution.objects.filter(label=label).count()


def wait_for_bodies_started(labels: list[str], timeout: float = 60) -> None:
    """Wait until each job's body has recorded that it started."""
    started = [f"{label}-started" for label in labels]
    wait_until(
        lambda: Execution.objects.filter(label__in=started).count() == len(started),
        timeout=timeout,
    )


def enqueue_sleepers(count: int, seconds: float, prefix: str) -> dict[str, int]:
    """``count`` record_then_sleep jobs; returns their ids by label."""
    return {
        label: int(tasks.record_then_sleep.enqueue(seconds, label).id)
        for label in (f"{prefix}-{i}" for i in range(count))
    }


def assert_ran_once_and_succeeded(job_ids_by_label: dict[str, int]) -> None:
    for label, job_id in job_ids_by_label.items():
        job = Job.objects.get(pk=job_id)
        assert (job.status, job.attempts, job.errors) == (JobStatus.SUCCESSFUL, 1, []), label
        assert runs_of(f"{label}-started") == 1, f"{label} was started more than once"
        assert runs_of(label) == 1, f"{label} did not finish exactly once"


def enqueue_innocents(count: int, prefix: str) -> list[int]:
    results = tasks.record_run.enqueue_many([((f"{prefix}-{i}",), {}) for i in range(count)])
    return [int(result.id) for result in results]


def assert_each_ran_once_and_succeeded(job_ids: list[int]) -> None:
    runs = Counter(Execution.objects.values_list("job_id", flat=True))
    assert [runs[str(job_id)] for job_id in job_ids] == [1] * len(job_ids)
    statuses = Counter(Job.objects.filter(pk__in=job_ids).values_list("status", flat=True))
    assert statuses == {JobStatus.SUCCESSFUL: len(job_ids)}


# 1. A stop sent to the whole process group


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_sent_to_the_whole_group_lets_running_jobs_finish(start_worker, signum):
    sleepers = enqueue_sleepers(4, 3, "group-stop")
    innocents = enqueue_innocents(40, "queued-behind")
    worker = start_worker("--concurrency", "4")
    wait_for_bodies_started(list(sleepers))

    os.killpg(worker.pid, signum)  # kill -TERM -PGID: the main process and its pool
    assert worker.wait(timeout=60) == 0, worker.output()

    assert_ran_once_and_succeeded(sleepers)
    for label in sleepers:  # the pool process that started each job finished it
        pids = set(Execution.objects.filter(label__startswith=label).values_list("pid", flat=True))
        assert len(pids) == 1, (label, pids)
    assert "grace period over" not in worker.output()  # "... is over": jobs were cut short
    ran = {int(job_id) for job_id in Execution.objects.values_list("job_id", flat=True)}
    unstarted = Job.objects.filter(pk__in=[i for i in innocents if i not in ran])
    for job in unstarted:
        assert (job.status, job.attempts, job.errors) == (JobStatus.READY, 0, []), job.pk
    assert Job.objects.filter(pk__in=innocents, status=JobStatus.FAILED).count() == 0

    finished = run_worker()
    assert finished.returncode == 0, finished.stderr
    assert_each_ran_once_and_succeeded(innocents)
    assert_ran_once_and_succeeded(sleepers)  # and nothing ran them again


# 2. supervisord running the shipped program


def _supervisor_quoted(value: str) -> str:
    """A value for supervisor's ``environment=`` (split by shlex, then stripped of quotes)."""
    quote = '"' if '"' not in value else "'"
    if quote in value or "\n" in value or "\r" in value or value[-1:] in ("'", '"'):
        raise ValueError(f"supervisor's environment= cannot carry {value!r}")
    return quote + value.replace("%", "%%") + quote


def supervisor_environment(variables: dict[str, str]) -> str:
    for name in variables:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"supervisor's environment= cannot carry the name {name!r}")
    return ",".join(f"{name}={_supervisor_quoted(value)}" for name, value in variables.items())


def _escaped(text: str) -> str:
    """Supervisor expands %(name)s in its values: a literal % is written %%."""
    return text.replace("%", "%%")


def write_supervisor_config(directory: Path, environment: dict[str, str]) -> tuple[Path, str]:
    """The shipped program, changed only where a test must; returns (config, program name)."""
    config = configparser.RawConfigParser()
    with open(SHIPPED_SUPERVISOR_PROGRAM) as shipped:
        config.read_file(shipped)
    [section] = [name for name in config.sections() if name.startswith("program:")]
    program = config[section]
    shipped_arguments = shlex.split(program["command"].split("manage.py", 1)[1])
    assert shipped_arguments == ["runtasks", "--concurrency", "4"], program["command"]
    program["command"] = _escaped(shlex.join([sys.executable, "-m", "django", *shipped_arguments]))
    program["directory"] = _escaped(str(ROOT))
    del program["user"]
    program["environment"] = supervisor_environment(environment)
    program["numprocs"] = "1"
    program["stdout_logfile"] = _escaped(str(directory / "worker-%(process_num)d.log"))
    config["supervisord"] = {
        "nodaemon": "true",
        "logfile": _escaped(str(directory / "supervisord.log")),
        "pidfile": _escaped(str(directory / "supervisord.pid")),
        "childlogdir": _escaped(str(directory)),
    }
    socket_path = _escaped(str(directory / "s.sock"))
    config["unix_http_server"] = {"file": socket_path}
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {"serverurl": f"unix://{socket_path}"}
    path = directory / "supervisord.conf"
    with open(path, "w") as out:
        config.write(out)
    return path, section.split(":", 1)[1]


def parsed_program(config: Path):
    """The one process config supervisor's own parser reads from ``config``."""
    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    [group] = options.process_group_configs
    [process] = group.process_configs
    return group.name, process


def supervisorctl(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def running_pid(config: Path, name: str) -> int | None:
    status = supervisorctl(config, "status", name, timeout=30)
    match = re.search(r"\bRUNNING\s+pid (\d+)", status.stdout)
    return int(match.group(1)) if match else None


@contextmanager
def supervisord(config: Path, log: Path) -> Iterator[subprocess.Popen]:
    """A real supervisord; shut down at the end, its programs' groups killed if need be."""
    connection.close()  # SQLite: release any lock this process holds
    with open(log, "w") as out:
        # Its only environment: the worker's comes from the program's environment=.
        daemon = subprocess.Popen(
            [str(VENV_BIN / "supervisord"), "-c", str(config)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    program_groups: set[int] = set()
    try:
        yield daemon
    finally:
        program_groups.update(
            stat[2] for stat in (_stat(pid) for pid in children_of(daemon.pid)) if stat is not None
        )
        supervisorctl(config, "shutdown", timeout=120)
        try:
            daemon.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        for group in program_groups:  # supervisor gives each program its own group
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_supervisorctl_restart_of_the_shipped_program_loses_no_running_job():
    with tempfile.TemporaryDirectory(prefix="sv-") as tmp:  # short: a socket path
        directory = Path(tmp)
        environment = worker_env()
        config, program = write_supervisor_config(directory, environment)
        group, process = parsed_program(config)
        assert process.environment == environment  # the quoting survived supervisor's parser
        assert process.stopasgroup and process.killasgroup and process.stopwaitsecs > 30
        name = f"{group}:{process.name}"
        worker_log = directory / "worker-0.log"

        with supervisord(config, directory / "supervisord.out"):
            first_pid = wait_until(lambda: running_pid(config, name), timeout=60)
            sleepers = enqueue_sleepers(4, 3, "supervised")
            wait_for_bodies_started(list(sleepers))

            restart = supervisorctl(config, "restart", f"{group}:*")
            assert restart.returncode == 0, restart.stdout + restart.stderr
            assert f"{name}: stopped" in restart.stdout, restart.stdout
            assert f"{name}: started" in restart.stdout, restart.stdout

            # The old worker has exited: what it ran is in the table already.
            log = worker_log.read_text()
            assert_ran_once_and_succeeded(sleepers)
            for job_id in sleepers.values():
                assert f"-{first_pid}-" in Job.objects.get(pk=job_id).worker_ids[0]
            assert "signal=SIGTERM" in log, log
            assert "grace period over" not in log, log

            second_pid = wait_until(lambda: running_pid(config, name), timeout=60)
            assert second_pid != first_pid
            after = tasks.record_run.enqueue("after-restart")
            after.wait(timeout=60)
            assert after.status == TaskResultStatus.SUCCESSFUL
            assert f"-{second_pid}-" in after.worker_ids[0]
            assert runs_of("after-restart") == 1


# 3. The main process SIGKILLed alone


def test_idle_pool_processes_die_with_the_main_process(start_worker):
    worker = start_worker("--concurrency", "4")
    wait_until(lambda: len(children_of(worker.pid)) == 4, timeout=60)
    wait_until(lambda: "event=started host=" in worker.output(), timeout=60)

    killed_at = time.monotonic()
    os.kill(worker.pid, signal.SIGKILL)  # the main process only, not its group
    assert worker.wait(timeout=10) == -signal.SIGKILL
    assert_all_gone_within(worker.pid, 10, since=killed_at)


@pytest.mark.slow
def test_busy_pool_processes_die_with_the_main_process_and_their_jobs_are_rescued(
    start_worker,
):
    # Longer than the 10 s allowed: a pool process that only noticed its parent's
    # death after its job would still be alive when the time is up.
    sleepers = enqueue_sleepers(4, 15, "busy")
    worker = start_worker("--concurrency", "4", **SHORT_LEASE)
    wait_for_bodies_started(list(sleepers))
    assert len(children_of(worker.pid)) == 4

    killed_at = time.monotonic()
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout=10) == -signal.SIGKILL
    assert_all_gone_within(worker.pid, 10, since=killed_at)
    assert Execution.objects.filter(label__in=list(sleepers)).count() == 0  # none finished

    # Rescued jobs are suspects, each run alone: one rescuer per job runs them side by side.
    rescuers = [start_worker("--concurrency", "1", **SHORT_LEASE) for _ in sleepers]
    wait_until(
        lambda: (
            Job.objects.filter(pk__in=sleepers.values(), status=JobStatus.SUCCESSFUL).count()
            == len(sleepers)
        ),
        timeout=180,
        interval=0.2,
    )
    for label, job_id in sleepers.items():
        job = Job.objects.get(pk=job_id)
        assert (job.status, job.attempts, job.errors) == (JobStatus.SUCCESSFUL, 1, []), label
        assert len(job.worker_ids) == 2 and f"-{worker.pid}-" in job.worker_ids[0], label
        assert runs_of(f"{label}-started") == 2 and runs_of(label) == 1, label
    assert "outcome=RESCUED" in "".join(rescuer.output() for rescuer in rescuers)


# 4. A pool process killed while the worker stops


def test_a_pool_process_killed_during_the_stop_is_not_its_jobs_crash(start_worker):
    [(label, job_id)] = enqueue_sleepers(1, 5, "stopping").items()
    worker = start_worker("--grace-period", "20")
    wait_for_bodies_started([label])
    [pool_process] = children_of(worker.pid)

    worker.signal(signal.SIGTERM)
    wait_until(lambda: "signal=SIGTERM" in worker.output(), timeout=30)
    killed_at = time.monotonic()
    os.kill(pool_process, signal.SIGKILL)  # like a process manager's SIGKILL

    assert worker.wait(timeout=30) == 0, worker.output()
    assert time.monotonic() - killed_at < 10, "the worker waited out the grace period"
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.crashes, job.errors) == (JobStatus.READY, 0, 0, [])
    assert runs_of(label) == 0
    assert "WorkerCrashed" not in worker.output()

    finished = run_worker()
    assert finished.returncode == 0, finished.stderr
    job.refresh_from_db()
    assert (job.status, job.attempts, job.errors) == (JobStatus.SUCCESSFUL, 1, [])
    assert runs_of(f"{label}-started") == 2 and runs_of(label) == 1


# 5. The crash report's duration


def test_a_crash_report_gives_the_attempts_real_duration():
    before = enqueue_innocents(20, "before-crash")
    crashing = tasks.crashes_after.enqueue(0.5)
    innocents = before + enqueue_innocents(20, "after-crash")

    finished = run_worker()
    assert finished.returncode == 0, finished.stderr
    job = Job.objects.get(pk=crashing.id)
    assert job.status == JobStatus.FAILED and job.attempts == 1
    [error] = job.errors
    assert error["exception_class_path"] == WORKER_CRASHED
    assert re.search(r"exited with code 1 after 0\.5\d* s", error["traceback"]), error
    assert "after 0.5" in error["message"], error
    assert_each_ran_once_and_succeeded(innocents)
