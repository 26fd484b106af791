"""The admin's queries read indexes, not the whole table (PostgreSQL plans on 60,000 rows).

The timings on 1,000,000 rows are in docs/admin.md (``bash bench/admin.sh``);
these tests pin the plans that make them possible, so a change to a query or
an index that would bring back a sequential scan fails here.
"""

from __future__ import annotations

import pytest
from django.db import connection

from django_dbtasks import queries
from django_dbtasks.admin.jobs import CappedPaginator
from django_dbtasks.models import Job

from .conftest import postgres_only
from .plans import explain, index_rows_read, plan_of, scans, uses_index

pytestmark = [pytest.mark.django_db, postgres_only]

JOB = queries.JOB


@pytest.fixture
def large_table() -> None:
    """60,000 old successful jobs and a few of every other kind, analysed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JOB} (task_path, queue_name, priority, status, args, kwargs, run_after,"
            " started_at, finished_at, attempts, max_attempts, crashes, errors, worker_ids,"
            " claimed_by, progress_message) SELECT 'tests.testapp.tasks.add', 'default', 0,"
            " CASE WHEN g % 1000 = 0 THEN 'FAILED' WHEN g % 1000 = 1 THEN 'CANCELLED'"
            " ELSE 'SUCCESSFUL' END, '[1, 2]', '{}', now() - interval '3 days',"
            " now() - interval '3 days', now() - interval '3 days' + g * interval '1 ms',"
            " 1, 1, 0, '[]', '[]', '', '' FROM generate_series(1, 60000) AS g"
        )
        cursor.execute(
            f"INSERT INTO {JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " attempts, max_attempts, crashes, errors, worker_ids, claimed_by, progress_message,"
            " lease_expires_at, finished_at) SELECT 'tests.testapp.tasks.add', 'default', 0,"
            " s.status, '[]', '{}', 0, 1, 0, '[]', '[]', '', '',"
            " CASE WHEN s.status = 'RUNNING' THEN now() END,"
            " CASE WHEN s.status = 'SUCCESSFUL' THEN now() END"
            " FROM generate_series(1, 20) AS g, LATERAL (SELECT CASE g % 3 WHEN 0 THEN 'READY'"
            " WHEN 1 THEN 'RUNNING' ELSE 'SUCCESSFUL' END AS status) AS s"
        )
        cursor.execute(f"ANALYZE {JOB}")


def test_failed_jobs_list_and_its_count_use_the_failed_index(large_table):
    failed = Job.objects.filter(status="FAILED").order_by("-id")
    page = plan_of(*failed[:50].query.sql_with_params())
    count = plan_of(*failed.values("id")[: CappedPaginator.cap + 1].query.sql_with_params())
    for plan in (page, count):
        found = scans(plan)
        assert not [s for s in found if s[0] == "Seq Scan"], found
        assert any(name == "dbtasks_job_failed" for _, name in found), found


def test_overview_statistics_read_only_their_indexes(large_table):
    statements: list[tuple[str, list]] = []

    def keep(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        queries.queue_counts(connection)
        queries.finished_per_minute(connection, 60)
    expected = [
        ["dbtasks_job_ready", "dbtasks_job_running_lease", "dbtasks_job_failed"],
        ["dbtasks_job_finished"],
    ]
    for (sql, params), indexes in zip(statements, expected, strict=True):
        found = scans(plan_of(sql, params))
        assert not [s for s in found if s[0] == "Seq Scan"], (sql, found)
        for index in indexes:
            assert any(name == index for _, name in found), (sql, index, found)


@pytest.fixture
def errors_on_some_rows(large_table) -> None:
    """Errors on the failed rows (three classes) and on a few retried successful ones."""
    entry = """jsonb_build_array(jsonb_build_object('exception_class_path', %s, 'message',
        'it broke', 'traceback', repeat('  File "x.py", line 1, in f' || chr(10), 50)))"""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {JOB} SET errors = {entry} WHERE status = 'FAILED' AND id %% 3 = 0",
            ["builtins.ValueError"],
        )
        cursor.execute(
            f"UPDATE {JOB} SET errors = {entry} WHERE status = 'FAILED' AND id %% 3 = 1",
            ["json.decoder.JSONDecodeError"],
        )
        cursor.execute(
            f"UPDATE {JOB} SET errors = {entry} WHERE status = 'FAILED' AND id %% 3 = 2",
            ["builtins.KeyError"],
        )
        cursor.execute(
            f"UPDATE {JOB} SET errors = {entry} WHERE status = 'SUCCESSFUL' AND id %% 5000 = 7",
            ["builtins.ConnectionError"],
        )
        cursor.execute(f"ANALYZE {JOB}")


def test_the_error_filter_and_its_choices_read_the_latest_error_index(errors_on_some_rows):
    from django_dbtasks.admin.jobs import LatestErrorFilter
    from django_dbtasks.errors import LatestError

    statements: list[tuple[str, list]] = []

    def keep(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        classes = queries.latest_error_classes(connection, LatestErrorFilter.most)
    assert classes == [
        "builtins.ConnectionError",
        "builtins.KeyError",
        "builtins.ValueError",
        "json.decoder.JSONDecodeError",
    ]
    matching = (
        Job.objects.alias(error_class=LatestError("exception_class_path"))
        .filter(error_class="builtins.KeyError")
        .order_by("-id")
    )
    page = matching[:50].query.sql_with_params()
    count = matching.values("pk")[: CappedPaginator.cap + 1].query.sql_with_params()
    for sql, params in (*statements, page, count):
        found = scans(plan_of(sql, params))
        assert not [s for s in found if s[0] == "Seq Scan"], (sql, found)
        assert any(name == "dbtasks_job_latest_error" for _, name in found), (sql, found)


def test_the_per_task_figures_read_the_finished_index_and_at_most_their_sample(large_table):
    """A busy hour (5,000 jobs): the statement reads the newest ``most`` rows, no more."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {JOB} SET finished_at = now() - (id % 3000) * interval '1 second',"
            " last_attempted_at = now() - (id % 3000) * interval '1 second' - interval '2 s'"
            " WHERE id % 12 = 0 AND status = 'SUCCESSFUL'"
        )
        cursor.execute(f"ANALYZE {JOB}")
    statements: list[tuple[str, dict]] = []

    def keep(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        rows = queries.task_stats(connection, 60, 1000)
    assert sum(ok + failed for _, ok, failed, *_ in rows) == 1000
    (sql, params), *others = statements
    assert not others
    with connection.cursor() as cursor:
        plan = explain(cursor, sql, params, "ANALYZE, FORMAT JSON")
    found = scans(plan)
    assert not [s for s in found if s[0] == "Seq Scan"], found
    assert uses_index(plan, "dbtasks_job_finished"), found
    assert index_rows_read(plan, "dbtasks_job_finished") <= 1000, found
