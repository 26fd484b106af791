"""Show the claim query's plan on a large job table (PostgreSQL), in the shapes real tables have.

    DATABASE_URL=postgres://... python bench/explain_claim.py [--shape finished] [--rows 1000000]

Shapes (``--rows`` sets the big part of each):

- ``finished``: ROWS finished jobs and 100,000 ready ones over three priorities;
- ``other-queue``: ROWS ready jobs in ``default``, 100 in ``emails``; the claim is for ``emails``;
- ``deferred``: ROWS jobs due tomorrow and 10 due now;
- ``any-queue``: ``deferred``, plus 5 due jobs in each of three more queues, claimed with
  ``QUEUES: []`` (every queue).

Fills a scratch database, then prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the exact claim
statement the worker runs (inside a transaction that is rolled back, so nothing is
claimed), and a summary line: planning and execution time, and how many entries of the
ready index were read for how many jobs claimed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

SHAPES = ("finished", "other-queue", "deferred", "any-queue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="finished")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=None, help="claim LIMIT (default per shape)")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL to a PostgreSQL database (it will be filled and emptied)")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    queues, batch = fill(connection, options.shape, options.rows)
    batch = options.batch or batch
    try:
        explain(connection, options.shape, options.rows, queues, batch)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {job_table()}")


def job_table() -> str:
    from django_dbtasks import queries

    return queries.JOB


def insert(cursor, count: int, status="READY", queue="default", run_after="now()", priority="0"):
    """``count`` jobs in one statement (``priority`` may use ``g``, the row number)."""
    finished = "now()" if status != "READY" else "NULL"
    cursor.execute(
        f"INSERT INTO {job_table()} (task_path, queue_name, priority, status, args, kwargs,"
        " enqueued_at, run_after, finished_at, attempts, max_attempts, crashes, errors,"
        f" worker_ids, claimed_by) SELECT 'app.tasks.noop', %s, {priority}, %s, '[]', '{{}}',"
        f" now(), {run_after}, {finished}, 0, 1, 0, '[]', '[]', ''"
        " FROM generate_series(1, %s) AS g",
        [queue, status, count],
    )


def fill(connection, shape: str, rows: int) -> tuple[list[str], int]:
    """Fill the table in ``shape``; return the queues to claim from and the batch."""
    tomorrow = "now() + interval '1 day'"
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {job_table()}")
        if shape == "finished":
            insert(cursor, rows, status="SUCCESSFUL")
            insert(cursor, 100_000, priority="(g %% 3) - 1")
            queues, batch = ["default"], 10
        elif shape == "other-queue":
            insert(cursor, rows)
            insert(cursor, 100, queue="emails")
            queues, batch = ["emails"], 10
        else:
            insert(cursor, rows, run_after=tomorrow)
            insert(cursor, 10)
            queues, batch = ["default"], 100
            if shape == "any-queue":
                for name in ("emails", "low", "reports"):
                    insert(cursor, 5, queue=name)
                queues = []
        cursor.execute(f"VACUUM ANALYZE {job_table()}")
    return queues, batch


def explain(connection, shape: str, rows: int, queues: list[str], batch: int) -> None:
    """Print the claim's plan and its summary, claiming nothing."""
    import json

    from django.db import transaction

    from django_dbtasks import queries

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import plans  # the tests' plan helpers: one definition of "index entries read"

    captured: dict[str, object] = {}

    def explain_statement(execute, sql, params, many, context):
        # Each ANALYZE runs the claim: undone, so that both see the same table.
        with connection.connection.cursor() as raw:
            for form in ("text", "json"):
                raw.execute("SAVEPOINT explain")
                json_format = ", FORMAT JSON" if form == "json" else ""
                options = f"ANALYZE, BUFFERS, COSTS OFF{json_format}"
                raw.execute(f"EXPLAIN ({options}) " + sql, params)
                rows = raw.fetchall()
                captured[form] = rows[0][0][0] if form == "json" else "\n".join(r[0] for r in rows)
                raw.execute("ROLLBACK TO SAVEPOINT explain")
        return []

    with transaction.atomic(), connection.execute_wrapper(explain_statement):
        try:
            queries.claim(connection, queues, batch, "explain", 30.0)
        except Exception:
            pass  # the wrapper returns no rows; the plan is what we want
        transaction.set_rollback(True)
    document = captured["json"]
    plan = document["Plan"]
    claimed = [n for n in plans.nodes(plan) if n["Node Type"] == "ModifyTable"][0]["Actual Rows"]
    read = plans.index_rows_read(plan, "dbtasks_job_ready")
    blocks = plans.index_blocks_read(plan, "dbtasks_job_ready")
    print(f"shape {shape}, {rows:,} rows, claim of {batch} from {queues or 'every queue'}:")
    print(captured["text"])
    print(
        json.dumps(
            {
                "shape": shape,
                "claimed": claimed,
                "ready_index_entries_read": read,
                "ready_index_scan_blocks": blocks,
                "planning_ms": document["Planning Time"],
                "execution_ms": document["Execution Time"],
            }
        )
    )


if __name__ == "__main__":
    main()
