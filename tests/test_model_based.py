"""Random schedules of enqueue, claim, finish, crash, freeze, rescue and cancel.

A seeded random walk (reproducible: the seed is in the test id) drives the
real SQL of ``queries.py`` with several simulated workers, and after every
step checks that no job was lost, every row is in one coherent state, and
a write from a worker that lost its lease never applied.
"""

from __future__ import annotations

import random
import uuid

import pytest
from django.db import connection

from django_dbtasks import queries
from django_dbtasks.models import Job

pytestmark = pytest.mark.django_db

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
            applied = queries.fail_attempt(connection, job_id, token, ERROR, retry_in)
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
        for job_id, _, status in queries.rescue_expired(connection, 3, POISON):
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


@pytest.mark.parametrize("seed", range(25))
def test_random_schedules_never_lose_or_double_own_a_job(seed):
    walk = Walk(seed)
    for _ in range(60):
        walk.step()
