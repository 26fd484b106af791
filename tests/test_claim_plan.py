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
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtasks import queries
from django_dbtasks.models import Job

from . import plans
from .conftest import postgres_only

pytestmark = pytest.mark.django_db(transaction=True)

READY_INDEX = "dbtasks_job_ready"


def _claim_plan(queues: list[str], limit: int, expect: int) -> dict:
    """EXPLAIN (ANALYZE) of the real claim statement, inside a rolled-back transaction."""
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
    return found[0]


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


def _assert_reads_what_it_returns(plan: dict, claimed: int, lanes: int) -> None:
    """The ready index was read for about what was claimed, plus one probe per lane,
    and the table itself was never scanned."""
    nodes = list(plans.nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], json.dumps(plan, indent=1)
    assert plans.uses_index(plan, READY_INDEX), json.dumps(plan, indent=1)
    read = plans.index_rows_read(plan, READY_INDEX)
    assert read <= 3 * claimed + 4 * lanes, (read, json.dumps(plan, indent=1))
    # Entries an index condition passes over are counted only in the pages read.
    blocks = plans.index_blocks_read(plan, READY_INDEX)
    assert blocks <= 3 * claimed + 6 * lanes, (blocks, json.dumps(plan, indent=1))
    [update] = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert update["Actual Rows"] == claimed


@postgres_only
def test_a_claim_reads_no_finished_rows():
    _fill(1_000_000, status="SUCCESSFUL")
    _fill(100_000, priority="(g %% 5) - 2")
    _analyze()

    plan = _claim_plan(["default"], limit=50, expect=50)

    # Five priorities: five lanes probed, one of which fills the batch.
    _assert_reads_what_it_returns(plan, claimed=50, lanes=5)


@pytest.mark.slow
@postgres_only
def test_a_claim_for_one_queue_reads_no_other_queues_backlog():
    _fill(1_000_000, queue="default")
    _fill(100, queue="emails")
    _analyze()

    plan = _claim_plan(["emails"], limit=10, expect=10)

    _assert_reads_what_it_returns(plan, claimed=10, lanes=1)


@pytest.mark.slow
@postgres_only
def test_a_claim_reads_no_jobs_deferred_into_the_future():
    _fill(1_000_000, run_after="now() + interval '1 day'")
    _fill(10)
    _analyze()

    # A batch larger than what is due: the scan ends at the first job not due yet.
    plan = _claim_plan(["default"], limit=100, expect=10)

    _assert_reads_what_it_returns(plan, claimed=10, lanes=1)


@pytest.mark.slow
@postgres_only
def test_a_claim_of_every_queue_walks_queue_names_not_jobs():
    _fill(1_000_000, queue="default", run_after="now() + interval '1 day'")
    for name in ("emails", "low", "reports"):
        _fill(5, queue=name)
    _analyze()

    plan = _claim_plan([], limit=100, expect=15)

    _assert_reads_what_it_returns(plan, claimed=15, lanes=4)


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
