"""A seeded chaos run: hostile jobs end only themselves, whatever else shares their batch.

200 innocent jobs are enqueued one by one, in a seeded random order, among
hostile ones of every kind (unstorable results, exceptions that are not
``Exception``, forks, crashes of the pool process, arguments nested too deep,
and killers that SIGKILL their worker or its whole process group). Two
long-running workers with short leases serve them, each restarted whenever it
dies, until every job is finished. Then:

* every innocent job succeeded with its own return value and ran at least
  once, and exactly once unless a worker holding it died (or its lease expired);
* every hostile job ended with the status and error class of its kind;
* only the killers are FAILED as ``PoisonJob``, after killing their worker
  ``MAX_CRASHES`` times in all (one death may be shared by two killers);
* no process of any worker, dead or stopped, is left behind.

Set ``DBTASKS_CHAOS_SEED`` to replay a run; the seed is printed and named in
every failure.
"""

from __future__ import annotations

import functools
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from django_dbtasks.exceptions import (
    ArgumentNotSerializable,
    PoisonJob,
    ResultNotStorable,
    WorkerCrashed,
    exception_path,
)
from django_dbtasks.models import Job, JobStatus

from .conftest import WorkerProcess, wait_until, worker_tracebacks
from .testapp import tasks
from .testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: Short leases so that a dead worker's jobs are rescued within about two seconds.
SHORT_LEASE = {"DBTASKS_TEST_LEASE": "1.5", "DBTASKS_TEST_HEARTBEAT": "0.5"}
WORKER_ARGS = ("--concurrency", "2")
INNOCENT_JOBS = 200
COPIES_OF_EACH_HOSTILE = 2
COPIES_OF_EACH_KILLER = 2
#: The backend's MAX_CRASHES (its default): deaths a killer causes before it is poison.
MAX_CRASHES = 3
POISON_REASON = f"dying {MAX_CRASHES} times in a row"
#: Far deeper than enqueue() allows (MAX_NESTING, 100): such a row comes from elsewhere.
DEEP_NESTING = 800
DEADLINE_SECONDS = 240
INNOCENT = "innocent"
DEEP_ARGUMENTS = "deep_arguments"
KILLERS = ("kills_its_worker", "kills_its_group")
LEASE_LOST_IN_LOGS = r"job=(\d+) task=\S+ outcome=(?:RESCUED|DISCARDED)"
STRAY_ANSWER_IN_LOGS = r"pool process \d+ sent"

#: Each hostile task, and the status and error class its job must end with.
HOSTILE_ENDS: dict[str, tuple[str, str | None]] = {
    "returns_nul": (JobStatus.FAILED, exception_path(ResultNotStorable)),
    "raises_nul": (JobStatus.FAILED, exception_path(ValueError)),
    "returns_surrogate": (JobStatus.FAILED, exception_path(ResultNotStorable)),
    "returns_too_much": (JobStatus.FAILED, exception_path(ResultNotStorable)),
    "forks": (JobStatus.SUCCESSFUL, None),
    "raises_system_exit": (JobStatus.FAILED, exception_path(SystemExit)),
    "raises_keyboard_interrupt": (JobStatus.FAILED, exception_path(KeyboardInterrupt)),
    "raises_base_exception": (JobStatus.FAILED, exception_path(tasks.Stop)),
    "raises_unpicklable": (JobStatus.FAILED, exception_path(tasks.Unpicklable)),
    "exits_hard": (JobStatus.FAILED, exception_path(WorkerCrashed)),
    DEEP_ARGUMENTS: (JobStatus.FAILED, exception_path(ArgumentNotSerializable)),
    **{killer: (JobStatus.FAILED, exception_path(PoisonJob)) for killer in KILLERS},
}


@dataclass(frozen=True)
class Death:
    pid: int
    returncode: int
    after: float  # seconds into the run


@dataclass
class ChaosRun:
    seed: int
    kinds: dict[int, str]  # job id -> INNOCENT or a hostile kind
    started: float
    workers: list[WorkerProcess] = field(default_factory=list)  # every one started, in order
    serving: list[WorkerProcess] = field(default_factory=list)  # the two up at the end
    deaths: list[Death] = field(default_factory=list)

    def logs(self) -> str:
        return "".join(worker.output() for worker in self.workers)

    def dead_pids(self) -> set[int]:
        return {death.pid for death in self.deaths}


def choose_seed() -> int:
    seed = int(os.environ.get("DBTASKS_CHAOS_SEED") or random.randrange(2**32))
    print(f"chaos seed={seed}")
    return seed


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def enqueue_shuffled(rng: random.Random) -> dict[int, str]:
    """Enqueue every job one by one in a seeded order; return each job's kind by id."""
    hostile = [kind for kind in HOSTILE_ENDS if kind not in KILLERS]
    order = [INNOCENT] * INNOCENT_JOBS + hostile * COPIES_OF_EACH_HOSTILE
    order += list(KILLERS) * COPIES_OF_EACH_KILLER
    rng.shuffle(order)
    kinds: dict[int, str] = {}
    for kind in order:
        if kind == INNOCENT:
            job_id = int(tasks.record_run.enqueue(f"innocent-{len(kinds)}").id)
        elif kind == DEEP_ARGUMENTS:
            # enqueue() refuses such arguments: the row is written as another program might.
            job_id = Job.objects.create(
                task_path="tests.testapp.tasks.takes_anything", args=[nested(DEEP_NESTING)]
            ).pk
        else:
            job_id = int(getattr(tasks, kind).enqueue().id)
        kinds[job_id] = kind
    return kinds


def unfinished() -> list[Job]:
    return list(Job.objects.exclude(status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED]))


def started_or_exited(worker: WorkerProcess) -> bool:
    return "event=started host=" in worker.output() or worker.process.poll() is not None


def serve_until_finished(start: Callable[[], WorkerProcess], run: ChaosRun) -> None:
    """Keep two workers up, restarting each that dies, until no job is left unfinished."""
    serving = run.serving = [start(), start()]
    run.workers.extend(serving)
    deadline = run.started + DEADLINE_SECONDS
    while unfinished():
        for slot, worker in enumerate(serving):
            returncode = worker.process.poll()
            if returncode is not None:
                elapsed = time.monotonic() - run.started
                run.deaths.append(Death(worker.pid, returncode, elapsed))
                serving[slot] = start()
                run.workers.append(serving[slot])
        if time.monotonic() > deadline:
            raise AssertionError(summary(run, f"jobs unfinished after {DEADLINE_SECONDS} s"))
        time.sleep(0.1)
    for worker in serving:
        # A worker restarted a moment ago may still be importing Django: let it start
        # (and install its SIGTERM handler) so that its stop is the graceful one.
        wait_until(functools.partial(started_or_exited, worker), timeout=60)
        worker.signal(signal.SIGTERM)
    for worker in serving:
        worker.wait(timeout=60)


def process_group_members(pgids: set[int]) -> list[str]:
    """Every process (from /proc) whose process group is one of ``pgids``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # it exited meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = text.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp in pgids:
            members.append(f"pid={entry} state={state} pgid={pgrp} {text.split(')')[0]})")
    return members


def worker_pid(worker_id: str) -> int:
    """The pid in a worker id (``host-pid-random``; the host part may hold dashes)."""
    return int(worker_id.rsplit("-", 2)[1])


def innocent_problems(job: Job, runs: int, run: ChaosRun, lease_lost: set[int]) -> list[str]:
    problems = []
    classes = [error["exception_class_path"] for error in job.errors]
    if job.status != JobStatus.SUCCESSFUL or classes:
        problems.append(f"innocent job {job.pk} ended {job.status} with errors {classes}")
    label = job.args[0]
    if job.status == JobStatus.SUCCESSFUL and job.return_value != label:
        problems.append(f"innocent job {job.pk} returned {job.return_value!r}, not {label!r}")
    if runs < 1:
        problems.append(f"innocent job {job.pk} never ran")
    if runs > len(job.worker_ids):
        problems.append(f"innocent job {job.pk} ran {runs} times on {len(job.worker_ids)} claims")
    held_by_the_dead = any(worker_pid(w) in run.dead_pids() for w in job.worker_ids)
    if runs > 1 and not held_by_the_dead and job.pk not in lease_lost:
        problems.append(
            f"innocent job {job.pk} ran {runs} times, though no worker holding it died "
            f"and its lease never expired (workers {job.worker_ids})"
        )
    return problems


def hostile_problems(job: Job, kind: str, run: ChaosRun, logs: str) -> list[str]:
    status, error_class = HOSTILE_ENDS[kind]
    classes = [error["exception_class_path"] for error in job.errors]
    expected = [] if error_class is None else [error_class]
    if (job.status, classes) != (status, expected):
        return [f"{kind} job {job.pk} ended {job.status} with errors {classes}, not {expected}"]
    problems = []
    if kind == "raises_nul":
        traceback = job.errors[0]["traceback"]
        if "\\x00" not in traceback or "\x00" in traceback:
            problems.append(f"raises_nul job {job.pk}: NUL not escaped in {traceback!r}")
    elif kind == "forks":
        # The task returns the child's pid in the pool process, 0 in the forked copy.
        if not (isinstance(job.return_value, int) and job.return_value > 0):
            problems.append(f"forks job {job.pk} returned {job.return_value!r}")
        answers = logs.count(f"job={job.pk} task=tests.testapp.tasks.forks outcome=SUCCESSFUL")
        # A worker killed between its commit and its log lines logs nothing for the job.
        died_writing = worker_pid(job.worker_ids[-1]) in run.dead_pids()
        if answers > 1 or (answers == 0 and not died_writing):
            problems.append(f"forks job {job.pk} logged as SUCCESSFUL {answers} times")
    elif kind in KILLERS and POISON_REASON not in job.errors[0]["traceback"]:
        problems.append(f"{kind} job {job.pk}: {job.errors[0]['traceback']!r}")
    return problems


def summary(run: ChaosRun, headline: str, problems: Sequence[str] = ()) -> str:
    lines = [f"chaos seed={run.seed}: {headline}"]
    lines += [f"  {problem}" for problem in problems[:40]]
    if len(problems) > 40:
        lines.append(f"  ... and {len(problems) - 40} more")
    lines.append(f"worker deaths ({len(run.deaths)}): {run.deaths}")
    for job in unfinished():
        lines.append(
            f"  unfinished job {job.pk} ({run.kinds.get(job.pk)}): {job.status} "
            f"attempts={job.attempts} crashes={job.crashes} workers={job.worker_ids}"
        )
    for worker in run.workers[-3:]:
        tail = "\n".join(worker.output().splitlines()[-25:])
        lines.append(f"--- last lines of worker {worker.pid} ---\n{tail}")
    return "\n".join(lines)


def test_chaos_run_ends_every_job_and_harms_no_innocent(start_worker):
    seed = choose_seed()
    run = ChaosRun(seed, kinds=enqueue_shuffled(random.Random(seed)), started=time.monotonic())
    serve_until_finished(lambda: start_worker(*WORKER_ARGS, **SHORT_LEASE), run)
    took = time.monotonic() - run.started

    pgids = {worker.pid for worker in run.workers}
    try:
        wait_until(lambda: not process_group_members(pgids), timeout=10, interval=0.1)
    except AssertionError:
        left = process_group_members(pgids)
        raise AssertionError(summary(run, "worker processes left behind", left)) from None

    logs = run.logs()
    # Jobs whose lease expired (their worker died, or stalled and had its outcome discarded).
    lease_lost = {int(job_id) for job_id in re.findall(LEASE_LOST_IN_LOGS, logs)}
    runs = Counter(int(job_id) for job_id in Execution.objects.values_list("job_id", flat=True))
    problems: list[str] = []
    for job in Job.objects.order_by("id"):
        kind = run.kinds[job.pk]
        if kind == INNOCENT:
            problems += innocent_problems(job, runs[job.pk], run, lease_lost)
        else:
            problems += hostile_problems(job, kind, run, logs)
    killers = COPIES_OF_EACH_KILLER * len(KILLERS)
    # Each death is one killer's run; a killer's last MAX_CRASHES - 1 runs are alone.
    if not (MAX_CRASHES - 1) * killers <= len(run.deaths) <= MAX_CRASHES * killers:
        problems.append(f"{len(run.deaths)} worker deaths for {killers} killers")
    problems += [
        f"worker {d.pid} died with {d.returncode}"
        for d in run.deaths
        if d.returncode != -signal.SIGKILL
    ]
    problems += [f"worker {w.pid} stopped with {w.wait()}" for w in run.serving if w.wait()]
    # The worker's own errors: a traceback it logged (not a failed job's, which Django's
    # own log line carries), or a pool process's stray answer.
    problems += worker_tracebacks(logs)
    problems += [line for line in logs.splitlines() if re.search(STRAY_ANSWER_IN_LOGS, line)]

    reruns = sum(1 for job_id, kind in run.kinds.items() if kind == INNOCENT and runs[job_id] > 1)
    print(
        f"chaos seed={seed} took={took:.1f}s jobs={len(run.kinds)} workers={len(run.workers)} "
        f"deaths={len(run.deaths)} innocent re-runs={reruns} lease-lost jobs={len(lease_lost)}"
    )
    assert not problems, summary(run, f"{len(problems)} problem(s)", problems)
