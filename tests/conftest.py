"""Shared helpers: real worker subprocesses against the test database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
IS_POSTGRES = bool(os.environ.get("DATABASE_URL"))

postgres_only = pytest.mark.skipif(not IS_POSTGRES, reason="needs PostgreSQL")


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess that must use the current test database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DBTASKS_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]


def run_worker(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``runtasks --burst`` to completion and return what it printed."""
    connection.close()  # SQLite: release any lock this process holds
    return subprocess.run(
        manage("runtasks", "--burst", *args),
        env=worker_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class WorkerProcess:
    """A ``runtasks`` subprocess that a test can signal and wait for."""

    def __init__(self, *args: str, **env: str) -> None:
        log = ROOT / ".artifacts"
        log.mkdir(exist_ok=True)
        self.log_path = log / f"worker-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            manage("runtasks", *args),
            env=worker_env(**env),
            cwd=ROOT,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log_file.close()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        connection.close()
        worker = WorkerProcess(*args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # any pool child left behind
        except ProcessLookupError:
            pass


def worker_tracebacks(output: str) -> list[str]:
    """Tracebacks in a worker's output other than those of failed jobs.

    Django's own log line for a failed task ("Task id=... state=FAILED") carries
    that job's traceback by design; any other traceback is the worker's own.
    """
    lines = output.splitlines()
    return [
        "\n".join(lines[max(0, i - 1) : i + 6])
        for i, line in enumerate(lines)
        if line.startswith("Traceback")
        and not (i and re.search(r"Task id=\S+ .*FAILED", lines[i - 1]))
    ]


def wait_until(condition: Callable[[], object], timeout: float = 30, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
