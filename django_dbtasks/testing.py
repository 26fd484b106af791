"""Run a test's ready jobs in the test's own process, thread and transaction.

``runtasks --burst`` runs jobs in forked pool processes: whatever a task
does there (``mail.outbox``, caches, a mock) is lost to the test, and inside
Django's ``TestCase`` it cannot even see the test's uncommitted rows.
``run_ready_jobs()`` runs the worker's own loop here instead (``WorkerLoop``
with an ``InlinePool``): the real claim, ``execution.run`` as a pool process
calls it, the real outcome writes and retries, Django's task signals, all on
the test's database connection. docs/testing.md says how to use it and what
differs from a worker. The pytest fixture is in ``pytest_plugin.py``; pytest
is never imported here.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.db import connections

from . import queries, registry
from .backend import DatabaseBackend
from .claimed import ClaimedJob
from .compat import DEFAULT_TASK_BACKEND_ALIAS, TaskResultStatus, task_backends
from .execution import Outcome
from .inline import InlinePool
from .models import Job, JobStatus
from .pool import Written
from .stopping import StopSignals
from .worker import WorkerLoop, WorkerOptions

#: Most job attempts one call runs, unless told otherwise: far more than a test
#: enqueues, and a job that enqueues itself each time it runs is stopped in seconds.
DEFAULT_MAX_JOBS = 1000


class TooManyJobs(Exception):
    """``run_ready_jobs()`` ran ``max_jobs`` attempts and jobs were still ready."""


class DatabaseUnreachable(Exception):
    """The database stopped answering while ``run_ready_jobs()`` ran jobs."""


def run_ready_jobs(
    *,
    queues: Iterable[str] | None = None,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    max_jobs: int = DEFAULT_MAX_JOBS,
    retry_now: bool = False,
) -> list[Job]:
    """Run every ready job here, as a worker would, until none is ready; return those run.

    Jobs enqueued by the jobs it runs run too, in the same call. A failed
    attempt with attempts left is put back READY with its retry delay, as a
    worker does: it runs again in this call only once that delay has passed
    (``retry_now=True``: at once, until it succeeds or has no attempt left).
    Jobs deferred (``run_after``) to a later time are left alone. Raises
    ``TooManyJobs`` when ``max_jobs`` attempts were run and jobs are still ready.

    Returns the ``Job`` rows run, read after the call, in the order each
    first finished (a job run twice is there once, as it ended).
    """
    database_backend = _database_backend(backend)
    served = _queues(database_backend, queues)
    if not isinstance(max_jobs, int) or isinstance(max_jobs, bool):
        raise TypeError(f"max_jobs must be a whole number, got {_shown(max_jobs)}.")
    if max_jobs < 1:
        raise ValueError(f"max_jobs must be at least 1, got {max_jobs}.")
    if not isinstance(retry_now, bool):
        raise TypeError(f"retry_now must be True or False, got {_shown(retry_now)}.")
    worker = InProcessWorker(database_backend, served, max_jobs, retry_now)
    worker.run_until_idle()
    rows = Job.objects.using(database_backend.database).in_bulk(list(worker.ran))
    ran = [rows[job_id] for job_id in worker.ran if job_id in rows]
    if worker.inline.spent():
        _refuse_runaway(database_backend, served, max_jobs)
    return ran


class InProcessWorker(WorkerLoop):
    """The worker loop as ``runtasks --burst`` runs it, in the caller's thread, on its connection.

    What differs from a worker process, and why:

    - jobs run in this thread (``InlinePool``), with timeouts by ``SIGALRM``
      where this is the main thread;
    - no signal handlers: SIGINT and SIGTERM stay the test runner's (a Ctrl-C
      during a job fails that job, as in a worker, and ends the call);
    - no LISTEN, no scheduler, and the connection stays open at the end: it
      holds the test's transaction;
    - after every turn it claims again, as the NOTIFY of a job enqueued by a
      job would make a worker do: a burst worker may exit before those run;
    - inside a transaction on PostgreSQL the claim's clock stands still; each
      turn works around it (see the "Testing" section of ``queries``).
    """

    def __init__(
        self, backend: DatabaseBackend, queues: list[str], max_jobs: int, retry_now: bool
    ) -> None:
        self.inline = _TestPool(budget=max_jobs, timeout_of=_timeout_of)
        super().__init__(
            backend, WorkerOptions(queues=queues, burst=True, scheduler=False), pool=self.inline
        )
        self.config = replace(self.config, NOTIFY=False)
        self.stop = _NoSignals(self.grace_period, self._stop_requested, self.reporter.stop_forced)
        self.retry_now = retry_now
        #: Each job run, in the order it first finished, and the status last written.
        self.ran: dict[int, str | None] = {}
        self.retried: list[int] = []  # retries written since the last turn ended

    def run_until_idle(self) -> None:
        """Turns until no job is ready (or the budget is spent), then the worker's shutdown."""
        self.start()
        try:
            while self.turn():
                if self.guard.down:
                    raise DatabaseUnreachable(
                        f"Database {self.config.DATABASE!r} stopped answering while "
                        "run_ready_jobs() ran jobs (the log says why)."
                    )
                if self.inline.interrupted:
                    break
                if self.inline.spent() and not (self.pool.holding() or self.outcomes.pending):
                    break
        finally:
            self.shutdown()
        if self.inline.interrupted:
            raise KeyboardInterrupt  # the job it stopped is written (FAILED), the rest released

    def turn(self) -> bool:
        """One turn of the loop, with the clock made right for its claim; False: done."""
        self.notified = True  # the jobs just run may have enqueued others
        moved = queries.antedate_due(self.connection, self.backend.alias, self.options.queues)
        try:
            going = self.step()
        finally:
            queries.restore_run_after(self.connection, moved)
        retried, self.retried = self.retried, []
        if self.retry_now:
            queries.retry_now(self.connection, retried)
            return going or bool(retried)
        queries.rebase_retries(self.connection, retried)
        return going

    def _written(self, written: list[Written]) -> None:
        """The worker's own bookkeeping, and a note of each job for the caller."""
        super()._written(written)
        for item, status in written:
            self.ran[item.job.id] = status
            if status == TaskResultStatus.READY:
                self.retried.append(item.job.id)

    def _close_connections(self) -> None:
        """Nothing: this connection is the test's, and may hold its transaction."""


class _TestPool(InlinePool):
    """An ``InlinePool`` that Ctrl-C stops: the test run ends, instead of only the job.

    A task interrupted by SIGINT fails with ``KeyboardInterrupt``, as in a
    worker; then no other job starts and ``run_ready_jobs()`` raises it. A
    task that raises ``KeyboardInterrupt`` itself only fails, as in a worker.
    """

    interrupted = False

    def run(self, job: ClaimedJob) -> Outcome:
        on_main_thread = threading.current_thread() is threading.main_thread()
        if not on_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return super().run(job)  # only the main thread has signals; a runner's own handler

        def interrupt(signum: int, frame: Any) -> None:
            self.interrupted = True
            self.stop_starting_jobs()
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupt)
        try:
            return super().run(job)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)


class _NoSignals(StopSignals):
    """A stop that is never signalled: the test runner keeps SIGINT (Ctrl-C) and SIGTERM."""

    def install(self) -> None:
        pass

    def restore(self) -> None:
        pass


def _timeout_of(job: ClaimedJob) -> float | None:
    task = registry.lookup(job.task_path)
    return None if task is None else task.timeout


def _database_backend(alias: Any) -> DatabaseBackend:
    if not isinstance(alias, str):
        raise TypeError(f"backend must be the alias of a TASKS entry (a str), got {_shown(alias)}.")
    try:
        backend = task_backends[alias]
    except Exception as error:
        raise ValueError(f"Cannot load task backend {alias!r}: {error}") from None
    if not isinstance(backend, DatabaseBackend):
        raise ValueError(
            f"TASKS[{alias!r}] uses {type(backend).__module__}.{type(backend).__name__}, "
            "which stores no jobs to run: run_ready_jobs() runs the jobs of "
            "django_dbtasks.backend.DatabaseBackend (docs/testing.md)."
        )
    backend.config  # noqa: B018 - raises the configuration error, if any
    return backend


def _queues(backend: DatabaseBackend, queues: Any) -> list[str]:
    """The queues to serve, as ``runtasks --queue`` takes them; ``[]`` means every queue."""
    if queues is None:
        return sorted(backend.queues)
    if isinstance(queues, str | bytes) or not isinstance(queues, Iterable):
        raise TypeError(
            f"queues must be a list of queue names, got {_shown(queues)}"
            + (f": write queues=[{queues!r}]." if isinstance(queues, str) else ".")
        )
    names = list(queues)
    wrong = [name for name in names if not isinstance(name, str)]
    if wrong:
        raise TypeError(f"queues must hold queue names (str), got {_shown(wrong[0])}.")
    if not names:
        raise ValueError("queues is empty: leave it out (None) to run the jobs of every queue.")
    unknown = [name for name in names if backend.queues and name not in backend.queues]
    if unknown:
        raise ValueError(
            f"Unknown queue(s) {', '.join(map(repr, unknown))}: TASKS[{backend.alias!r}]"
            f"['QUEUES'] has {', '.join(map(repr, sorted(backend.queues)))}."
        )
    return list(dict.fromkeys(names))


def _refuse_runaway(backend: DatabaseBackend, queues: list[str], max_jobs: int) -> None:
    """Raise ``TooManyJobs`` if jobs are still due once ``max_jobs`` attempts ran."""
    connection = connections[backend.database]
    waiting = Job.objects.using(backend.database).filter(
        backend=backend.alias,
        status=JobStatus.READY,
        run_after__lte=queries.database_now(connection),
    )
    if queues:
        waiting = waiting.filter(queue_name__in=queues)
    paths = sorted(set(waiting.values_list("task_path", flat=True)[:100]))[:5]
    if not paths:
        return
    raise TooManyJobs(
        f"run_ready_jobs() ran {max_jobs} job attempts (max_jobs={max_jobs}) and jobs are "
        f"still ready ({', '.join(paths)}): does a job enqueue another every time it runs? "
        "If the test really needs more, pass a larger max_jobs."
    )


def _shown(value: Any) -> str:
    text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= 80 else f"{text[:77]}..."
