"""The claim's plan on a large table: the ready index, no sort, a bounded number of rows read."""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction

from django_dbtasks import queries

from . import plans
from .conftest import postgres_only

pytestmark = pytest.mark.django_db(transaction=True)


def _claim_plan(limit: int) -> dict:
    """EXPLAIN (ANALYZE) of the real claim statement, inside a rolled-back transaction."""
    found: list[dict] = []

    def explain_claim(execute, sql, params, many, context):
        with connection.connection.cursor() as cursor:
            found.append(plans.explain(cursor, sql, params, "ANALYZE, BUFFERS, FORMAT JSON"))
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(explain_claim):
        claimed = queries.claim(connection, ["default"], limit, "explain", 30.0)
        transaction.set_rollback(True)
    assert len(claimed) == limit
    return found[0]


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

    nodes = list(plans.nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], json.dumps(plan, indent=1)
    assert not [n for n in nodes if n["Node Type"] == "Sort"], "the index gives the order"
    [scan] = [n for n in nodes if n.get("Index Name") == "dbtasks_job_ready"]
    assert scan["Node Type"] == "Index Scan"
    assert scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) <= 3 * 50
    [update] = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert update["Actual Rows"] == 50
