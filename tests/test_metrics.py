"""The Prometheus metrics: exact counts from real workers, counters that never go down.

Jobs are run by real ``runtasks`` processes (two at once, for counts gathered
across workers); the page is read through the project's URLconf
(``path("metrics", django_dbtasks.metrics.view)`` in tests/urls.py) and parsed
with prometheus_client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from django_dbtasks import queries, tallies
from django_dbtasks.models import Job, JobStatus, Tally, Worker

from . import plans
from .conftest import postgres_only, run_worker, wait_until
from .test_claim_plan import _analyze, _fill
from .test_log_levels import left_running
from .testapp import tasks
from .turns import started, statements_of, warm

pytestmark = pytest.mark.django_db(transaction=True)

ADD, BOOM, FLAKY = tasks.add.module_path, tasks.boom.module_path, tasks.always_fails.module_path
RECORD = tasks.record_run.module_path


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``: ``(name, sorted labels) -> value``."""
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def finished(samples: dict, task: str, outcome: str, queue: str = "default") -> float:
    labels = {"backend": "default", "queue": queue, "task": task, "outcome": outcome}
    return samples.get(("dbtasks_jobs_finished_total", tuple(sorted(labels.items()))), 0.0)


def queue_gauge(samples: dict, name: str, queue: str) -> float:
    return samples[(name, (("backend", "default"), ("queue", queue)))]


def bucket(samples: dict, name: str, le: str, **labels: str) -> float:
    every = {"backend": "default", "le": le, **labels}
    return samples[(f"{name}_bucket", tuple(sorted(every.items())))]


COUNTERS = ("dbtasks_jobs_finished_total", "dbtasks_job_run_duration", "dbtasks_job_wait")


def counters(samples: dict) -> dict:
    return {key: value for key, value in samples.items() if key[0].startswith(COUNTERS)}


def test_outcomes_are_counted_exactly_across_workers_and_survive_pruning(start_worker):
    tasks.noop.enqueue_many([((), {})] * 150)
    tasks.add.enqueue_many([((n, n), {}) for n in range(50)])
    tasks.boom.enqueue_many([(("for good",), {})] * 4)
    tasks.always_fails.enqueue("three attempts")  # two retries 0.1 s apart, then FAILED
    tasks.add.enqueue(1, 1).cancel()
    rescued, poison = left_running(crashes=0), left_running(crashes=2)
    workers = [start_worker("--concurrency", "2") for _ in range(2)]
    wait_until(lambda: not Job.objects.filter(status__in=["READY", "RUNNING"]).exists())
    for worker in workers:
        worker.stop()  # SIGTERM: what was counted since the last heartbeat is added at exit

    before = scrape()
    assert finished(before, ADD, "successful") == 50
    assert finished(before, tasks.noop.module_path, "successful") == 150
    assert finished(before, BOOM, "failed") == 4
    assert (finished(before, FLAKY, "retried"), finished(before, FLAKY, "failed")) == (2, 1)
    assert finished(before, ADD, "cancelled") == 1
    assert finished(before, RECORD, "rescued") == 1 and finished(before, RECORD, "poison") == 1
    assert finished(before, RECORD, "successful") == 1  # the rescued job, run again
    assert finished(before, BOOM, "successful") == 0  # every outcome of a series is shown
    runs = bucket(before, "dbtasks_job_run_duration_seconds", "+Inf", queue="default", task=ADD)
    assert runs == 50
    assert Job.objects.get(pk=poison).status == JobStatus.FAILED
    assert Job.objects.get(pk=rescued).status == JobStatus.SUCCESSFUL

    call_command("prunetasks", "--older-than", "0", stdout=io.StringIO())
    assert not Job.objects.exists()
    assert counters(scrape()) == counters(before)  # pruning takes nothing from a counter
    tasks.add.enqueue_many([((n, n), {}) for n in range(7)])
    # No heartbeat comes during this burst: its counts are added as it exits.
    assert run_worker(DBTASKS_TEST_HEARTBEAT="30", DBTASKS_TEST_LEASE="60").returncode == 0
    assert finished(scrape(), ADD, "successful") == 57  # counted on, from where it was


def test_gauges_come_from_the_job_table_and_workers(start_worker):
    now = queries.database_now(connection)
    Job.objects.create(task_path=RECORD, queue_name="emails", run_after=now - timedelta(seconds=90))
    Job.objects.create(task_path=RECORD, queue_name="emails", run_after=now + timedelta(hours=1))
    Job.objects.create(task_path=RECORD, status=JobStatus.RUNNING, claimed_by="w-gone")
    Job.objects.create(task_path=BOOM, status=JobStatus.FAILED)  # not a gauge: the counters'
    start_worker("--queue", "low", "--grace-period", "0")
    wait_until(lambda: Worker.objects.exists())
    Worker.objects.create(
        id="w-gone",
        hostname="h",
        pid=1,
        queues=["default"],
        last_heartbeat_at=now - timedelta(hours=1),
    )

    samples = scrape()

    assert queue_gauge(samples, "dbtasks_jobs_ready", "emails") == 2
    assert queue_gauge(samples, "dbtasks_jobs_due", "emails") == 1
    assert 90 <= queue_gauge(samples, "dbtasks_oldest_due_job_age_seconds", "emails") < 150
    assert queue_gauge(samples, "dbtasks_oldest_due_job_age_seconds", "low") == 0
    assert queue_gauge(samples, "dbtasks_jobs_running", "default") == 1
    assert queue_gauge(samples, "dbtasks_live_workers", "low") == 1
    assert queue_gauge(samples, "dbtasks_live_workers", "default") == 0
    assert samples[("dbtasks_workers", (("backend", "default"), ("state", "live")))] == 1
    assert samples[("dbtasks_workers", (("backend", "default"), ("state", "dead")))] == 1
    assert not [key for key in samples if "failed" in key[0]]


def test_run_and_wait_histograms_put_each_job_in_its_bucket():
    now = queries.database_now(connection)
    tasks.sleep_then_record.enqueue(0.3, "timed")
    late = tasks.record_run.using(run_after=now - timedelta(seconds=100)).enqueue("late")
    assert run_worker().returncode == 0

    samples = scrape()
    run = "dbtasks_job_run_duration_seconds"
    timed = {"queue": "default", "task": tasks.sleep_then_record.module_path}
    assert bucket(samples, run, "0.25", **timed) == 0 and bucket(samples, run, "0.5", **timed) == 1
    assert (
        0.3 <= samples[(f"{run}_sum", tuple(sorted({"backend": "default", **timed}.items())))] < 0.5
    )
    wait = "dbtasks_job_wait_seconds"
    assert bucket(samples, wait, "60.0", queue="default") == 1  # the prompt one
    assert bucket(samples, wait, "300.0", queue="default") == 2  # and the one due 100 s ago
    assert Job.objects.get(pk=late.id).status == JobStatus.SUCCESSFUL


def test_hostile_names_in_labels_are_escaped_and_read_back():
    queue = 'we"ird\nqueue\\'
    Job.objects.create(task_path=RECORD, queue_name=queue)
    samples = scrape()
    assert queue_gauge(samples, "dbtasks_jobs_ready", queue) == 1


@given(
    accept=st.text(max_size=60) | st.sampled_from(["application/openmetrics-text", "*/*", ""]),
    query=st.text(max_size=20),
)
@example(accept="application/openmetrics-text; version=1.0.0", query="")
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_accept_header_or_query_string_gets_the_metrics(accept, query):
    response = Client().get("/metrics", {"q": query}, headers={"accept": accept})
    assert response.status_code == 200
    body = response.content.decode()
    assert "# TYPE dbtasks_jobs_ready gauge" in body
    if response["Content-Type"].startswith("application/openmetrics-text"):
        assert body.endswith("# EOF\n")
    else:
        assert list(text_string_to_metric_families(body))


# The worker's side: one statement per heartbeat, kept through an outage


@pytest.mark.turns
def test_a_heartbeat_adds_the_tallies_of_any_number_of_jobs_in_one_statement():
    def heartbeat(loop) -> list[str]:
        loop.maintenance.heartbeat_due = 0.0
        with CaptureQueriesContext(connection) as captured:
            loop.maintenance.run_due(time.monotonic(), lambda: [])
        return [query["sql"].split()[0] for query in captured.captured_queries]

    tasks.noop.enqueue_many([((), {})] * 100)
    with started() as loop:
        warm(loop)
        statements_of(loop)
        statements_of(loop)  # the 100 are written
        hundred = heartbeat(loop)
        idle = heartbeat(loop)  # nothing new counted: nothing added
    assert hundred == ["UPDATE", "UPDATE", "UPDATE", "INSERT", "SELECT"]
    assert idle == ["UPDATE", "UPDATE", "UPDATE", "SELECT"]
    counted = Tally.objects.get(metric="outcome", key="successful")
    assert counted.value == 100 and counted.task_path == tasks.noop.module_path


@pytest.mark.turns
def test_tallies_the_database_did_not_take_are_added_at_the_next_heartbeat():
    def refuse(execute, sql, params, many, context):
        if sql.startswith(f"INSERT INTO {queries.TALLY}"):
            raise OperationalError("the server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    tasks.noop.enqueue_many([((), {})] * 3)
    with started() as loop:
        warm(loop)
        statements_of(loop)
        statements_of(loop)
        assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 3
        loop.maintenance.heartbeat_due = 0.0
        with connection.execute_wrapper(refuse):
            loop.maintenance.run_due(time.monotonic(), lambda: [])
        assert not Tally.objects.exists()
        loop.guard.retry_at = 0.0
        loop.maintenance.heartbeat_due = 0.0
        loop.maintenance.run_due(time.monotonic(), lambda: [])
    assert Tally.objects.get(metric="outcome", key="successful").value == 3
    assert Tally.objects.get(metric="run_seconds", key="0.005").value == 3


def test_the_tally_table_only_grows_under_concurrent_upserts():
    rows = [(("default", "default", ADD, tallies.OUTCOME, tallies.SUCCESSFUL), 1.0)]
    for _ in range(5):
        queries.add_tallies(connection, rows)
    queries.add_tallies(connection, [])
    assert Tally.objects.get().value == 5


# The scrape's statement on 1,000,000 finished jobs


@pytest.mark.slow
@postgres_only
def test_the_scrape_reads_what_waits_and_runs_never_the_history():
    _fill(1_000_000, status="SUCCESSFUL")
    _fill(5_000, status="FAILED")
    _fill(50_000)
    _fill(50_000, run_after="now() + interval '1 day'")
    _fill(200, status="RUNNING")
    _analyze()
    sql = queries.QUEUE_COUNTS_POSTGRES
    with connection.cursor() as cursor:
        plan = plans.explain(cursor, sql, {"settled": False}, "ANALYZE, BUFFERS, FORMAT JSON")

    shown = json.dumps(plan, indent=1)
    found = [node for node in plans.nodes(plan)]
    assert not [n for n in found if n["Node Type"] == "Seq Scan"], shown
    assert plans.uses_index(plan, "dbtasks_job_ready") and plans.uses_index(
        plan, "dbtasks_job_running_lease"
    ), shown
    assert plans.index_rows_read(plan, "dbtasks_job_ready") <= 100_000, shown
    assert plans.index_rows_read(plan, "dbtasks_job_running_lease") <= 200, shown
    # The failed rows' part is planned but never run: the metrics leave it to the counters.
    assert all(
        n.get("Actual Loops", 0) == 0
        for n in found
        if n.get("Index Name") not in (None, "dbtasks_job_ready", "dbtasks_job_running_lease")
    ), shown
    print(f"\nscrape statement: {plan['Actual Total Time']:.1f} ms on 1,105,200 rows")
