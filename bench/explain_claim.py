"""Show the claim query's plan on a large job table (PostgreSQL).

    DATABASE_URL=postgres://... python bench/explain_claim.py [--finished 1000000] [--ready 100000]

Fills a scratch database with finished and ready jobs, then prints
``EXPLAIN (ANALYZE, BUFFERS)`` of the exact claim statement the worker runs
(inside a transaction that is rolled back, so nothing is claimed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--ready", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10, help="claim LIMIT")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL to a PostgreSQL database (it will be filled and emptied)")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from django_dbtasks import queries

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {queries.JOB}")
        cursor.execute(
            f"INSERT INTO {queries.JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " enqueued_at, run_after, finished_at, attempts, max_attempts, crashes, errors,"
            " worker_ids, claimed_by)"
            " SELECT 'app.tasks.noop', 'default', 0, 'SUCCESSFUL', '[]', '{}', now(), now(),"
            " now(), 1, 1, 0, '[]', '[]', '' FROM generate_series(1, %s)",
            [options.finished],
        )
        cursor.execute(
            f"INSERT INTO {queries.JOB} (task_path, queue_name, priority, status, args, kwargs,"
            " enqueued_at, run_after, attempts, max_attempts, crashes, errors, worker_ids,"
            " claimed_by)"
            " SELECT 'app.tasks.noop', 'default', (g %% 3) - 1, 'READY', '[]', '{}', now(),"
            " now(), 0, 1, 0, '[]', '[]', '' FROM generate_series(1, %s) g",
            [options.ready],
        )
        cursor.execute(f"VACUUM ANALYZE {queries.JOB}")

    captured: list[str] = []

    def explain(execute, sql, params, many, context):
        with connection.connection.cursor() as raw:
            raw.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            captured.extend(row[0] for row in raw.fetchall())
        return []

    with transaction.atomic(), connection.execute_wrapper(explain):
        try:
            queries.claim(connection, ["default"], options.batch, "explain", 30.0)
        except Exception:
            pass  # the wrapper returns no rows; the plan is what we want
        transaction.set_rollback(True)
    print(f"claim of {options.batch} on {options.finished:,} finished + {options.ready:,} ready:")
    print("\n".join(captured))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {queries.JOB}")


if __name__ == "__main__":
    main()
