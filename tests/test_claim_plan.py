"""The claim's plan and order: it reads only what it returns, whatever else the table holds.

The plan tests fill PostgreSQL with the shapes a real job table has (finished
history, another queue's backlog, jobs deferred into the future) and read the
claim's ``EXPLAIN ANALYZE``: how many entries of the ready index it touched,
against how many jobs it claimed. The order test checks, on both databases,
that what a claim takes is exactly the first jobs in claim order.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtasks import queries
from django_dbtasks.models import Job

from . import plans
from .conftest import postgres_only

pytestmark = pytest.mark.django_db(transaction=True)

READY_INDEX = "dbtasks_job_ready"


def _claim_plans(queues: list[str], limit: int, expect: int) -> list[dict]:
    """EXPLAIN (ANALYZE) of each statement of a real claim, in a rolled-back transaction.

    A one-queue claim runs ``CLAIM_TOP_PRIORITY_POSTGRES`` and, when that falls
    short with lower priorities waiting, ``CLAIM_POSTGRES``: every statement
    the claim ran is returned, and the tests count what they read together.
    """
    found: list[dict] = []

    def explain_claim(execute, sql, params, many, context):
        # ANALYZE runs the claim: undone, so that the real one claims the same jobs.
        with connection.connection.cursor() as cursor:
            cursor.execute("SAVEPOINT explain")
            found.append(plans.explain(cursor, sql, params, "ANALYZE, BUFFERS, FORMAT JSON"))
            cursor.execute("ROLLBACK TO SAVEPOINT explain")
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(explain_claim):
        claimed = queries.claim(connection, queues, limit, "explain", 30.0)
        transaction.set_rollback(True)
    assert len(claimed) == expect
    return found


def _fill(
    count: int,
    status: str = "READY",
    queue: str = "default",
    run_after: str = "now()",
    priority: str = "0",
) -> None:
    """Insert ``count`` jobs in one statement (``priority`` may use ``g``, the row number)."""
    finished = "now()" if status != "READY" else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {queries.JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " run_after, finished_at, attempts, max_attempts, crashes, errors, worker_ids,"
            f" claimed_by) SELECT 'tests.testapp.tasks.noop', %s, {priority}, %s, '[]', '{{}}',"
            f" {run_after}, {finished}, 0, 1, 0, '[]', '[]', ''"
            " FROM generate_series(1, %s) AS g",
            [queue, status, count],
        )


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {queries.JOB}")


def _assert_reads_what_it_returns(found: list[dict], claimed: int, lanes: int) -> None:
    """The ready index was read for about what was claimed, plus one probe per lane,
    and the table itself was never scanned."""
    shown = json.dumps(found, indent=1)
    nodes = [node for plan in found for node in plans.nodes(plan)]
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], shown
    assert all(plans.uses_index(plan, READY_INDEX) for plan in found), shown
    read = sum(plans.index_rows_read(plan, READY_INDEX) for plan in found)
    assert read <= 3 * claimed + 4 * lanes, (read, shown)
    # Entries an index condition passes over are counted only in the pages read.
    blocks = sum(plans.index_blocks_read(plan, READY_INDEX) for plan in found)
    assert blocks <= 3 * claimed + 6 * lanes, (blocks, shown)
    updates = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert sum(update["Actual Rows"] for update in updates) == claimed


@postgres_only
def test_a_claim_reads_no_finished_rows():
    _fill(1_000_000, status="SUCCESSFUL")
    _fill(100_000, priority="(g %% 5) - 2")
    _analyze()

    found = _claim_plans(["default"], limit=50, expect=50)

    # Five priorities: five lanes probed, one of which fills the batch.
    _assert_reads_what_it_returns(found, claimed=50, lanes=5)


@pytest.mark.slow
@postgres_only
def test_a_claim_for_one_queue_reads_no_other_queues_backlog():
    _fill(1_000_000, queue="default")
    _fill(100, queue="emails")
    _analyze()

    found = _claim_plans(["emails"], limit=10, expect=10)

    _assert_reads_what_it_returns(found, claimed=10, lanes=1)


@pytest.mark.slow
@postgres_only
def test_a_claim_reads_no_jobs_deferred_into_the_future():
    _fill(1_000_000, run_after="now() + interval '1 day'")
    _fill(10)
    _analyze()

    # A batch larger than what is due: the scan ends at the first job not due yet.
    found = _claim_plans(["default"], limit=100, expect=10)

    _assert_reads_what_it_returns(found, claimed=10, lanes=1)


@pytest.mark.slow
@postgres_only
def test_a_claim_below_the_top_priority_reads_no_deferred_jobs_either():
    _fill(1_000_000, run_after="now() + interval '1 day'")
    _fill(10, priority="5")
    _fill(10, priority="-5")
    _analyze()

    # The top priority's 10, then (the batch not full) the loose scan for the rest.
    found = _claim_plans(["default"], limit=100, expect=20)

    assert len(found) == 2
    _assert_reads_what_it_returns(found, claimed=20, lanes=3)


@pytest.mark.slow
@postgres_only
def test_a_claim_of_every_queue_walks_queue_names_not_jobs():
    _fill(1_000_000, queue="default", run_after="now() + interval '1 day'")
    for name in ("emails", "low", "reports"):
        _fill(5, queue=name)
    _analyze()

    found = _claim_plans([], limit=100, expect=15)

    _assert_reads_what_it_returns(found, claimed=15, lanes=4)


# The claim order, on both databases

QUEUES = ["default", "emails", "low"]

jobs = st.lists(
    st.tuples(
        st.sampled_from(QUEUES),
        st.sampled_from([-100, -1, 0, 0, 0, 3, 100]),  # 0 most often: ties are the hard part
        st.integers(min_value=-5, max_value=2),  # minutes from now: > 0 is not due yet
        st.booleans(),  # a suspect (crashes > 0), never claimed beside others
    ),
    max_size=25,
)


@given(
    jobs,
    st.lists(st.sampled_from(QUEUES), unique=True),  # [] is QUEUES: [], any queue
    st.integers(min_value=1, max_value=12),
)
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_claim_takes_exactly_the_first_due_jobs_in_claim_order(rows, queues, limit):
    Job.objects.all().delete()
    now = timezone.now()
    created = Job.objects.bulk_create(
        Job(
            task_path="tests.testapp.tasks.noop",
            queue_name=queue,
            priority=priority,
            run_after=now + timedelta(minutes=minutes),
            crashes=int(suspect),
        )
        for queue, priority, minutes, suspect in rows
    )
    due = [
        job
        for job in Job.objects.filter(pk__in=[job.pk for job in created])
        if job.run_after <= now and job.crashes == 0 and (not queues or job.queue_name in queues)
    ]
    expected = sorted(due, key=lambda job: (-job.priority, job.run_after, job.id))[:limit]

    claimed = queries.claim(connection, queues, limit, "order", 30.0)

    assert sorted(job.id for job in claimed) == sorted(job.id for job in expected)
    assert all(
        job.status == "RUNNING" for job in Job.objects.filter(pk__in=[j.id for j in claimed])
    )


# A one-queue claim in two statements


def _jobs_at(priority: int, count: int) -> list[int]:
    return [
        job.pk
        for job in Job.objects.bulk_create(
            Job(task_path="tests.testapp.tasks.noop", priority=priority) for _ in range(count)
        )
    ]


def _failing_second_claim(execute, sql, params, many, context):
    if sql.startswith("WITH RECURSIVE"):
        raise OperationalError("the server closed the connection unexpectedly")
    return execute(sql, params, many, context)


@postgres_only
def test_a_failed_claim_of_lower_priorities_returns_the_jobs_already_claimed():
    top, lower = _jobs_at(5, 3), _jobs_at(0, 3)

    with connection.execute_wrapper(_failing_second_claim):
        claimed = queries.claim(connection, ["default"], 10, "w1", 30.0)

    # Committed by the first statement: this worker runs them, none is left behind.
    assert sorted(job.id for job in claimed) == top
    assert set(Job.objects.filter(status="RUNNING").values_list("pk", flat=True)) == set(top)
    assert all(job.claimed_by == "w1" for job in Job.objects.filter(pk__in=top))
    assert set(Job.objects.filter(status="READY").values_list("pk", flat=True)) == set(lower)


@postgres_only
def test_a_failed_claim_of_lower_priorities_inside_a_turn_rolls_back_the_whole_claim():
    _jobs_at(5, 3), _jobs_at(0, 3)

    with pytest.raises(OperationalError), transaction.atomic():
        with connection.execute_wrapper(_failing_second_claim):
            queries.claim(connection, ["default"], 10, "w1", 30.0)

    assert Job.objects.filter(status="READY").count() == 6
