"""The worker loop driven one turn at a time, in this process: statement budgets.

``WorkerLoop`` runs here with its real SQL against the real test database,
and an ``InlinePool`` that runs each job synchronously at the loop's wait.
Each test counts the statements of one turn, so a change that adds a round
trip per job (or per turn) fails here, long before a benchmark would show
it. Signals, crashes and races stay with the subprocess tests.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_dbtasks import queries
from django_dbtasks.models import Job, JobStatus

from .testapp import tasks
from .turns import kind, started, statements_of, warm

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.turns]


def test_an_idle_turn_runs_one_claim_then_nothing_until_the_poll():
    with started() as loop:
        first = statements_of(loop)
        second = statements_of(loop)

    assert [kind(sql) for sql in first] == ["claim"]
    assert second == []  # nothing ready, no notification, the poll is a minute away


def test_a_hundred_finished_jobs_are_written_by_one_statement():
    tasks.noop.enqueue_many([((), {})] * 100)
    with started() as loop:
        warm(loop)
        claim_turn = statements_of(loop)  # claims all 100; they run at the wait
        write_turn = statements_of(loop)  # writes them, and claims again

    assert [kind(sql) for sql in claim_turn] == ["claim"]
    # Two statements, so one transaction (Django logs its BEGIN and COMMIT).
    assert [kind(sql) for sql in write_turn] == ["BEGIN", "complete", "claim", "COMMIT"]
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 100


def test_failures_and_retries_of_a_batch_are_written_by_one_statement():
    tasks.noop.enqueue_many([((), {})] * 40)
    tasks.boom.enqueue_many([(("for good",), {})] * 30)  # max_attempts 1: FAILED
    tasks.always_fails.enqueue_many([((f"retry-{n}",), {}) for n in range(30)])  # retried
    with started() as loop:
        warm(loop)
        statements_of(loop)
        write_turn = statements_of(loop)

    assert [kind(sql) for sql in write_turn] == ["BEGIN", "complete", "fail", "claim", "COMMIT"]
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 40
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 30
    retried = Job.objects.filter(task_path__endswith="always_fails")
    assert {job.status for job in retried} == {JobStatus.READY}
    assert all(len(job.errors) == 1 for job in retried)


def test_a_lone_statement_runs_without_a_transaction():
    """A turn of only a claim is atomic by itself: no BEGIN, no COMMIT round trips."""
    with started() as loop:
        assert connection.get_autocommit()
        statements = statements_of(loop)
    assert [kind(sql) for sql in statements] == ["claim"]


def test_the_heartbeat_costs_the_same_however_many_jobs_the_worker_holds():
    tasks.noop.enqueue_many([((), {})] * 60)
    with started() as loop:
        held = [job.lease_token for job in queries.claim(connection, [], 60, loop.id, 120.0)]

        def heartbeat(tokens: list[str]) -> list[str]:
            loop.maintenance.heartbeat_due = 0.0
            with CaptureQueriesContext(connection) as captured:
                assert loop.maintenance.run_due(time.monotonic(), lambda: tokens) is False
            return [query["sql"].split()[0] for query in captured.captured_queries]

        sixty = heartbeat(held)
        assert Job.objects.filter(status=JobStatus.RUNNING).count() == 60
        one = heartbeat(held[:1])  # the other 59 are claims it lost track of: released
        assert Job.objects.filter(status=JobStatus.RUNNING).count() == 1

    # Worker row, leases, orphans, rescue, suspects: five statements, whatever it holds.
    assert sixty == one == ["UPDATE", "UPDATE", "UPDATE", "UPDATE", "SELECT"]


def test_enqueue_is_one_statement_and_so_is_a_bulk_enqueue():
    def statements(enqueue) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            enqueue()
        return [kind(query["sql"]) for query in captured.captured_queries]

    assert statements(lambda: tasks.add.enqueue(1, 2)) == ["INSERT"]
    # One INSERT is atomic by itself: no transaction around a bulk of one statement.
    assert statements(lambda: tasks.add.enqueue_many([((n, n), {}) for n in range(100)])) == [
        "INSERT"
    ]
    assert Job.objects.count() == 101


def test_a_suspect_is_claimed_alone_and_the_others_after_it():
    results = tasks.noop.enqueue_many([((), {})] * 5)
    suspect = results[2]
    Job.objects.filter(pk=suspect.id).update(crashes=1)  # its worker died holding it
    with started() as loop:
        warm(loop)
        assert loop.suspect_waiting  # seen by the maintenance at start
        alone = statements_of(loop)
        assert [item.job.id for item in loop.outcomes.pending] == [int(suspect.id)]  # it ran ...
        # ... alone: it is the only job claimed, and it is not written yet.
        assert list(Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True)) == [
            int(suspect.id)
        ]
        write_only = statements_of(loop)  # nothing is claimed beside an unwritten suspect
        none_left = statements_of(loop)  # the next suspect claim finds none
        the_rest = statements_of(loop)

    assert [kind(sql) for sql in alone] == ["claim"]
    assert [kind(sql) for sql in write_only] == ["complete"]
    assert [kind(sql) for sql in none_left] == ["claim"]
    assert [kind(sql) for sql in the_rest] == ["claim"]
    assert Job.objects.get(pk=suspect.id).crashes == 0
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCESSFUL}
