"""The worker loop: claim ready jobs, hand them to the pool, record outcomes.

``WorkerLoop.step()`` is one turn, and reads top to bottom: stop if asked,
run the maintenance that is due, fire due schedules, write the finished
outcomes and claim more jobs (one transaction), hand the claimed jobs to
the pool, wait for something to happen. Each duty lives in its own part:

- ``outcomes.OutcomeBatch``: outcomes not yet written, when they are due, writing them;
- ``maintenance.Maintenance``: heartbeat, orphan release, rescue, dead-worker cleanup;
- ``batching``: how many jobs to claim, and to hand each pool process;
- ``reporting.Reporter``: Django's task signals and the log lines;
- ``stopping.StopSignals``: SIGTERM/SIGINT and the wake-up pipe;
- ``outages.OutageGuard``: database outages and their backoff.

No SQL lives here (see ``queries.py``) and no argument parsing (see the
``runtasks`` command). The loop takes its pool, so tests can drive it turn
by turn with the in-process ``inline.InlinePool``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils.crypto import get_random_string

from . import announcing, queries, registry, tallies, tracing
from .backend import DatabaseBackend
from .batching import Pace, claim_size
from .claimed import ClaimedJob
from .errors import error_entry
from .exceptions import ArgumentNotSerializable, TaskNotRegistered
from .execution import Outcome
from .maintenance import Maintenance
from .models import Job
from .notify import Listener
from .outages import OutageGuard
from .outcomes import ClaimRequest, OutcomeBatch
from .pool import Finished, Limits, Pool, Written
from .reporting import Reporter
from .scheduler import Scheduler
from .stopping import StopSignals
from .tallies import Tallies

#: Errors that mean "the database is unreachable right now", not "this job is bad".
CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: Longest wait between two looks at the schedule table (new or edited schedules).
SCHEDULE_CHECK_INTERVAL = 1.0


class DatabaseUnavailable(Exception):
    """The worker could not reach its database at start."""


@dataclass
class WorkerOptions:
    """How one ``runtasks`` process serves (its command-line options)."""

    queues: list[str]
    concurrency: int = 1
    burst: bool = False
    grace_period: float | None = None  # None: the backend's GRACE_PERIOD option
    scheduler: bool = True  # run the cron scheduler in this worker
    max_tasks_per_child: int | None = None  # recycle a pool process after N jobs
    max_memory_per_child: int | None = None  # ... or once its peak RSS passes N KB


class JobPool(Protocol):
    """What the loop asks of its pool (``pool.Pool``, or ``inline.InlinePool`` in tests)."""

    size: int
    capacity: int

    def start(self) -> None: ...
    def stop(self, kill: bool) -> None: ...
    def submit(self, jobs: list[ClaimedJob]) -> None: ...
    def wait(self, timeout: float, extra: list[Any]) -> tuple[list[Finished], list[Any]]: ...
    def held(self) -> list[ClaimedJob]: ...
    def holding(self) -> int: ...
    def free_slots(self) -> int: ...
    def has_idle_child(self) -> bool: ...
    def next_deadline(self) -> float | None: ...
    def announce(self, written: list[Written]) -> list[tuple[Finished, str]]: ...
    def take_unannounced(self) -> list[tuple[Finished, str]]: ...
    def drop_backlog(self) -> None: ...
    def stop_starting_jobs(self) -> None: ...


def new_worker_id() -> str:
    host = socket.gethostname().split(".")[0][:30]
    return f"{host}-{os.getpid()}-{get_random_string(6).lower()}"


class WorkerLoop:
    """One worker process: start-up checks, the turns of the loop, the shutdown.

    It owns the turn and the state that decides the next claim (is more
    work ready, was the worker notified, must a suspect run alone) and
    dispatches claimed jobs to its pool; everything else is delegated to
    the parts named in the module's docstring.
    """

    def __init__(
        self, backend: DatabaseBackend, options: WorkerOptions, pool: JobPool | None = None
    ) -> None:
        self.backend = backend
        self.config = backend.config
        self.options = options
        self.grace_period = (
            self.config.GRACE_PERIOD if options.grace_period is None else options.grace_period
        )
        self.id = new_worker_id()
        self.pool: JobPool = pool or Pool(
            options.concurrency,
            before_fork=self._before_fork,
            timeout_of=_timeout_of,
            limits=Limits(options.max_tasks_per_child, options.max_memory_per_child),
        )
        self.reporter = Reporter(self.id)
        self.guard = OutageGuard(lambda: self.connection, self.id)
        self.stop = StopSignals(self.grace_period, self._stop_requested, self.reporter.stop_forced)
        self.outcomes = OutcomeBatch(
            lambda: self.connection,
            self.config.DATABASE,
            self.guard,
            self.reporter,
            self.config.PREFETCH_SECONDS,
            self.config.MAX_BATCH,
        )
        self.tallies = Tallies(backend.alias)
        self.maintenance = Maintenance(
            lambda: self.connection,
            self.guard,
            self.reporter,
            self.config,
            self.id,
            options.queues,
            backend.alias,
            self.tallies,
        )
        # Room for two batches in the pool: the claim waits until half of it is free
        # (see ``batching.claim_size``), so each claim of fast jobs is a full MAX_BATCH.
        self.pace = Pace(
            self.config.PREFETCH_SECONDS, max(1, 2 * self.config.MAX_BATCH // options.concurrency)
        )
        self.scheduler = Scheduler(self.config.DATABASE) if options.scheduler else None
        self.listener: Listener | None = None
        self.more_ready = True  # the last claim was full: more jobs may be waiting
        #: A suspect (a job whose worker died while holding it) may be waiting: claim
        #: nothing else until the worker holds nothing, then claim it alone.
        self.suspect_waiting = False
        self.notified = False  # a NOTIFY arrived since the last claim
        self.next_poll = 0.0  # monotonic time of the next claim without a notification
        self.next_schedule_check = 0.0
        self.processed = 0

    @property
    def connection(self) -> Any:
        return connections[self.config.DATABASE]

    # Lifecycle

    def run(self) -> int:
        """Serve until stopped (or, with ``burst``, until no job is ready); return exit code."""
        self.start()
        try:
            while self.step():
                pass
        finally:
            self.shutdown()
        return 1 if self.stop.forced else 0

    def start(self) -> None:
        registry.autodiscover()
        self.check_database()
        queries.register_worker(
            self.connection,
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.options.queues,
            self.options.concurrency,
            self.backend.alias,
        )
        if self.scheduler is not None:
            self.scheduler.sync_declared()
        self.stop.install()
        self.pool.start()
        if self.config.NOTIFY and self.connection.vendor == "postgresql":
            self.listener = Listener(self.connection)
        # Rescue before the first claim: a burst worker started from cron may find
        # nothing READY and exit before its first heartbeat would have come.
        self._run_maintenance(time.monotonic())
        self.reporter.worker_started(
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=",".join(self.options.queues) or "*",
            concurrency=self.options.concurrency,
            database=self.config.DATABASE,
            burst=self.options.burst,
            scheduler=self.scheduler is not None,
        )

    def check_database(self) -> None:
        """Raise ``DatabaseUnavailable`` with advice if the job table cannot be reached."""
        alias = self.config.DATABASE
        try:
            self.connection.ensure_connection()
        except CONNECTION_ERRORS as error:
            settings_dict = self.connection.settings_dict
            where = settings_dict.get("HOST") or settings_dict.get("NAME")
            raise DatabaseUnavailable(
                f"Cannot connect to database {alias!r} ({where}): {str(error).strip()}. "
                "Is the database server running, and are DATABASES settings right?"
            ) from error
        try:
            Job.objects.using(alias).exists()
        except DatabaseError as error:
            raise DatabaseUnavailable(
                f"The job table is missing in database {alias!r} ({str(error).strip()}): "
                "run 'python manage.py migrate'."
            ) from error

    def shutdown(self) -> None:
        """Stop the pool, write what finished, release the rest, say so: each step
        runs even if an earlier one failed, so nothing stays held by a stopped worker."""
        kill = self.stop.forced or bool(self.pool.holding())
        self._each_step(lambda: self.pool.stop(kill=kill), "stopping the pool")
        self._each_step(self._write_last_outcomes, "writing the last outcomes")
        released = self.guard.run(lambda: queries.release(self.connection, self.id)) or 0
        if released:
            self.reporter.released(released, why="unfinished at stop")
        self._each_step(self.maintenance.write_tallies, "writing the tallies")
        self.guard.run(lambda: queries.mark_worker_stopped(self.connection, self.id))
        self._each_step(self.stop.restore, "restoring signal handlers")
        self._each_step(self._close_connections, "closing connections")
        self.reporter.worker_stopped(self.processed)

    def _before_fork(self) -> None:
        """A pool process must inherit no open connection: it would share the socket."""
        self._close_connections()

    def _close_connections(self) -> None:
        if self.listener is not None:
            self.listener.close()  # LISTEN again, on a new connection, at the next turn
        connections.close_all()

    def _each_step(self, step: Callable[[], object], what: str) -> None:
        try:
            step()
        except Exception:
            self.reporter.step_failed(what)

    def _write_last_outcomes(self) -> None:
        if self.outcomes.pending:
            turn = self.outcomes.write(list(self.outcomes.pending), None, time.monotonic())
            self._written(turn.written)
        self._send_task_finished(self.pool.take_unannounced())

    # One turn of the loop

    def step(self) -> bool:
        """Do one turn; return False when the worker should exit."""
        now = time.monotonic()
        if self.stop.forced:
            return False
        if self.stop.requested:
            self.pool.drop_backlog()  # never started: released to other workers on exit
            if self._done_stopping(now):
                return False
        self.pool.capacity = self.pace.chunk_size()
        self._run_maintenance(now)
        self._fire_schedules(now)
        self._write_and_claim(now)
        if self.options.burst and self._drained():
            return False
        self._wait()
        return True

    def _done_stopping(self, now: float) -> bool:
        """Stopping: whether nothing runs any more, or the grace period is over."""
        if not self.pool.holding():
            return True
        if self.stop.grace_over(now):
            self.reporter.grace_over(self.grace_period, self.pool.holding())
            return True
        return False

    def _run_maintenance(self, now: float) -> None:
        waiting = self.maintenance.run_due(now, self._held_tokens)
        if waiting is not None:
            self.suspect_waiting = waiting

    def _held_tokens(self) -> list[str]:
        """The lease tokens of every job this worker holds: in the pool, or unwritten."""
        return [job.lease_token for job in self.pool.held()] + self.outcomes.tokens()

    def _fire_schedules(self, now: float) -> None:
        """Fire due cron schedules; look again when the next is due (or within a second)."""
        if self.scheduler is None or self.stop.requested or now < self.next_schedule_check:
            return
        delay = self.guard.run(self.scheduler.tick)
        wait = SCHEDULE_CHECK_INTERVAL if delay is None else min(delay, SCHEDULE_CHECK_INTERVAL)
        self.next_schedule_check = now + wait
        self.more_ready = True  # a fire may have enqueued jobs for us

    def _write_and_claim(self, now: float) -> None:
        """Write the outcomes that are due and claim more jobs, in one transaction."""
        claim = self._claim_request(now)
        busy = bool(self.pool.holding())
        due = self.outcomes.due(now, busy, self.stop.requested)
        outcomes = list(self.outcomes.pending) if due else []
        if not outcomes and claim is None:
            return
        turn = self.outcomes.write(outcomes, claim, now)
        self._written(turn.written)
        if turn.refused and not outcomes:
            # The claim alone was refused: try again after the poll interval, not at once.
            self.more_ready = False
            self.next_poll = time.monotonic() + max(self.config.POLL_INTERVAL, 1.0)
        if claim is not None and turn.claimed is not None:
            self._claimed(claim, turn.claimed)

    def _claim_request(self, now: float) -> ClaimRequest | None:
        """This turn's claim, or None: stopping, backing off, or nothing worth claiming."""
        if self.stop.requested or now < self.guard.retry_at:
            return None
        if not (self.more_ready or self.notified or now >= self.next_poll):
            return None
        limit = self._claim_size()
        if not limit:
            return None
        return ClaimRequest(
            queues=self.options.queues,
            limit=limit,
            worker_id=self.id,
            lease_seconds=self.config.LEASE,
            backend=self.backend.alias,
            suspects=self.suspect_waiting,
        )

    def _claim_size(self) -> int:
        return claim_size(
            self.pool, self.config.MAX_BATCH, self.suspect_waiting, len(self.outcomes)
        )

    def _claimed(self, claim: ClaimRequest, jobs: list[ClaimedJob]) -> None:
        """Learn from a claim's size whether more is ready, then start its jobs."""
        self.notified = False
        if claim.suspects:
            self.suspect_waiting = bool(jobs)  # one at a time, until none is left
            self.more_ready = True
        else:
            self.more_ready = len(jobs) == claim.limit
        if not self.more_ready:
            self.next_poll = time.monotonic() + self.config.POLL_INTERVAL
        self._dispatch(jobs)

    def _dispatch(self, jobs: list[ClaimedJob]) -> None:
        """Hand freshly claimed jobs to the pool; fail at once those that cannot run."""
        runnable, failed = [], []
        for job in jobs:
            self.tallies.waited(job.queue_name, job.waited)
            outcome = _unrunnable(job)
            if outcome is None:
                runnable.append(job)
            else:
                tracing.record_attempt(job, outcome.error or {}, outcome.duration)
                failed.append(Finished(job, outcome))
        self.outcomes.add(failed, time.monotonic())
        self.pool.submit(runnable)

    def _written(self, written: list[tuple[Finished, str | None]]) -> None:
        """Outcomes are in the table (``status`` None: discarded, the lease was lost):
        log them, and have ``task_finished`` sent where each job ran (see ``announcing``)."""
        for item, status in written:
            self.processed += 1
            if item.outcome.succeeded:
                self.pace.observe(item.outcome.duration)
            self.reporter.outcome_written(item.job, item.outcome, status)
            self._tally(item, status)
        self._send_task_finished(self.pool.announce(written))

    def _tally(self, item: Finished, status: str | None) -> None:
        """Count a written outcome and its run time for the metrics (not a discarded one)."""
        if status is None:
            return  # the lease was lost: the run that holds the job now counts its end
        outcome = tallies.ending(item.outcome.succeeded, status)
        self.tallies.outcome(item.job.queue_name, item.job.task_path, outcome)
        self.tallies.ran(item.job.queue_name, item.job.task_path, item.outcome.duration)

    @staticmethod
    def _send_task_finished(items: list[tuple[Finished, str]]) -> None:
        """``task_finished`` of written outcomes no pool process can send: sent here."""
        for item, status in items:
            announcing.send_task_finished(item.job, item.outcome, status)

    def _drained(self) -> bool:
        """Burst mode: nothing running or unwritten, and the last claim came back short."""
        return not (
            self.pool.holding()
            or self.outcomes.pending
            or self.more_ready
            or self.suspect_waiting
            or self.guard.down
        )

    # Waiting

    def _wait(self) -> None:
        """Sleep until a job ends, a signal or a notification comes, or a timer is due."""
        watched = [self.stop.wakeup_fd]
        listening = self._listening_socket()
        if listening is not None:
            watched.append(listening)
        finished, ready = self.pool.wait(self._wait_timeout(time.monotonic()), watched)
        if self.stop.wakeup_fd in ready:
            self.stop.drain()
        if listening is not None and listening in ready:
            self.notified = bool(self.guard.run(self._drain_notifications))
        self.outcomes.add(finished, time.monotonic())
        self._send_task_finished(self.pool.take_unannounced())

    def _wait_timeout(self, now: float) -> float:
        """Seconds until the earliest thing the loop must do without being woken."""
        limits = [self.maintenance.heartbeat_due - now]
        due_at = self.outcomes.due_at()
        if due_at is not None:
            limits.append(due_at - now)
        deadline = self.pool.next_deadline()
        if deadline is not None:
            limits.append(deadline - now)
        if self.stop.grace_deadline is not None:
            limits.append(self.stop.grace_deadline - now)
        if self.scheduler is not None and not self.stop.requested:
            limits.append(self.next_schedule_check - now)
        if self.guard.down:
            limits.append(self.guard.retry_at - now)
        elif not self.stop.requested and self._claim_size():
            limits.append(0.0 if self.more_ready else self.next_poll - now)
        return max(0.0, min(limits))

    def _listening_socket(self) -> int | None:
        """The notification socket to wait on, (re)starting LISTEN if needed."""
        if self.listener is None or self.guard.down:
            return None
        if self.guard.run(self.listener.ensure) is None and self.guard.down:
            return None
        return self.listener.fileno()

    def _drain_notifications(self) -> bool:
        return bool(self.listener and self.listener.drain())

    def _stop_requested(self, signal_name: str) -> None:
        """The first SIGTERM/SIGINT: no queued job starts; running ones get the grace period."""
        self.pool.stop_starting_jobs()
        self.reporter.stop_requested(signal_name, self.grace_period, self.pool.holding())


def _timeout_of(job: ClaimedJob) -> float | None:
    task = registry.lookup(job.task_path)
    return None if task is None else task.timeout


def _unrunnable(job: ClaimedJob) -> Outcome | None:
    """The failed outcome of a job that must not run (its task unknown, its row broken)."""
    if registry.lookup(job.task_path) is None:
        # Never imported, never run: the row is failed for good, the worker goes on.
        error = error_entry(TaskNotRegistered, registry.not_registered_message(job.task_path))
    elif job.unrunnable:
        error = error_entry(
            ArgumentNotSerializable,
            f"The job's row cannot be run ({job.unrunnable}), so it was never run. "
            "enqueue() never writes such a row: this one was written some other way "
            "(SQL, another program, an older release).",
        )
    else:
        return None
    return Outcome(job_id=job.id, succeeded=False, error=error)
