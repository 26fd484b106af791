"""The overview page: its numbers for a known set of rows, its chart, and the link to it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtasks import queries
from django_dbtasks.admin import overview
from django_dbtasks.models import JobStatus, Worker

from .conftest import IS_POSTGRES
from .shared_admin import ADD, BOOM, OVERVIEW, job, staff, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


def _stat(page: str, queue: str, name: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}"[^>]*>(.*?)</tr>', page, re.S)
    assert row, queue
    cell = re.search(rf'data-stat="{name}">(?:<a [^>]*>)?([^<]*)<', row.group(1))
    assert cell, name
    return cell.group(1).strip()


def test_overview_numbers_for_a_known_set_of_rows(admin_client_):
    now = timezone.now()
    # Half-minute offsets: PostgreSQL's now() is the test transaction's start, a little earlier.
    job(run_after=now - timedelta(minutes=5, seconds=30))
    job(run_after=now + timedelta(hours=1))
    job(JobStatus.RUNNING, claimed_by="w-1", lease_expires_at=now + timedelta(seconds=30))
    for minutes in (1.5, 1.5, 2.5, 30.5):
        job(JobStatus.SUCCESSFUL, finished_at=now - timedelta(minutes=minutes))
    job(JobStatus.FAILED, finished_at=now - timedelta(minutes=2.5))
    job(JobStatus.FAILED, finished_at=now - timedelta(hours=3))  # outside the window
    job(JobStatus.CANCELLED)
    job(JobStatus.SUCCESSFUL, queue_name="emails", finished_at=now - timedelta(hours=2))
    Worker.objects.create(id="w-1", hostname="h", pid=1, queues=["default", "emails"])
    Worker.objects.create(
        id="w-2",
        hostname="h",
        pid=2,
        queues=["default"],
        last_heartbeat_at=now - timedelta(hours=1),
    )
    page = text(admin_client_.get(OVERVIEW))
    assert '<meta http-equiv="refresh" content="10">' in page
    assert _stat(page, "default", "ready") == "2"
    assert _stat(page, "default", "due") == "1"
    assert _stat(page, "default", "oldest-wait").startswith("5 min")
    assert _stat(page, "default", "running") == "1"
    assert _stat(page, "default", "successful-window") == "4"
    assert _stat(page, "default", "rate") == "0.8"  # 4 jobs in minutes 1 and 2, over 5 minutes
    assert _stat(page, "default", "failed-window") == "1"
    assert _stat(page, "default", "failure-rate") == "20.0%"
    assert _stat(page, "default", "failed-total") == "2"
    assert _stat(page, "default", "cancelled-total") == "1"
    assert _stat(page, "default", "workers") == "1"
    assert _stat(page, "emails", "successful-window") == "0"
    assert _stat(page, "emails", "failure-rate") == "–"
    assert _stat(page, "emails", "workers") == "1"
    assert _stat(page, "low", "ready") == "0"  # configured, empty
    # The chart: one bar of 2 successful a minute ago, the tallest, at full height.
    assert "<title>1 min ago: 2 successful, 0 failed</title>" in page
    assert "<title>2 min ago: 1 successful, 1 failed</title>" in page
    assert 'height="120.00"' in page
    paused = text(admin_client_.get(OVERVIEW + "?refresh=0"))
    assert 'http-equiv="refresh"' not in paused and "Not reloading" in paused
    assert "http" not in re.search(r"<svg.*?</svg>", page, re.S).group(0).replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_app_index_links_to_the_overview(admin_client_):
    page = text(admin_client_.get(reverse("admin:app_list", args=["django_dbtasks"])))
    assert OVERVIEW in page


def _task_stat(page: str, task: str, name: str) -> str:
    row = re.search(rf'<tr data-task="{re.escape(task)}"[^>]*>(.*?)</tr>', page, re.S)
    assert row, task
    cell = re.search(rf'data-stat="{name}">(?:<a [^>]*>)?([^<]*)<', row.group(1))
    assert cell, name
    return cell.group(1).strip()


def finished(status: str, task: str, minutes_ago: float, ran: float, **fields) -> None:
    """A job that finished ``minutes_ago``, its last attempt having run ``ran`` seconds."""
    end = timezone.now() - timedelta(minutes=minutes_ago)
    job(status, task, finished_at=end, last_attempted_at=end - timedelta(seconds=ran), **fields)


def test_per_task_figures_of_the_last_hour(admin_client_):
    # ADD: 10 jobs in the hour, run times 2, 4, .. 20 s, 2 of them failed; one older, out of it.
    for n in range(1, 11):
        finished(JobStatus.FAILED if n in (3, 7) else JobStatus.SUCCESSFUL, ADD, 5.5, 2 * n)
    finished(JobStatus.SUCCESSFUL, ADD, 90, 500)
    # BOOM: one failure, an unfinished retry, a cancelled job: only the failure counts.
    finished(JobStatus.FAILED, BOOM, 10.5, 0.25, started_at=timezone.now() - timedelta(hours=1))
    job(JobStatus.READY, BOOM)
    job(JobStatus.CANCELLED, BOOM)
    page = text(admin_client_.get(OVERVIEW))
    table = page[page.index('id="dbtasks-task-stats"') :]
    # The most failures first: ADD (2 of 10) before BOOM (1 of 1).
    assert table.index(f'data-task="{ADD}"') < table.index(f'data-task="{BOOM}"')
    assert _task_stat(page, ADD, "finished") == "10"
    assert _task_stat(page, ADD, "per-minute") == "0.17"  # 10 in 60 minutes
    assert _task_stat(page, ADD, "failed") == "2"
    assert _task_stat(page, ADD, "failure-rate") == "20.0%"
    # percentile_cont, on both databases: the median of 2..20 is 11, the 95th percentile
    # is at rank 0.95 * 9 = 8.55, between 18 and 20: 19.1.
    assert _task_stat(page, ADD, "p50") == "11.0 s"
    assert _task_stat(page, ADD, "p95") == "19.1 s"
    stats = {key[1]: row for key, *row in queries.task_stats(connection, 60, 1000)}
    assert stats[ADD][:2] == [8, 2]
    assert stats[ADD][2] == pytest.approx(11.0, abs=0.01)
    assert stats[ADD][3] == pytest.approx(19.1, abs=0.01)
    assert _task_stat(page, BOOM, "finished") == "1"
    assert _task_stat(page, BOOM, "failure-rate") == "100.0%"
    assert _task_stat(page, BOOM, "p50") == _task_stat(page, BOOM, "p95") == "250 ms"
    assert f"?status__exact=FAILED&amp;task={BOOM}" in table


def test_per_task_figures_are_one_bounded_query(admin_client_, monkeypatch):

    def statements() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client_.get(OVERVIEW).status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    finished(JobStatus.SUCCESSFUL, ADD, 50, 1)
    few = statements()
    for n in range(30):
        finished(
            JobStatus.SUCCESSFUL if n % 2 else JobStatus.FAILED, f"legacy.tasks.t{n % 6}", 2, n
        )
    many = statements()
    assert len(few) == len(many)  # however many tasks and jobs
    reading = [sql for sql in many if "percentile_cont" in sql or "ranked AS" in sql]
    assert len(reading) == 1 and "LIMIT 20000" in reading[0], reading
    # A busy hour: the figures are those of the newest jobs, and the page says so.
    monkeypatch.setattr(overview, "TASK_SAMPLE", 10)
    page = text(admin_client_.get(OVERVIEW))
    assert "Busy hour: these figures are those of the newest 10 finished jobs" in page
    total = sum(
        int(_task_stat(page, f"legacy.tasks.t{n}", "finished"))
        for n in range(6)
        if f'data-task="legacy.tasks.t{n}"' in page
    )
    assert total == 10 and f'data-task="{ADD}"' not in page  # the oldest was left out
    assert len(queries.task_stats(connection, 60, 10)) <= 6


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's definition: linear interpolation at rank ``fraction * (n - 1)``."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@given(
    st.lists(
        st.tuples(st.sampled_from([ADD, BOOM]), st.integers(0, 600_000), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_per_task_percentiles_are_postgresqls_percentile_cont_on_both_databases(runs):
    """Hypothesis: run times in milliseconds, any mix of tasks and outcomes."""
    with transaction.atomic():
        for task_path, milliseconds, failed in runs:
            finished(
                JobStatus.FAILED if failed else JobStatus.SUCCESSFUL,
                task_path,
                3,
                milliseconds / 1000,
            )
        stats = {key[1]: row for key, *row in queries.task_stats(connection, 60, 1000)}
        transaction.set_rollback(True)
    assert set(stats) == {task_path for task_path, _, _ in runs}
    for task_path, (ok, failed, p50, p95, _) in stats.items():
        mine = [ms / 1000 for path, ms, _ in runs if path == task_path]
        assert ok + failed == len(mine)
        assert failed == sum(1 for path, _, f in runs if path == task_path and f)
        assert p50 == pytest.approx(percentile_cont(mine, 0.5), abs=0.002)
        assert p95 == pytest.approx(percentile_cont(mine, 0.95), abs=0.002)


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's plan (test_admin_indexes checks PostgreSQL's)")
def test_on_sqlite_the_per_task_figures_read_the_finished_index():
    """SQLite uses a partial index only for its very condition: the query must spell it so."""
    sql = queries.TASK_STATS_SQLITE.replace("%%", "%")
    sql = sql.replace("%(age)s", "'-3600 seconds'").replace("%(most)s", "20000")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        steps = [row[3] for row in cursor.fetchall()]
    reads = [step for step in steps if "django_dbtasks_job" in step]
    assert reads == ["SEARCH django_dbtasks_job USING INDEX dbtasks_job_finished (finished_at>?)"]
