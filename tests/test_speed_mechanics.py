"""The mechanisms speed relies on, proved without timing: plans, wake-ups, batching."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_dbtasks import queries
from django_dbtasks.compat import TaskResultStatus
from django_dbtasks.models import Job

from .conftest import postgres_only, wait_until
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def _claim_plan(limit: int) -> dict:
    """EXPLAIN (ANALYZE) of the real claim statement, inside a rolled-back transaction."""
    plans: list[dict] = []

    def explain(execute, sql, params, many, context):
        with connection.connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
            plans.append(cursor.fetchone()[0][0]["Plan"])
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(explain):
        claimed = queries.claim(connection, ["default"], limit, "explain", 30.0)
        transaction.set_rollback(True)
    assert len(claimed) == limit
    return plans[0]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@postgres_only
def test_claim_uses_the_ready_index_and_reads_a_bounded_number_of_rows():
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {queries.JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " run_after, finished_at, attempts, max_attempts, crashes, errors, worker_ids,"
            " claimed_by) SELECT 'tests.testapp.tasks.noop', 'default', 0, 'SUCCESSFUL', '[]',"
            " '{}', now(), now(), 1, 1, 0, '[]', '[]', '' FROM generate_series(1, 1000000)"
        )
        cursor.execute(
            f"INSERT INTO {queries.JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " attempts, max_attempts, crashes, errors, worker_ids, claimed_by)"
            " SELECT 'tests.testapp.tasks.noop', 'default', (g % 5) - 2, 'READY', '[]', '{}',"
            " 0, 1, 0, '[]', '[]', '' FROM generate_series(1, 100000) AS g"
        )
        cursor.execute(f"ANALYZE {queries.JOB}")

    plan = _claim_plan(limit=50)

    nodes = list(_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], json.dumps(plan, indent=1)
    assert not [n for n in nodes if n["Node Type"] == "Sort"], "the index gives the order"
    [scan] = [n for n in nodes if n.get("Index Name") == "dbtasks_job_ready"]
    assert scan["Node Type"] == "Index Scan"
    assert scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) <= 3 * 50
    [update] = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert update["Actual Rows"] == 50


@postgres_only
def test_a_notification_wakes_an_idle_worker_long_before_its_poll(start_worker):
    worker = start_worker(DBTASKS_TEST_POLL="30")
    wait_until(lambda: "started" in worker.output())
    time.sleep(1.5)  # idle, sleeping until its 30 s poll
    enqueued = time.monotonic()
    result = tasks.add.enqueue(1, 2)
    result.wait(timeout=10)
    assert time.monotonic() - enqueued < 2, "woken by NOTIFY, not by the 30 s poll"
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_without_notifications_polling_finishes_every_job(start_worker):
    start_worker("--concurrency", "2", DBTASKS_TEST_NOTIFY="0", DBTASKS_TEST_POLL="0.2")
    time.sleep(1)
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(300)])
    for result in results:
        result.wait(timeout=60)
    assert {r.return_value for r in results} == {2 * i for i in range(300)}


def test_enqueue_many_sends_one_insert_per_thousand_jobs(django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # BEGIN/SAVEPOINT, 2 INSERTs, COMMIT/RELEASE
        results = tasks.add.enqueue_many([((i, 1), {}) for i in range(2000)])
    assert len(results) == len({r.id for r in results}) == 2000
    assert Job.objects.count() == 2000


def test_batch_completion_applies_only_to_jobs_the_worker_still_holds():
    jobs = tasks.add.enqueue_many([((i, 0), {}) for i in range(4)])
    claimed = queries.claim(connection, ["default"], 4, "w", 30)
    assert {str(job.id) for job in claimed} == {job.id for job in jobs}
    stale, *held = claimed
    Job.objects.filter(pk=stale.id).update(lease_token="0" * 32)  # rescued and re-claimed
    applied = queries.complete_many(connection, [(job.id, job.lease_token, "1") for job in claimed])
    assert applied == {job.id for job in held}
    assert Job.objects.get(pk=stale.id).status == "RUNNING"


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
        assert row.errors == [error] and row.claimed_by == "" and row.lease_token is None
        assert row.lease_expires_at is None and row.crashes == 0 and row.attempts == 1
    assert rows[retried].finished_at is None
    assert rows[retried].run_after > before + dt.timedelta(seconds=50)
    assert rows[given_up].finished_at is not None and rows[last].finished_at is not None
    assert rows[stale].status == "RUNNING" and rows[stale].errors == []
    assert queries.fail_many(connection, []) == {}
    # The one-job form the worker still calls: not applied twice.
    token = claimed[given_up].lease_token
    assert queries.fail_attempt(connection, given_up, token, error, None) is None


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def prepare_threshold():
    """Reconnect with psycopg's prepared statements on, as a project's OPTIONS would."""
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["prepare_threshold"] = 0  # prepare on first use, so the test needs few calls
    yield
    connection.close()
    del options["prepare_threshold"]


@postgres_only
def test_enqueue_insert_is_prepared_when_the_project_turns_prepared_statements_on(
    prepare_threshold,
):
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        one = tasks.noop.enqueue()
        many = tasks.noop.enqueue_many([((), {}), ((), {})])

    [single_insert, bulk_insert] = [sql for sql in seen if sql.startswith("INSERT")]
    prepared = _prepared_statements()
    # psycopg turns %s into $1, $2 ... when it prepares: compare the statements' heads.
    assert any(p.startswith("INSERT INTO django_dbtasks_job") and "VALUES" in p for p in prepared)
    assert any(p.startswith("INSERT INTO django_dbtasks_job") and "unnest" in p for p in prepared)
    assert "VALUES" in single_insert and "unnest" in bulk_insert  # Django's hooks saw both
    ids = [int(one.id)] + [int(result.id) for result in many]
    assert Job.objects.filter(pk__in=ids, status="READY").count() == 3


@postgres_only
def test_enqueue_prepares_nothing_with_djangos_default_settings():
    connection.close()
    tasks.noop.enqueue()
    tasks.noop.enqueue_many([((), {}), ((), {})])
    assert _prepared_statements() == []


@postgres_only
def test_a_prepared_insert_still_raises_djangos_errors(prepare_threshold):
    from django.db import DataError

    with pytest.raises(DataError):  # Django's class, not psycopg's: the error was translated
        queries.insert_jobs(
            connection,
            backend="default",
            task_path="x" * 300,  # longer than the column
            queue_name="default",
            priority=0,
            max_attempts=1,
            run_after=None,
            calls=[("[]", "{}")],
        )
