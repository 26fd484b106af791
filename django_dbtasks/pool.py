"""A prefork pool: task code runs in child processes the worker supervises.

Why processes: a hard ``timeout`` must stop even code stuck in C or in an
endless loop, and only killing a process does that. A child that crashes
(segfault, ``os._exit``, out of memory) takes only its own attempt with it;
the pool notices through the process sentinel and forks a replacement.
The parent never runs task code and keeps the only job-table connection.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from . import execution
from .exceptions import JobTimedOut, WorkerCrashed
from .execution import Outcome
from .queries import ClaimedJob

_fork = multiprocessing.get_context("fork")


def _child_main(conn: Connection, worker_id: str) -> None:
    """Receive jobs, run them, send back outcomes, until told to stop."""
    from django.db import close_old_connections

    # The parent decides when children stop: Ctrl-C in a terminal reaches the
    # whole process group, and must not kill a job the grace period protects.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        close_old_connections()
        outcome = execution.run(job, worker_id)
        close_old_connections()
        conn.send(outcome)


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    job: ClaimedJob | None = None
    deadline: float | None = None
    timeout: float | None = None
    started: float = 0.0


@dataclass(frozen=True)
class Finished:
    """A job whose attempt ended, and how."""

    job: ClaimedJob
    outcome: Outcome


class Pool:
    def __init__(self, size: int, worker_id: str, before_fork: Callable[[], None]) -> None:
        self.size = size
        self.worker_id = worker_id
        self.before_fork = before_fork
        self.children: list[_Child] = []

    def start(self) -> None:
        self.before_fork()
        self.children = [self._spawn() for _ in range(self.size)]

    def _spawn(self) -> _Child:
        parent_end, child_end = _fork.Pipe()
        process = _fork.Process(
            target=_child_main, args=(child_end, self.worker_id), name="dbtasks-child"
        )
        process.daemon = True
        process.start()
        child_end.close()
        return _Child(process=process, conn=parent_end)

    def _replace(self, child: _Child) -> None:
        child.conn.close()
        child.process.join(timeout=5)
        self.before_fork()
        self.children[self.children.index(child)] = self._spawn()

    # What the worker asks

    def idle_count(self) -> int:
        return sum(1 for child in self.children if child.job is None)

    def running(self) -> list[ClaimedJob]:
        return [child.job for child in self.children if child.job is not None]

    def next_deadline(self) -> float | None:
        deadlines = [c.deadline for c in self.children if c.deadline is not None]
        return min(deadlines) if deadlines else None

    def submit(self, job: ClaimedJob, timeout: float | None) -> None:
        child = next(child for child in self.children if child.job is None)
        child.job = job
        child.started = time.monotonic()
        child.timeout = timeout
        child.deadline = None if timeout is None else child.started + timeout
        child.conn.send(job)

    def wait(self, timeout: float, extra: list[Any]) -> tuple[list[Finished], list[Any]]:
        """Wait up to ``timeout`` s for an attempt to end; also watch ``extra`` fds.

        Returns the finished attempts (including children that crashed or
        overran their timeout, which are killed and replaced) and which of
        ``extra`` became readable.
        """
        watched: list[Any] = [*extra]
        for child in self.children:
            watched.append(child.process.sentinel)
            if child.job is not None:
                watched.append(child.conn)
        ready = wait(watched, timeout=max(timeout, 0))
        finished: list[Finished] = []
        for child in list(self.children):
            if child.job is not None and child.conn in ready:
                finished.extend(self._receive(child))
            if child.process.sentinel in ready and not child.process.is_alive():
                finished.extend(self._crashed(child))
        finished.extend(self._enforce_timeouts())
        return finished, [fd for fd in extra if fd in ready]

    def _receive(self, child: _Child) -> list[Finished]:
        try:
            outcome = child.conn.recv()
        except (EOFError, OSError):
            return []  # the sentinel reports the crash
        job = child.job
        assert job is not None
        child.job = child.deadline = None
        return [Finished(job, outcome)]

    def _crashed(self, child: _Child) -> list[Finished]:
        job = child.job
        exit_code = child.process.exitcode
        self._replace(child)
        if job is None:
            return []
        how = (
            f"was killed by signal {signal.Signals(-exit_code).name}"
            if exit_code is not None and exit_code < 0
            else f"exited with code {exit_code}"
        )
        text = (
            f"The pool process running this attempt {how} before the task returned "
            "(a crash in native code, os._exit(), sys.exit() or the kernel's OOM killer). "
            "The worker replaced it and went on."
        )
        error = execution.error_entry(WorkerCrashed, text)
        return [Finished(job, Outcome(job_id=job.id, succeeded=False, error=error))]

    def _enforce_timeouts(self) -> list[Finished]:
        now = time.monotonic()
        finished = []
        for child in list(self.children):
            if child.job is None or child.deadline is None or child.deadline > now:
                continue
            job, limit, elapsed = child.job, child.timeout or 0, now - child.started
            self._kill(child)
            self._replace(child)
            text = (
                f"Timed out after {limit:g} s (the task's timeout): the attempt was stopped "
                f"after {elapsed:.1f} s by killing the process that ran it."
            )
            error = execution.error_entry(JobTimedOut, text)
            outcome = Outcome(job_id=job.id, succeeded=False, error=error, duration=elapsed)
            finished.append(Finished(job, outcome))
        return finished

    @staticmethod
    def _kill(child: _Child) -> None:
        if child.process.pid is not None and child.process.is_alive():
            os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(timeout=5)

    def stop(self, kill: bool) -> None:
        """Stop every child: politely when idle, with SIGKILL if ``kill``."""
        for child in self.children:
            if child.job is not None or kill:
                self._kill(child)
            else:
                try:
                    child.conn.send(None)
                except OSError:
                    pass
        for child in self.children:
            child.process.join(timeout=5)
            if child.process.is_alive():
                self._kill(child)
            child.conn.close()
        self.children = []
