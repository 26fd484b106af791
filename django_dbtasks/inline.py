"""A pool that runs jobs in the calling process: for tests, turn by turn or through ``testing``.

``WorkerLoop(backend, options, pool=InlinePool())`` is the whole worker,
with its real SQL, batching, fencing and signals, except that jobs run
synchronously inside ``wait()``. So a test can call ``step()`` and count
the statements of one turn (``django.test.utils.CaptureQueriesContext``),
and ``django_dbtasks.testing`` runs a test's jobs in the test's own process,
thread and transaction.

What it leaves out, on purpose: crashes (one would take the test down) and
the pool processes' signals; the subprocess tests cover those. Timeouts
only when asked (``timeout_of``), by ``SIGALRM`` on the main thread: they
interrupt Python code between two bytecodes, which stops a sleep or an
endless loop, but not a call blocked in C that ignores signals, nor code
that catches ``BaseException``. A process pool kills; this can only ask.
``wait()`` never sleeps: a test drives turns as fast as it likes.
"""

from __future__ import annotations

import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import execution
from .claimed import ClaimedJob
from .errors import error_entry
from .exceptions import JobTimedOut
from .execution import Outcome
from .pool import Finished


class _Alarm(BaseException):
    """Raised into a task by ``SIGALRM`` when its timeout passes (BaseException: as a kill,
    an ``except Exception`` in the task does not swallow it)."""


class InlinePool:
    """Holds submitted jobs and runs them, in order, at the next ``wait()``.

    ``budget`` bounds how many jobs it runs in its life (None: no bound):
    once spent it has no free slot, so the loop claims nothing more.
    ``timeout_of`` gives a job's timeout in seconds (None: none enforced).
    """

    def __init__(
        self,
        size: int = 1,
        *,
        budget: int | None = None,
        timeout_of: Callable[[ClaimedJob], float | None] | None = None,
    ) -> None:
        self.size = size
        self.capacity = 1
        self.jobs: list[ClaimedJob] = []
        self.stopping = False
        self.budget = budget
        self.timeout_of = timeout_of
        self.started = 0  # jobs run so far

    def start(self) -> None:
        self.stopping = False

    def stop(self, kill: bool) -> None:
        self.jobs.clear()  # left RUNNING in the table: the worker releases them

    def submit(self, jobs: list[ClaimedJob]) -> None:
        self.jobs.extend(jobs)

    def wait(self, timeout: float, extra: list[Any]) -> tuple[list[Finished], list[Any]]:
        """Run every held job now (none once stopping); report which ``extra`` fds are readable."""
        finished = []
        for job in self.jobs:
            if self.stopping:
                break  # like a pool process's skipped jobs: released at the stop
            finished.append(Finished(job, self.run(job)))
        self.jobs.clear()
        watched = [fd for fd in extra if fd is not None and fd >= 0]
        ready = select.select(watched, [], [], 0)[0] if watched else []
        return finished, ready

    def run(self, job: ClaimedJob) -> Outcome:
        """Run one job as a pool process does (``execution.run``), within its timeout if any."""
        self.started += 1
        limit = self.timeout_of(job) if self.timeout_of is not None else None
        if limit is None or not can_time_out():
            return execution.run(job)
        started = time.monotonic()
        outcome = None
        with alarm_after(limit) as alarm:
            try:
                outcome = execution.run(job)
            except _Alarm:
                pass  # it rang in execution's own code, after the task: a timeout all the same
            alarm.running = False
        if outcome is not None and not alarm.fired:
            return outcome
        elapsed = time.monotonic() - started
        text = (
            f"Timed out after {limit:g} s (the task's timeout): the attempt was stopped "
            f"after {elapsed:.1f} s by interrupting the task in the process that ran it."
        )
        return Outcome(
            job_id=job.id,
            succeeded=False,
            error=error_entry(JobTimedOut, text),
            duration=elapsed,
            finished_at=time.monotonic(),
        )

    def held(self) -> list[ClaimedJob]:
        return list(self.jobs)

    def holding(self) -> int:
        return len(self.jobs)

    def free_slots(self) -> int:
        room = max(0, self.size * self.capacity - len(self.jobs))
        if self.budget is not None:
            room = min(room, max(0, self.budget - self.started - len(self.jobs)))
        return room

    def spent(self) -> bool:
        """Whether the budget is used up (never, without one)."""
        return self.budget is not None and self.started >= self.budget

    def has_idle_child(self) -> bool:
        return not self.jobs

    def next_deadline(self) -> float | None:
        return None

    def announce(self, written: list[tuple[Finished, str | None]]) -> list[tuple[Finished, str]]:
        """Jobs ran here: the worker sends each ``task_finished`` itself."""
        return [(item, status) for item, status in written if status is not None]

    def take_unannounced(self) -> list[tuple[Finished, str]]:
        return []

    def drop_backlog(self) -> None:
        pass

    def stop_starting_jobs(self) -> None:
        self.stopping = True


def can_time_out() -> bool:
    """Whether this thread can interrupt a call with ``SIGALRM`` (Unix, the main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


class Alarm:
    """One alarm: whether the code it guards still runs, and whether it rang."""

    def __init__(self) -> None:
        self.running = True  # the block sets it False once its call returned
        self.fired = False

    def ring(self, signum: int, frame: Any) -> None:
        if self.running:  # too late otherwise: the call returned, let it stand
            self.fired = True
            raise _Alarm


@contextmanager
def alarm_after(seconds: float) -> Iterator[Alarm]:
    """Raise ``_Alarm`` into the block's code after ``seconds``, until it sets ``running`` False.

    An alarm already set (pytest-timeout's, say) is put back when the block
    ends, with the time it had left (at least a moment: it fires late, never
    not at all).
    """
    alarm = Alarm()
    began = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, alarm.ring)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield alarm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            left = max(previous_delay - (time.monotonic() - began), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)
