"""The INSERTs enqueue sends: one per thousand jobs, prepared only when the project asks."""

from __future__ import annotations

import pytest
from django.db import connection

from django_dbtasks import queries
from django_dbtasks.models import Job

from .conftest import postgres_only
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_many_sends_one_insert_per_thousand_jobs(django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # BEGIN/SAVEPOINT, 2 INSERTs, COMMIT/RELEASE
        results = tasks.add.enqueue_many([((i, 1), {}) for i in range(2000)])
    assert len(results) == len({r.id for r in results}) == 2000
    assert Job.objects.count() == 2000


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
    bulk = "jsonb_array_elements"  # the one JSON document of a batch
    assert any(p.startswith("INSERT INTO django_dbtasks_job") and bulk in p for p in prepared)
    assert "VALUES" in single_insert and bulk in bulk_insert  # Django's hooks saw both
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
