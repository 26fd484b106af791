"""How fast the admin's pages are with 1,000,000 jobs in the table.

    bash bench/admin.sh                     # starts its own PostgreSQL, prints the table
    DATABASE_URL=postgres://... python bench/admin_bench.py [--jobs N] [--requests N]

Fills the job table with one ``INSERT ... SELECT generate_series`` (96.5%
successful over the last 7 days, 1% failed with a traceback, 0.5% cancelled,
2,000 ready, 20 running; 10% on queue "emails", 2% on "low"), then requests
each page with Django's test client as a superuser and prints the median
time of ``--requests`` requests (after one warm-up) and the number of SQL
queries of one request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.admin_settings")

TRACEBACK = (
    "Traceback (most recent call last):\\n"
    + '  File \\"/srv/app/tasks.py\\", line 42, in sync_account\\n    client.fetch(account_id)\\n'
    * 10
    + "ConnectionError: the upstream API timed out after 30 s\\n"
)

FILL = f"""
INSERT INTO django_dbtasks_job (
    task_path, queue_name, priority, status, args, kwargs, enqueued_at, run_after,
    started_at, last_attempted_at, finished_at, attempts, max_attempts, crashes,
    return_value, errors, worker_ids, claimed_by, progress_message, lease_expires_at
)
SELECT
    'bench.benchapp.tasks.' || CASE WHEN i %% 3 = 0 THEN 'started_at' ELSE 'noop' END,
    CASE WHEN i %% 10 = 0 THEN 'emails' WHEN i %% 50 = 1 THEN 'low' ELSE 'default' END,
    0,
    s.status,
    jsonb_build_array(i, 'account-' || i),
    '{{}}'::jsonb,
    t.at - interval '2 seconds', t.at - interval '2 seconds',
    CASE WHEN s.status = 'READY' THEN NULL ELSE t.at - interval '1 second' END,
    CASE WHEN s.status = 'READY' THEN NULL ELSE t.at - interval '1 second' END,
    CASE WHEN s.status IN ('READY', 'RUNNING') THEN NULL ELSE t.at END,
    CASE WHEN s.status = 'READY' THEN 0 ELSE 1 END, 1, 0,
    CASE WHEN s.status = 'SUCCESSFUL' THEN '"ok"'::jsonb END,
    CASE WHEN s.status = 'FAILED' THEN jsonb_build_array(jsonb_build_object(
        'exception_class_path', 'builtins.ConnectionError',
        'message', 'ConnectionError: the upstream API timed out after 30 s',
        'traceback', '{TRACEBACK}')) ELSE '[]'::jsonb END,
    CASE WHEN s.status = 'READY' THEN '[]'::jsonb ELSE '["bench-worker"]'::jsonb END,
    CASE WHEN s.status = 'RUNNING' THEN 'bench-worker' ELSE '' END,
    '',
    CASE WHEN s.status = 'RUNNING' THEN now() + interval '30 seconds' END
FROM generate_series(1, %(jobs)s) AS i,
LATERAL (SELECT now() - (%(jobs)s - i) * interval '7 days' / %(jobs)s AS at) AS t,
LATERAL (SELECT CASE
    WHEN i > %(jobs)s - 2000 THEN 'READY'
    WHEN i > %(jobs)s - 2020 THEN 'RUNNING'
    WHEN i %% 200 IN (7, 107) THEN 'FAILED'
    WHEN i %% 200 = 13 THEN 'CANCELLED'
    ELSE 'SUCCESSFUL' END AS status) AS s
"""


def fill(jobs: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    from django_dbtasks.models import Schedule, Worker

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE django_dbtasks_job, django_dbtasks_worker, django_dbtasks_schedule"
        )
        cursor.execute(FILL, {"jobs": jobs})
        cursor.execute("VACUUM ANALYZE django_dbtasks_job")
    Schedule.objects.bulk_create(
        Schedule(name=f"schedule-{n}", task_path="bench.benchapp.tasks.noop", cron=f"{n} * * * *")
        for n in range(50)
    )
    Worker.objects.bulk_create(
        Worker(id=f"bench-worker-{n}", hostname=f"host-{n % 5}", pid=1000 + n, queues=["default"])
        for n in range(20)
    )
    User.objects.filter(username="bench").delete()
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    print(f"filled {jobs:,} jobs in {time.monotonic() - started:.1f} s", flush=True)


def measure(client, url: str, requests: int) -> tuple[float, int, int]:
    """Median milliseconds, SQL queries of one request, and the response status."""
    from django.db import connection

    queries: list[str] = []

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        queries.append(sql)
        return execute(sql, params, many, context)

    # A wrapper rather than connection.queries: the client's requests may reconnect.
    with connection.execute_wrapper(count):
        response = client.get(url)
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), len(queries), response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--no-fill", action="store_true", help="reuse the rows already there")
    options = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from django_dbtasks.models import Job

    call_command("migrate", verbosity=0)
    if not options.no_fill:
        fill(options.jobs)
    client = Client()
    client.login(username="bench", password="bench")
    some_id = Job.objects.filter(status="FAILED").order_by("-id").values_list("id", flat=True)[0]
    base = "/admin/django_dbtasks/"
    pages = [
        ("job list", f"{base}job/"),
        ("job list, status=FAILED", f"{base}job/?status__exact=FAILED"),
        ("job list, status=READY", f"{base}job/?status__exact=READY"),
        ("job list, queue=emails", f"{base}job/?queue=emails"),
        ("job list, queue=low and FAILED", f"{base}job/?queue=low&status__exact=FAILED"),
        ("job list, task filter", f"{base}job/?task=bench.benchapp.tasks.started_at"),
        ("job list, search by id", f"{base}job/?q={some_id}"),
        ("job list, search argument text", f"{base}job/?q=account-{some_id}"),
        (
            "job list, same search, FAILED only",
            f"{base}job/?status__exact=FAILED&q=account-{some_id}",
        ),
        ("job list, page 100", f"{base}job/?p=100"),
        ("job list, latest error filter", f"{base}job/?error=builtins.ConnectionError"),
        (
            "job list, error filter and FAILED",
            f"{base}job/?error=builtins.ConnectionError&status__exact=FAILED",
        ),
        ("job page (failed, traceback)", f"{base}job/{some_id}/change/"),
        ("overview", f"{base}job/overview/"),
        ("schedule list (50)", f"{base}schedule/"),
        ("worker list (20)", f"{base}worker/"),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(
        f"{Job.objects.count():,} jobs, PostgreSQL {version}, Django {django.get_version()}; "
        f"median of {options.requests} requests after a warm-up"
    )
    print(f"  {'page':<34} {'median ms':>10} {'queries':>8}")
    for name, url in pages:
        median, queries, status = measure(client, url, options.requests)
        flag = "" if status == 200 else f"  HTTP {status}"
        print(f"  {name:<34} {median:>10.1f} {queries:>8}{flag}", flush=True)


if __name__ == "__main__":
    main()
