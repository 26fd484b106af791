"""A prefork pool: task code runs in child processes the worker supervises.

Why processes: a hard ``timeout`` must stop even code stuck in C or in an
endless loop, and only killing a process does that. A child that crashes
(segfault, ``os._exit``, out of memory) takes only its own attempt with it;
the pool notices through the process sentinel and forks a replacement.
The parent never runs task code and keeps the only job-table connection.

Why chunks: a message between processes costs tens of microseconds, more
than a no-op job. So a child receives its jobs in chunks (one message for
up to ``capacity`` jobs) and answers with one outcome per job, stamped with
the monotonic time it finished; the parent knows which job of the chunk is
running (the first without an outcome) and since when, which is all that
timeouts and crash reports need. Chunks are sized by the worker from the
average job duration, so slow jobs still go one at a time.

Containment: a child never decides when it stops (SIGTERM and SIGINT sent
to the whole process group by supervisor, systemd or Ctrl-C are ignored
there: the parent's grace period rules); a child dies with its parent
(``PR_SET_PDEATHSIG``, pipe ends of siblings closed so EOF arrives, and a
parent check between jobs); a process forked by a task never speaks on the
pipe; only strings cross the pipe back, so any outcome can be sent.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import resource
import select
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from django.db import close_old_connections

from . import announcing, execution, tracing
from .claimed import ClaimedJob
from .errors import error_entry
from .exceptions import JobTimedOut, WorkerCrashed
from .execution import Outcome
from .logfmt import Fields

_fork = multiprocessing.get_context("fork")
logger = logging.getLogger("django_dbtasks.worker")

#: Linux's ``prctl`` option that signals a process when its parent dies.
PR_SET_PDEATHSIG = 1
#: Seconds an idle child waits for work before checking that its parent lives.
PARENT_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Skipped:
    """A job a child did not start because the worker is stopping."""

    job_id: int


@dataclass(frozen=True)
class Retiring:
    """The child reached a recycling limit and exits; its later jobs never started."""

    job_id: int  # the last job it ran


@dataclass(frozen=True)
class Announce:
    """Parent to child: these jobs' outcomes are written, with these statuses
    (None: discarded, the lease was lost); send their ``task_finished``."""

    seq: int  # numbers the announcements to one child: 1, 2, ...
    jobs: list[tuple[int, str | None]]


@dataclass(frozen=True)
class Announced:
    """Child to parent: announcement ``seq`` is sent (the earlier ones were, or were
    taken back)."""

    seq: int


#: Seconds a pool process has to send the ``task_finished`` of its written outcomes.
#: Past that (it runs a long job that came after them) the parent takes the
#: announcement back and sends them itself: see ``Pool.announce``.
ANNOUNCE_WITHIN = 1.0
#: The two slots of a child's ``tickets``: the last announcement the child took,
#: the last one the parent took back. Each side writes only its own, under the lock.
TAKEN, REVOKED = 0, 1


@dataclass(frozen=True)
class Limits:
    """When a child is replaced by a fresh one (Celery's ``worker_max_*_per_child``)."""

    max_tasks: int | None = None
    max_memory_kb: int | None = None

    def reached(self, done: int) -> bool:
        if self.max_tasks is not None and done >= self.max_tasks:
            return True
        if self.max_memory_kb is not None:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > self.max_memory_kb
        return False


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this child when the worker dies (Linux), and check once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent check between jobs and EOF on the pipe remain
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _child_main(
    conn: Connection,
    stopping: Event,
    parent_pid: int,
    siblings: list[Connection],
    limits: Limits,
    tickets: Any,
) -> None:
    """The pool process: run the jobs it receives, one by one, and report each."""
    _die_with_parent(parent_pid)
    # The parent's ends of the other children's pipes: held here, they would keep
    # a sibling from seeing EOF when the parent is gone.
    for sibling in siblings:
        sibling.close()
    # The parent decides when children stop: a stop sent to the whole process group
    # (supervisor's stopasgroup, systemd's KillMode, Ctrl-C) must not kill a job
    # the grace period protects. The parent kills with SIGKILL when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    try:
        _PoolProcess(conn, stopping, parent_pid, limits, tickets).serve()
    finally:
        tracing.flush()  # this process ends with os._exit(): no atexit flush of its spans


class _PoolProcess:
    """The loop of one pool process (it runs there, never in the worker's main process).

    Before each job it reads every message waiting: chunks of jobs (queued
    here in order) and announcements (the statuses of its jobs whose
    outcomes the parent has written: it sends their ``task_finished``).
    """

    def __init__(
        self, conn: Connection, stopping: Event, parent_pid: int, limits: Limits, tickets: Any
    ) -> None:
        self.conn = conn
        self.stopping = stopping
        self.parent_pid = parent_pid
        self.limits = limits
        self.tickets = tickets
        self.pid = os.getpid()
        self.done = 0
        self.queued: deque[Any] = deque()  # received, not started: ClaimedJob or (id, bytes)
        #: Jobs whose outcome was sent, until the parent says it is written (or not).
        self.reported: dict[int, tuple[ClaimedJob, Outcome, Any]] = {}
        self.poller = select.poll()
        self.poller.register(conn, select.POLLIN)

    def serve(self) -> None:
        while True:
            try:
                if not self.queued and not self._wait_for_messages():
                    return
                if not self._read_messages():
                    return  # the parent's polite "stop"
            except (EOFError, OSError):
                return
            if self.queued and not self._run_next():
                return  # retiring
            if not self.queued:
                # Like a request, each job starts with connections checked (CONN_MAX_AGE,
                # health checks, errors); once idle they are checked again.
                close_old_connections()

    def _wait_for_messages(self) -> bool:
        """Idle: wait for a message, checking every second that the parent lives."""
        while not self.poller.poll(PARENT_CHECK_INTERVAL * 1000):
            if os.getppid() != self.parent_pid:
                return False
        return True

    def _read_messages(self) -> bool:
        """Take in every message waiting (without blocking); False on an empty one."""
        while self.poller.poll(0):
            data = self.conn.recv_bytes()
            if not data:
                return False
            message = pickle.loads(data)
            if isinstance(message, Announce):
                self._announce(message)
            else:
                self.queued.extend(message)
        return True

    def _run_next(self) -> bool:
        """Run the next queued job and report it; False once the process must retire."""
        item = self.queued.popleft()
        job_id = item[0] if isinstance(item, tuple) else item.id
        if self.stopping.is_set() or os.getppid() != self.parent_pid:
            _send(self.conn, Skipped(job_id))
            return True
        close_old_connections()
        job, (outcome, result) = _attempt_item(item)
        if os.getpid() != self.pid:
            # The task forked and this is the copy, returning from the task
            # too: it must neither answer for the job nor take more work.
            os._exit(0)
        if job is not None:
            self.reported[job_id] = (job, outcome, result)
        _send(self.conn, _outcome_message(outcome, announces=job is not None))
        self.done += 1
        if self.limits.reached(self.done):
            _send(self.conn, Retiring(job_id))
            return False
        return True

    def _announce(self, message: Announce) -> None:
        """Send ``task_finished`` for the written outcomes ``message`` names, unless the
        parent took the announcement back (it waited too long) and sends them itself."""
        statuses = [(self.reported.pop(job_id, None), status) for job_id, status in message.jobs]
        with self.tickets.get_lock():
            taken = self.tickets[REVOKED] < message.seq
            if taken:
                self.tickets[TAKEN] = message.seq
        if not taken:
            return
        for reported, status in statuses:
            if reported is not None and status is not None:
                announcing.send_task_finished(*reported[:2], status, reported[2])
        _send(self.conn, Announced(message.seq))


def _send(conn: Connection, message: object) -> None:
    """Send one message to the other end, which reads it with ``pickle.loads(recv_bytes())``.

    ``pickle.dumps`` and ``send_bytes`` are what ``conn.send`` does, without
    building a ``ForkingPickler`` (and its reducer table) per message: that
    was a tenth of a pool process's time on no-op jobs.
    """
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _outcome_message(outcome: Outcome, announces: bool) -> tuple[Any, ...]:
    """An outcome as a plain tuple (a tenth of a dataclass's pickling time, both ways),
    and whether this process will send its ``task_finished`` when told it is written."""
    return (
        announces,
        outcome.job_id,
        outcome.succeeded,
        outcome.return_value_json,
        outcome.error,
        outcome.duration,
        outcome.finished_at,
    )


def _attempt_item(item: Any) -> tuple[ClaimedJob | None, tuple[Outcome, Any]]:
    """Run one queued item: a job, or a job packed alone (see ``pack``)."""
    if not isinstance(item, tuple):
        return item, execution.attempt(item)
    job_id, packed = item
    try:
        job = pickle.loads(packed)
    except BaseException as exc:
        outcome = execution.failed(job_id, exc, "The job could not be handed to a pool process")
        return None, (outcome, None)
    return job, execution.attempt(job)


def pack(jobs: list[ClaimedJob]) -> tuple[bytes, list[tuple[ClaimedJob, BaseException]]]:
    """A chunk as the message a child reads, and the jobs that could not be packed.

    One pickle for the chunk (packing each job apart costs three times as
    much); only if that fails is each job packed alone, as ``(id, bytes)``,
    so that the one that cannot be (nested too deep, say) fails by itself.
    """
    try:
        return pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL), []
    except Exception:
        pass  # the job at fault is found one by one below
    items: list[tuple[int, bytes]] = []
    failed: list[tuple[ClaimedJob, BaseException]] = []
    for job in jobs:
        try:
            items.append((job.id, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)))
        except Exception as exc:  # RecursionError, say: this job's alone
            failed.append((job, exc))
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL), failed


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    jobs: deque[ClaimedJob] = field(default_factory=deque)  # the first one is running
    started: float = 0.0  # when the first of ``jobs`` started (monotonic)
    retiring: bool = False  # it sent ``Retiring``: it runs nothing more and exits
    #: ``TAKEN`` and ``REVOKED`` (see ``Announce``), shared with the child, with their lock.
    tickets: Any = None
    last_seq: int = 0  # of the last ``Announce`` sent to it
    #: Announcements sent and not yet confirmed: (seq, when sent, what they announce).
    unconfirmed: deque[tuple[int, float, list[tuple[Finished, str]]]] = field(default_factory=deque)
    #: Whether an outcome is waiting in ``conn``, asked with one system call
    #: (``Connection.poll()`` builds a selector per call).
    poller: Any = field(default_factory=select.poll)

    def __post_init__(self) -> None:
        self.poller.register(self.conn, select.POLLIN)

    def has_message(self) -> bool:
        return bool(self.poller.poll(0))


@dataclass(frozen=True)
class Finished:
    """A job whose attempt ended, and how."""

    job: ClaimedJob
    outcome: Outcome


#: An outcome written, with the job's new status (None: discarded, the lease was lost).
Written = tuple[Finished, str | None]


def _ended_here(job: ClaimedJob, outcome: Outcome) -> Finished:
    """A failed attempt no pool process reports (it was killed, or never had the job),
    with its span, which that process could not end (see ``tracing``)."""
    tracing.record_attempt(job, outcome.error or {}, outcome.duration)
    return Finished(job, outcome)


class Pool:
    def __init__(
        self,
        size: int,
        before_fork: Callable[[], None],
        timeout_of: Callable[[ClaimedJob], float | None],
        limits: Limits | None = None,
    ) -> None:
        self.size = size
        self.before_fork = before_fork
        self.timeout_of = timeout_of
        self.limits = limits or Limits()
        self.capacity = 1  # jobs handed to one child at a time (the chunk size)
        self.children: list[_Child] = []
        self.backlog: deque[ClaimedJob] = deque()  # never started: their child died
        self.undeliverable: list[Finished] = []  # jobs that could not be packed for a child
        #: Outcomes a child reported and will announce once written, by job id.
        self.reported: dict[int, tuple[_Child, Outcome]] = {}
        #: Written outcomes no child will announce after all (gone, or too slow): the
        #: worker sends their ``task_finished`` (see ``take_unannounced``).
        self.unannounced: list[tuple[Finished, str]] = []
        self.stopping = _fork.Event()
        # Kept across waits (the worker waits once per loop turn, often once per
        # job): building a selector and registering every pipe each time cost
        # about a tenth of the worker's time on fast jobs.
        self._selector = selectors.PollSelector()

    def start(self) -> None:
        self.before_fork()
        self.children = []
        for _ in range(self.size):
            self.children.append(self._spawn())  # each new child closes its elders' pipes

    def _spawn(self) -> _Child:
        parent_end, child_end = _fork.Pipe()
        siblings = [child.conn for child in self.children if not child.conn.closed]
        tickets = _fork.Array("q", 2)
        process = _fork.Process(
            target=_child_main,
            args=(child_end, self.stopping, os.getpid(), siblings, self.limits, tickets),
            name="dbtasks-child",
        )
        process.daemon = True
        process.start()
        child_end.close()
        child = _Child(process=process, conn=parent_end, tickets=tickets)
        self._selector.register(child.conn, selectors.EVENT_READ, (child, False))
        self._selector.register(child.process.sentinel, selectors.EVENT_READ, (child, True))
        return child

    def _replace(self, child: _Child) -> None:
        """Fork a new child in place of a dead one; its unstarted jobs go to the backlog."""
        self.backlog.extend(child.jobs)
        child.jobs.clear()
        self._forget(child)
        self._orphan_announcements(child)
        child.conn.close()
        child.process.join(timeout=5)
        self.before_fork()
        self.children[self.children.index(child)] = self._spawn()

    # What the worker asks

    def free_slots(self) -> int:
        """How many more jobs the pool can take now."""
        return max(0, self.size * self.capacity - self.holding())

    def has_idle_child(self) -> bool:
        return any(not child.jobs and not child.retiring for child in self.children)

    def holding(self) -> int:
        """How many jobs the pool holds (cheap: no list is built)."""
        return sum(len(child.jobs) for child in self.children) + len(self.backlog)

    def held(self) -> list[ClaimedJob]:
        """Every job the pool holds: running, queued in a child, or in the backlog."""
        jobs = [job for child in self.children for job in child.jobs]
        return jobs + list(self.backlog)

    def next_deadline(self) -> float | None:
        """When the pool must be looked at again unasked: a timeout, or an announcement due."""
        deadlines = [d for d in (self._deadline(c) for c in self.children) if d is not None]
        deadlines += [c.unconfirmed[0][1] + ANNOUNCE_WITHIN for c in self.children if c.unconfirmed]
        return min(deadlines) if deadlines else None

    def _deadline(self, child: _Child) -> float | None:
        if not child.jobs:
            return None
        limit = self.timeout_of(child.jobs[0])
        return None if limit is None else child.started + limit

    def submit(self, jobs: list[ClaimedJob]) -> None:
        """Hand jobs to the children with room, one message per child."""
        queue = deque([*self.backlog, *jobs])
        self.backlog.clear()
        for child in sorted(self.children, key=lambda c: len(c.jobs)):
            room = self.capacity - len(child.jobs)
            if not queue or room <= 0 or child.retiring:
                continue
            chunk = [queue.popleft() for _ in range(min(room, len(queue)))]
            message, failed = pack(chunk)
            for job, exc in failed:
                chunk.remove(job)
                self.undeliverable.append(self._undeliverable(job, exc))
            if not chunk:
                continue
            if not child.jobs:
                child.started = time.monotonic()
            child.jobs.extend(chunk)
            try:
                child.conn.send_bytes(message)
            except OSError:
                pass  # the child died: its sentinel reports it, its jobs go to the backlog
        self.backlog.extend(queue)

    @staticmethod
    def _undeliverable(job: ClaimedJob, exc: BaseException) -> Finished:
        outcome = execution.failed(job.id, exc, "The job could not be handed to a pool process")
        return _ended_here(job, outcome)

    def drop_backlog(self) -> None:
        """Forget jobs not yet handed to a child (the worker releases them)."""
        self.backlog.clear()

    def stop_starting_jobs(self) -> None:
        """Children finish their current job but start no queued one (graceful stop)."""
        self.stopping.set()

    def wait(self, timeout: float, extra: list[Any]) -> tuple[list[Finished], list[Any]]:
        """Wait up to ``timeout`` s for attempts to end; also watch ``extra`` fds.

        Returns the finished attempts (including children that crashed or
        overran their timeout, which are killed and replaced) and which of
        ``extra`` became readable.
        """
        # The worker's own descriptors may be closed and reopened between calls
        # (a reconnected LISTEN socket): registered for this call only.
        for fd in extra:
            self._selector.register(fd, selectors.EVENT_READ, None)
        try:
            events = self._selector.select(max(timeout, 0))
        finally:
            for fd in extra:
                self._selector.unregister(fd)
        ready_extra = [key.fileobj for key, _ in events if key.data is None]
        readable: dict[_Child, bool] = {}
        for key, _ in events:
            if key.data is not None:
                child, is_sentinel = key.data
                readable[child] = readable.get(child, False) or is_sentinel
        finished, self.undeliverable = self.undeliverable, []
        for child, sentinel_ready in readable.items():
            finished.extend(self._receive(child))
            if sentinel_ready and not child.process.is_alive():
                finished.extend(self._crashed(child))
        finished.extend(self._enforce_timeouts())
        if self.backlog and not self.stopping.is_set():
            self.submit([])  # a replaced child's unstarted jobs go to whoever has room
        return finished, ready_extra

    def _forget(self, child: _Child) -> None:
        self._selector.unregister(child.conn)
        self._selector.unregister(child.process.sentinel)

    def _receive(self, child: _Child) -> list[Finished]:
        """Read every message the child has sent so far (all of them: a ``Retiring``
        after its last outcome must be known before its exit is looked at)."""
        finished = []
        try:
            while child.has_message():
                message = pickle.loads(child.conn.recv_bytes())
                if isinstance(message, Retiring):
                    child.retiring = True  # the rest of its jobs go to the backlog
                    continue
                if isinstance(message, Announced):
                    self._confirmed(child, message.seq)
                    continue
                announces = False
                if type(message) is tuple:
                    announces, message = message[0], Outcome(*message[1:])
                expected = child.jobs[0].id if child.jobs else None
                if getattr(message, "job_id", None) != expected:
                    # Only a bug can cause this; the child is replaced, not trusted.
                    logger.error(
                        "%s",
                        Fields(
                            pool_process=child.process.pid,
                            event="unexpected message",
                            message=repr(message),
                            expected_job=expected,
                        ),
                    )
                    self._kill(child)
                    break
                job = child.jobs.popleft()
                if isinstance(message, Skipped):
                    continue  # the worker gives it back when it stops
                child.started = message.finished_at
                if announces:
                    self.reported[job.id] = (child, message)
                finished.append(Finished(job, message))
        except (EOFError, OSError):
            pass  # the child died; the sentinel reports it
        return finished

    # Announcing: ``task_finished`` is sent by the child that ran the job

    def announce(self, written: list[tuple[Finished, str | None]]) -> list[tuple[Finished, str]]:
        """Have each child send ``task_finished`` for its own outcomes, now written.

        Returns those the caller must send itself: outcomes no child
        reported (crashes, timeouts, jobs failed before they ran), outcomes
        replaced since (the database refused them), and children gone.
        A child reads the announcement before its next job; if it has not
        taken it within ``ANNOUNCE_WITHIN`` (a long job came after these),
        the parent takes it back: see ``take_unannounced``. The tickets make
        that exactly once: a child sends an announcement only if it took it
        before the parent took it back, under the lock they share.
        """
        mine: list[tuple[Finished, str]] = []
        per_child: dict[_Child, tuple[list[tuple[int, str | None]], list[tuple[Finished, str]]]]
        per_child = {}
        for item, status in written:
            child, outcome = self.reported.pop(item.job.id, (None, None))
            if child is not None:
                jobs, items = per_child.setdefault(child, ([], []))
                if outcome is item.outcome and status is not None:
                    jobs.append((item.job.id, status))
                    items.append((item, status))
                    continue
                jobs.append((item.job.id, None))  # it forgets the job; sent here if written
            if status is not None:
                mine.append((item, status))
        now = time.monotonic()
        for child, (jobs, items) in per_child.items():
            child.last_seq += 1
            try:
                child.conn.send_bytes(pickle.dumps(Announce(child.last_seq, jobs)))
            except OSError:
                mine.extend(items)  # the child is gone
                continue
            if items:
                child.unconfirmed.append((child.last_seq, now, items))
        return mine

    def take_unannounced(self) -> list[tuple[Finished, str]]:
        """Written outcomes whose child cannot announce them (gone, or too slow)."""
        self._take_back_overdue(time.monotonic())
        taken, self.unannounced = self.unannounced, []
        return taken

    def _confirmed(self, child: _Child, seq: int) -> None:
        while child.unconfirmed and child.unconfirmed[0][0] <= seq:
            child.unconfirmed.popleft()

    def _take_back_overdue(self, now: float) -> None:
        """Take back the announcements a child has not taken within ``ANNOUNCE_WITHIN``."""
        for child in self.children:
            if not child.unconfirmed or child.unconfirmed[0][1] + ANNOUNCE_WITHIN > now:
                continue
            lock = child.tickets.get_lock()
            if not lock.acquire(timeout=0.1):
                continue  # the child holds it this instant: next turn
            try:
                taken = child.tickets[TAKEN]
                overdue = [
                    entry
                    for entry in child.unconfirmed
                    if entry[0] > taken and entry[1] + ANNOUNCE_WITHIN <= now
                ]
                if overdue:
                    child.tickets[REVOKED] = overdue[-1][0]
            finally:
                lock.release()
            for _seq, _, items in overdue:
                self.unannounced.extend(items)
            # Taken or taken back, none of these waits for the child any more.
            last = overdue[-1][0] if overdue else taken
            self._confirmed(child, max(last, taken))

    def _orphan_announcements(self, child: _Child) -> None:
        """A child is gone: what it had not taken is announced by the parent.

        An announcement it took but had not confirmed may have been sent in
        part: those are not sent again (a ``task_finished`` is never sent twice).
        """
        for job_id in [i for i, (c, _) in self.reported.items() if c is child]:
            del self.reported[job_id]  # written later, announced by the parent
        if child.tickets is None:
            return
        taken = child.tickets.get_obj()[TAKEN]  # no lock: the child is gone, it may hold it
        for seq, _, items in child.unconfirmed:
            if seq > taken:
                self.unannounced.extend(items)
        child.unconfirmed.clear()

    def _crashed(self, child: _Child) -> list[Finished]:
        """A child is gone: blame the job it was running, unless it retired or we stop.

        A child that retired ran nothing after its last outcome; one killed
        while the worker stops (a process manager's SIGKILL to the group) is
        not its job's fault: those jobs are released with the worker's.
        """
        exit_code = child.process.exitcode
        elapsed = time.monotonic() - child.started
        if child.retiring or not child.jobs:
            self._replace(child)
            return []
        if self.stopping.is_set():
            child.jobs.clear()  # left RUNNING in the table: released at shutdown
            self._forget(child)
            self._orphan_announcements(child)
            child.conn.close()
            child.process.join(timeout=1)
            self.children.remove(child)
            return []
        job = child.jobs.popleft()
        self._replace(child)
        how = (
            f"was killed by signal {signal.Signals(-exit_code).name}"
            if exit_code is not None and exit_code < 0
            else f"exited with code {exit_code}"
        )
        text = (
            f"The pool process running this attempt {how} after {elapsed:.3f} s, before "
            "the task returned (a crash in native code, os._exit(), or the kernel's OOM "
            "killer). The worker replaced it and went on."
        )
        error = error_entry(WorkerCrashed, text)
        outcome = Outcome(job_id=job.id, succeeded=False, error=error, duration=elapsed)
        return [_ended_here(job, outcome)]

    def _enforce_timeouts(self) -> list[Finished]:
        now = time.monotonic()
        finished = []
        for child in list(self.children):
            deadline = self._deadline(child)
            if deadline is None or deadline > now:
                continue
            finished.extend(self._receive(child))  # it may have just finished
            if self._deadline(child) != deadline:
                continue
            job, elapsed = child.jobs.popleft(), now - child.started
            limit = self.timeout_of(job) or 0
            self._kill(child)
            self._replace(child)
            text = (
                f"Timed out after {limit:g} s (the task's timeout): the attempt was stopped "
                f"after {elapsed:.1f} s by killing the process that ran it."
            )
            error = error_entry(JobTimedOut, text)
            outcome = Outcome(job_id=job.id, succeeded=False, error=error, duration=elapsed)
            finished.append(_ended_here(job, outcome))
        return finished

    @staticmethod
    def _kill(child: _Child) -> None:
        if child.process.pid is not None and child.process.is_alive():
            os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(timeout=5)

    def stop(self, kill: bool) -> None:
        """Stop every child: politely when idle, with SIGKILL if ``kill`` or busy."""
        for child in self.children:
            if child.jobs or kill:
                self._kill(child)
            else:
                try:
                    child.conn.send_bytes(b"")
                except OSError:
                    pass
        for child in self.children:
            child.process.join(timeout=5)
            if child.process.is_alive():
                self._kill(child)
            self._forget(child)
            self._orphan_announcements(child)
            child.conn.close()
        self.children = []
