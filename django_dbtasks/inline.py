"""A pool that runs jobs in the calling process: for tests that drive the loop turn by turn.

``WorkerLoop(backend, options, pool=InlinePool())`` is the whole worker,
with its real SQL, batching, fencing and signals, except that jobs run
synchronously inside ``wait()``. So a test can call ``step()`` and count
the statements of one turn (``django.test.utils.CaptureQueriesContext``).

What it leaves out, on purpose: timeouts (nothing can interrupt a call in
its own process), crashes (one would take the test down) and the pool
processes' signals. The subprocess tests cover those. ``wait()`` never
sleeps: a test drives turns as fast as it likes.
"""

from __future__ import annotations

import select
from typing import Any

from . import execution
from .claimed import ClaimedJob
from .pool import Finished


class InlinePool:
    """Holds submitted jobs and runs them, in order, at the next ``wait()``."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self.capacity = 1
        self.jobs: list[ClaimedJob] = []
        self.stopping = False

    def start(self) -> None:
        self.stopping = False

    def stop(self, kill: bool) -> None:
        self.jobs.clear()  # left RUNNING in the table: the worker releases them

    def submit(self, jobs: list[ClaimedJob]) -> None:
        self.jobs.extend(jobs)

    def wait(self, timeout: float, extra: list[Any]) -> tuple[list[Finished], list[Any]]:
        """Run every held job now (none once stopping); report which ``extra`` fds are readable."""
        if self.stopping:
            self.jobs.clear()  # like a pool process's skipped jobs: released at the stop
        finished = [Finished(job, execution.run(job)) for job in self.jobs]
        self.jobs.clear()
        watched = [fd for fd in extra if fd is not None and fd >= 0]
        ready = select.select(watched, [], [], 0)[0] if watched else []
        return finished, ready

    def held(self) -> list[ClaimedJob]:
        return list(self.jobs)

    def holding(self) -> int:
        return len(self.jobs)

    def free_slots(self) -> int:
        return max(0, self.size * self.capacity - len(self.jobs))

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
