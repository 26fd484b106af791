"""Fencing: a worker that lost its lease cannot change the job any more.

Every write about a claimed job carries the ``lease_token`` of that claim. A
worker that froze past its lease, and whose job was rescued and claimed again,
holds a stale token: its progress reports, completions and failures match no
row. Proved on the statements one by one, by a seeded random walk over the
real SQL of ``queries.py`` (reproducible: the seed is in the test id), on the
worker loop driven one turn at a time, and on real worker processes stopped
with SIGSTOP.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from django_dbtasks import queries
from django_dbtasks.models import Job, JobStatus

from .conftest import wait_until
from .testapp import tasks
from .testapp.models import Execution
from .turns import kind, started, statements_of


def _job(result) -> Job:
    return Job.objects.get(pk=result.id)


def running(job_id) -> bool:
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()


# Each write, one by one


@pytest.mark.django_db(transaction=True)
def test_progress_is_fenced_and_cleared_by_the_next_claim():
    result = tasks.noop.enqueue()
    [claimed] = queries.claim(connection, ["default"], 1, "test-worker", 30)
    assert queries.set_progress(connection, claimed.id, claimed.lease_token, 55, "half")
    other_token = "00000000-0000-0000-0000-000000000000"
    assert not queries.set_progress(connection, claimed.id, other_token, 99, "stolen")
    job = _job(result)
    assert (job.progress, job.progress_message) == (55, "half")

    queries.release(connection, "test-worker")
    assert _job(result).status == JobStatus.READY
    queries.claim(connection, ["default"], 1, "test-worker-2", 30)
    job = _job(result)
    assert job.status == JobStatus.RUNNING
    assert (job.progress, job.progress_message) == (None, "")


@pytest.mark.django_db(transaction=True)
def test_batch_completion_applies_only_to_jobs_the_worker_still_holds():
    jobs = tasks.add.enqueue_many([((i, 0), {}) for i in range(4)])
    claimed = queries.claim(connection, ["default"], 4, "w", 30)
    assert {str(job.id) for job in claimed} == {job.id for job in jobs}
    stale, *held = claimed
    Job.objects.filter(pk=stale.id).update(lease_token="0" * 32)  # rescued and re-claimed
    applied = queries.complete_many(connection, [(job.id, job.lease_token, "1") for job in claimed])
    assert applied == {job.id for job in held}
    assert Job.objects.get(pk=stale.id).status == "RUNNING"


@pytest.mark.django_db(transaction=True)
def test_batch_failure_retries_or_fails_only_jobs_the_worker_still_holds():
    def insert(max_attempts: int) -> int:
        [(job_id, _)] = queries.insert_jobs(
            connection,
            backend="default",
            task_path="tests.testapp.tasks.noop",
            queue_name="default",
            priority=0,
            max_attempts=max_attempts,
            run_after=None,
            calls=[("[]", "{}")],
        )
        return job_id

    retried, given_up, last, stale = insert(3), insert(3), insert(1), insert(3)
    claimed = {job.id: job for job in queries.claim(connection, ["default"], 4, "w", 30)}
    assert set(claimed) == {retried, given_up, last, stale}
    Job.objects.filter(pk=stale).update(lease_token="0" * 32)  # rescued and re-claimed
    error = {"exception_class_path": "builtins.ValueError", "traceback": "tb", "message": "m"}
    before = timezone.now()
    applied = queries.fail_many(
        connection,
        [
            (retried, claimed[retried].lease_token, error, 60.0),  # attempts left: READY
            (given_up, claimed[given_up].lease_token, error, None),  # None: FAILED for good
            (last, claimed[last].lease_token, error, 60.0),  # no attempt left: FAILED
            (stale, claimed[stale].lease_token, error, 60.0),  # not ours: untouched
        ],
    )
    assert applied == {retried: "READY", given_up: "FAILED", last: "FAILED"}
    rows = {job.pk: job for job in Job.objects.filter(pk__in=claimed)}
    for job_id in applied:
        row = rows[job_id]
        assert row.claimed_by == "" and row.lease_token is None and len(row.errors) == 1
        assert row.lease_expires_at is None and row.crashes == 0 and row.attempts == 1
        # The worker's entry, plus what the row knew of the attempt (the database's clock).
        entry = row.errors[0]
        assert {key: entry[key] for key in error} == error
        assert set(entry) == {*error, "started_at", "finished_at", "worker_id"}
        assert entry["worker_id"] == "w"
        assert queries._when(entry["started_at"]) == row.last_attempted_at
        ended = queries._when(entry["finished_at"])
        assert ended == (row.finished_at or ended) and ended >= row.last_attempted_at
    assert rows[retried].finished_at is None
    assert rows[retried].run_after > before + dt.timedelta(seconds=50)
    assert rows[given_up].finished_at is not None and rows[last].finished_at is not None
    assert rows[stale].status == "RUNNING" and rows[stale].errors == []
    assert queries.fail_many(connection, []) == {}
    # Not applied twice: the lease went with the first write.
    token = claimed[given_up].lease_token
    assert queries.fail_many(connection, [(given_up, token, error, None)]) == {}


# Random schedules of enqueue, claim, finish, crash, freeze, rescue and cancel

WORKERS = ["w1", "w2", "w3"]
POISON = {"exception_class_path": "django_dbtasks.exceptions.PoisonJob", "traceback": "poison"}
ERROR = {"exception_class_path": "builtins.ValueError", "traceback": "ValueError"}


class Walk:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.enqueued: set[int] = set()
        self.held: dict[str, dict[int, str]] = {w: {} for w in WORKERS}
        self.log: list[str] = []

    def row(self, job_id: int) -> Job:
        return Job.objects.get(pk=job_id)

    # Operations

    def enqueue(self) -> None:
        job = Job.objects.create(task_path="t.noop", max_attempts=self.rng.randint(1, 3))
        self.enqueued.add(job.pk)

    def claim(self, worker: str) -> None:
        for job in queries.claim(connection, ["default"], self.rng.randint(1, 3), worker, 30):
            assert job.id in self.enqueued
            # Another worker may still hold a stale token for it (it froze and
            # the job was rescued); the new claim's token must be fresh.
            stale = {held.get(job.id) for held in self.held.values()}
            assert job.lease_token not in stale
            self.held[worker][job.id] = job.lease_token

    def finish(self, worker: str) -> None:
        if not self.held[worker]:
            return
        job_id = self.rng.choice(sorted(self.held[worker]))
        token = self.held[worker].pop(job_id)
        before = self.row(job_id)
        owns = before.status == "RUNNING" and before.lease_token == uuid.UUID(token)
        kind = self.rng.choice(["complete", "retry", "fail"])
        if kind == "complete":
            applied = job_id in queries.complete_many(connection, [(job_id, token, f'"{worker}"')])
        else:
            retry_in = 0.0 if kind == "retry" else None
            failure = (job_id, token, ERROR, retry_in)
            applied = queries.fail_many(connection, [failure]).get(job_id)
        assert bool(applied) == owns, (kind, worker, before.status)
        after = self.row(job_id)
        if kind == "complete" and applied:
            assert after.status == "SUCCESSFUL" and after.return_value == worker
        elif applied:
            retries = kind == "retry" and before.attempts < before.max_attempts
            assert after.status == ("READY" if retries else "FAILED")
            assert applied == after.status
        if not applied:
            assert after.status == before.status and after.lease_token == before.lease_token

    def crash(self, worker: str) -> None:
        self.held[worker] = {}  # the process died: it forgets, the rows stay RUNNING

    def freeze(self) -> None:
        """Let a running job's lease lapse, as if its worker stopped heartbeating."""
        running = list(Job.objects.filter(status="RUNNING").values_list("pk", flat=True))
        if running:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {queries.JOB} SET lease_expires_at = %s WHERE id = %s",
                    ["2000-01-01 00:00:00+00:00", self.rng.choice(running)],
                )

    def rescue(self) -> None:
        for job_id, _, status, *_ in queries.rescue_expired(connection, 3, POISON):
            assert status in {"READY", "FAILED"} and job_id in self.enqueued

    def heartbeat(self, worker: str) -> None:
        tokens = list(self.held[worker].values())
        queries.heartbeat(connection, worker, tokens, 30)
        queries.release(connection, worker, tokens)

    def cancel(self) -> None:
        if self.enqueued:
            job_id = self.rng.choice(sorted(self.enqueued))
            was_ready = self.row(job_id).status == "READY"
            assert queries.cancel_many(connection, [job_id], ERROR) == (
                [job_id] if was_ready else []
            )

    # Invariants

    def check(self) -> None:
        rows = list(Job.objects.all())
        assert {job.pk for job in rows} == self.enqueued, "a job was lost or invented"
        for job in rows:
            if job.status == "RUNNING":
                assert job.lease_token and job.claimed_by and job.lease_expires_at
            else:
                assert job.lease_token is None and job.claimed_by == ""
            if job.status in {"SUCCESSFUL", "FAILED", "CANCELLED"}:
                assert job.finished_at is not None
            assert 0 <= job.attempts <= job.max_attempts
        holders: dict[int, list[str]] = {}
        for worker, held in self.held.items():
            for job_id, token in held.items():
                row = next(job for job in rows if job.pk == job_id)
                if row.status == "RUNNING" and row.lease_token == uuid.UUID(token):
                    holders.setdefault(job_id, []).append(worker)
        assert all(len(owners) == 1 for owners in holders.values()), holders

    def step(self) -> None:
        worker = self.rng.choice(WORKERS)
        operation = self.rng.choices(
            ["enqueue", "claim", "finish", "crash", "freeze", "rescue", "heartbeat", "cancel"],
            weights=[5, 5, 6, 1, 2, 2, 2, 1],
        )[0]
        self.log.append(f"{operation}({worker})")
        if operation in {"claim", "finish", "crash", "heartbeat"}:
            getattr(self, operation)(worker)
        else:
            getattr(self, operation)()
        self.check()


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(25))
def test_random_schedules_never_lose_or_double_own_a_job(seed):
    walk = Walk(seed)
    for _ in range(60):
        walk.step()


# The worker loop, one turn at a time


@pytest.mark.django_db(transaction=True)
@pytest.mark.turns
def test_an_outcome_whose_lease_was_lost_is_discarded(caplog):
    result = tasks.add.enqueue(2, 3)
    with started() as loop:
        statements_of(loop)  # claimed, and run at the wait
        # Meanwhile another worker rescued it and holds it under a new lease.
        Job.objects.filter(pk=result.id).update(lease_token=uuid.uuid4())
        with caplog.at_level("INFO", logger="django_dbtasks.worker"):
            write_turn = statements_of(loop)
        job = Job.objects.get(pk=result.id)

    # The claim of one came back full, so this turn claims again beside the write.
    assert [kind(sql) for sql in write_turn] == ["BEGIN", "complete", "claim", "COMMIT"]
    assert job.status == JobStatus.RUNNING and job.return_value is None
    assert f"job={result.id} task=tests.testapp.tasks.add outcome=DISCARDED" in caplog.text
    assert loop.processed == 1


# Real workers

#: Short leases so that rescues happen within seconds: heartbeat 0.5 s, lease 1.5 s.
SHORT_LEASE = {"DBTASKS_TEST_LEASE": "1.5", "DBTASKS_TEST_HEARTBEAT": "0.5"}


@pytest.mark.django_db(transaction=True)
def test_frozen_worker_cannot_overwrite_the_rerun(start_worker):
    result = tasks.sleep_and_report.enqueue(3)
    frozen = start_worker(**SHORT_LEASE)
    wait_until(lambda: running(result.id))
    os.killpg(frozen.pid, signal.SIGSTOP)  # the worker and its pool child stop, mid-job

    rescuer = start_worker(**SHORT_LEASE)
    result.wait(timeout=30)
    first_run = Execution.objects.get()
    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.SUCCESSFUL and job.return_value == first_run.pid
    assert len(job.worker_ids) == 2 and job.worker_ids[0] != job.worker_ids[1]
    assert "outcome=RESCUED" in rescuer.output()

    os.killpg(frozen.pid, signal.SIGCONT)  # it wakes up and finishes its stale run
    wait_until(lambda: "outcome=DISCARDED" in frozen.output(), timeout=20)
    assert Execution.objects.count() == 2
    late = Job.objects.get(pk=result.id)
    assert (late.status, late.return_value, late.finished_at, late.worker_ids) == (
        job.status,
        job.return_value,
        job.finished_at,
        job.worker_ids,
    )
