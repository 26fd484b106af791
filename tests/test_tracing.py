"""OpenTelemetry: a span around enqueue() and one around each run, the context in the job row.

The SDK's ``InMemorySpanExporter`` records this process's spans (enqueue,
and runs through ``run_ready_jobs``); a real ``runtasks`` worker writes its
spans, and its pool processes', to a file (``tests/testapp/spans.py``). The
worker and ``enqueue()`` are also run with ``opentelemetry`` made unimportable.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.util._once import Once

from django_dbtasks import queries, tracing
from django_dbtasks.claimed import ClaimedJob
from django_dbtasks.exceptions import ArgumentNotSerializable
from django_dbtasks.models import Job, JobStatus
from django_dbtasks.testing import run_ready_jobs

from .conftest import ROOT, manage, run_worker, worker_env, worker_tracebacks
from .testapp import tasks

ADD = "tests.testapp.tasks.add"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _install(provider: TracerProvider | None) -> None:
    """Make ``provider`` the global one (OpenTelemetry's own tests reset it this way)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if provider is not None:
        trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """An SDK that records this process's spans in memory, as a site would configure one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)
    try:
        yield exporter
    finally:
        _install(None)
        provider.shutdown()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent else None


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


def stored_parent(job_id: object) -> tuple[str, str]:
    """The trace id and parent span id a job row's ``traceparent`` names."""
    context = Job.objects.get(pk=job_id).trace_context
    assert context is not None
    match = TRACEPARENT.match(context["traceparent"])
    assert match, context
    return match.group(1), match.group(2)


# In this process: enqueue, and runs through run_ready_jobs


@pytest.mark.django_db
def test_the_run_is_a_child_of_the_enqueue_inside_the_web_request(spans):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /tasks-test/add/", kind=SpanKind.SERVER) as request:
        response = Client().post("/tasks-test/add/", {"a": 2, "b": 3})
    job_id = response.json()["id"]
    [enqueue] = named(spans, "enqueue ")
    request_trace = f"{request.get_span_context().trace_id:032x}"
    request_span = f"{request.get_span_context().span_id:016x}"
    assert enqueue.name == f"enqueue {ADD}"
    assert enqueue.kind is SpanKind.PRODUCER
    assert hex_ids(enqueue)[0] == request_trace and parent_id(enqueue) == request_span
    assert dict(enqueue.attributes) == {
        "messaging.system": "django_dbtasks",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": "default",
        "messaging.message.id": str(job_id),
        "messaging.django_dbtasks.task": ADD,
        "messaging.django_dbtasks.backend": "default",
    }
    assert stored_parent(job_id) == hex_ids(enqueue)

    [job] = run_ready_jobs()
    assert job.status == JobStatus.SUCCESSFUL
    [run] = named(spans, "run ")
    assert run.name == f"run {ADD}" and run.kind is SpanKind.CONSUMER
    assert hex_ids(run)[0] == request_trace and parent_id(run) == hex_ids(enqueue)[1]
    attributes = dict(run.attributes)
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == str(job_id)
    assert attributes["messaging.destination.name"] == "default"
    assert attributes["messaging.django_dbtasks.attempt"] == 1
    assert attributes["messaging.django_dbtasks.max_attempts"] == 1
    assert attributes["messaging.django_dbtasks.outcome"] == "SUCCESSFUL"
    assert attributes["messaging.client.id"] == job.worker_ids[-1]
    assert run.status.status_code is StatusCode.UNSET and not run.events


@pytest.mark.django_db(transaction=True)  # aenqueue() writes from another thread
def test_delay_and_aenqueue_are_traced_as_enqueue(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        delayed = tasks.add.delay(1, 2)
        awaited = async_to_sync(tasks.add.aenqueue)(3, 4)
    spans_by_job = {
        span.attributes["messaging.message.id"]: span for span in named(spans, "enqueue ")
    }
    assert sorted(spans_by_job) == sorted([str(delayed.id), str(awaited.id)])
    for result in (delayed, awaited):
        assert stored_parent(result.id) == hex_ids(spans_by_job[str(result.id)])


@pytest.mark.django_db
def test_a_task_s_own_spans_nest_under_its_run(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        tasks.add.enqueue(1, 1)
    original = tasks.add.func

    def traced_add(a, b):
        with trace.get_tracer("tests").start_as_current_span("inside the task"):
            return original(a, b)

    object.__setattr__(tasks.add, "func", traced_add)
    try:
        run_ready_jobs()
    finally:
        object.__setattr__(tasks.add, "func", original)
    [inside] = named(spans, "inside the task")
    [run] = named(spans, "run ")
    assert parent_id(inside) == hex_ids(run)[1]


@pytest.mark.django_db
def test_outside_a_trace_nothing_is_stored_and_the_plain_insert_runs(spans):
    with CaptureQueriesContext(connection) as plain:
        result = tasks.add.enqueue(1, 2)
        tasks.add.enqueue_many([((3, 4), {})])
    assert Job.objects.get(pk=result.id).trace_context is None
    assert not spans.get_finished_spans()
    assert all("trace_context" not in query["sql"] for query in plain.captured_queries)
    with trace.get_tracer("tests").start_as_current_span("request"):
        with CaptureQueriesContext(connection) as traced:
            tasks.add.enqueue(1, 2)
            tasks.add.enqueue_many([((3, 4), {})])
    inserts = [q["sql"] for q in traced.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 2 and all("trace_context" in sql for sql in inserts)


@pytest.mark.parametrize("postgres", [True, False])
@pytest.mark.parametrize("rows", [1, 3])
def test_the_traced_inserts_differ_from_the_plain_ones_by_the_column_only(postgres, rows):
    value = ", %(trace_context)s::jsonb" if postgres else ", %(trace_context)s"

    def untraced(sql: str) -> str:
        return sql.replace(", trace_context", "").replace(value, "")

    for conflict in ["", queries.ON_CONFLICT_UNIQUE, queries.ON_CONFLICT_FIRE]:
        traced = queries._insert_sql(postgres, rows, conflict, True)
        assert traced.count(value) == rows
        assert untraced(traced) == queries._insert_sql(postgres, rows, conflict)
    batch, traced_batch = (
        (queries.INSERT_BATCH_POSTGRES, queries.INSERT_BATCH_TRACED_POSTGRES)
        if postgres
        else (queries.INSERT_BATCH_SQLITE, queries.INSERT_BATCH_TRACED_SQLITE)
    )
    assert "trace_context" not in batch and untraced(traced_batch) == batch


@pytest.mark.django_db
def test_enqueue_many_is_one_span_and_every_job_keeps_its_context(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
    [bulk] = named(spans, "enqueue_many ")
    assert bulk.attributes["messaging.batch.message_count"] == 3
    assert bulk.attributes["messaging.operation.name"] == "enqueue_many"
    assert "messaging.message.id" not in bulk.attributes
    assert {stored_parent(result.id) for result in results} == {hex_ids(bulk)}
    run_ready_jobs()
    runs = named(spans, "run ")
    assert sorted(run.attributes["messaging.message.id"] for run in runs) == sorted(
        str(result.id) for result in results
    )
    assert {parent_id(run) for run in runs} == {hex_ids(bulk)[1]}


@pytest.mark.django_db
def test_a_duplicate_unique_job_s_span_names_the_job_it_found(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        first = tasks.unique_per_user.enqueue(7)
        again = tasks.unique_per_user.enqueue(7)
    assert again.id == first.id
    new, duplicate = named(spans, "enqueue ")
    assert new.attributes["messaging.message.id"] == str(first.id)
    assert "messaging.django_dbtasks.duplicate" not in new.attributes
    assert duplicate.attributes["messaging.message.id"] == str(first.id)
    assert duplicate.attributes["messaging.django_dbtasks.duplicate"] is True
    assert stored_parent(first.id) == hex_ids(new)  # the row keeps its first enqueuer's


@pytest.mark.django_db
def test_each_attempt_is_a_span_with_its_number_and_outcome(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        result = tasks.flaky.enqueue("traced", failures=2)
    [job] = run_ready_jobs(retry_now=True)
    assert job.status == JobStatus.SUCCESSFUL
    [enqueue] = named(spans, "enqueue ")
    runs = named(spans, "run ")
    assert [run.attributes["messaging.django_dbtasks.attempt"] for run in runs] == [1, 2, 3]
    assert [run.attributes["messaging.django_dbtasks.outcome"] for run in runs] == [
        "RETRY",
        "RETRY",
        "SUCCESSFUL",
    ]
    assert {parent_id(run) for run in runs} == {hex_ids(enqueue)[1]}
    assert {run.attributes["messaging.message.id"] for run in runs} == {str(result.id)}
    for failed in runs[:2]:
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.attributes["error.type"] == "builtins.ConnectionError"
        [event] = failed.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "builtins.ConnectionError"
        assert "attempt" in event.attributes["exception.message"]
        assert "Traceback" in event.attributes["exception.stacktrace"]
    assert runs[2].status.status_code is StatusCode.UNSET and not runs[2].events


@pytest.mark.django_db
def test_a_failing_job_among_successful_ones_marks_its_own_span_only(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        tasks.add.enqueue(1, 1)
        failing = tasks.boom.enqueue("it broke")
        tasks.add.enqueue(2, 2)
        tasks.noop.enqueue()
    run_ready_jobs()
    runs = {run.attributes["messaging.message.id"]: run for run in named(spans, "run ")}
    assert len(runs) == 4
    broken = runs.pop(str(failing.id))
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.status.description == "ValueError: it broke"
    assert broken.attributes["messaging.django_dbtasks.outcome"] == "FAILED"
    assert [event.attributes["exception.type"] for event in broken.events] == [
        "builtins.ValueError"
    ]
    for run in runs.values():
        assert run.status.status_code is StatusCode.UNSET, run.name
        assert not run.events and "error.type" not in run.attributes
        assert run.attributes["messaging.django_dbtasks.outcome"] == "SUCCESSFUL"


@pytest.mark.django_db
def test_an_enqueue_that_raises_ends_its_span_with_the_error_and_writes_nothing(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        with pytest.raises(ArgumentNotSerializable):
            tasks.add.enqueue({1, 2}, 3)
    [enqueue] = named(spans, "enqueue ")
    assert enqueue.status.status_code is StatusCode.ERROR
    assert enqueue.attributes["error.type"] == "django_dbtasks.exceptions.ArgumentNotSerializable"
    assert [event.name for event in enqueue.events] == ["exception"]
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_without_an_sdk_the_caller_s_context_passes_through_the_row():
    """API only (no SDK): no span is made, but a trace that comes in goes on to the run."""
    _install(None)
    incoming = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(incoming)):
        result = tasks.add.enqueue(1, 2)
    assert stored_parent(result.id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    job = ClaimedJob(
        id=result.id,
        task_path=ADD,
        queue_name="default",
        priority=0,
        args=[1, 2],
        kwargs={},
        attempts=1,
        max_attempts=1,
        lease_token="token",
        enqueued_at=None,
        started_at=None,
        worker_ids=["w"],
        trace_context=Job.objects.get(pk=result.id).trace_context,
    )
    assert tracing.running(job) is tracing.NOT_TRACED  # no SDK in this process: no run span


# Hostile trace contexts: rows written some other way


HOSTILE_CONTEXTS = [
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a string, not an object
    ["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    {"traceparent": 42},
    {"traceparent": "00-zzzz-not-a-context"},
    {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
    {"traceparent": "00-" + "a" * 5000},
    {"tracestate": "x=" * 3000},
    # a context enqueue() never writes: far longer than any propagator's
    {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=" + "v" * 5000,
    },
    {"nested": {"deeper": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736"}}},
    7,
    True,
]


@pytest.mark.django_db
def test_hostile_trace_contexts_among_good_ones_run_every_job(spans):
    with trace.get_tracer("tests").start_as_current_span("request"):
        good = [tasks.add.enqueue(i, 1).id for i in range(3)]
        hostile = [tasks.add.enqueue(i, 2).id for i in range(len(HOSTILE_CONTEXTS))]
    for job_id, value in zip(hostile, HOSTILE_CONTEXTS, strict=True):
        Job.objects.filter(pk=job_id).update(trace_context=value)
    [enqueue, *_] = named(spans, "enqueue ")
    trace_id = hex_ids(enqueue)[0]
    spans.clear()
    jobs = run_ready_jobs()
    assert len(jobs) == len(good) + len(hostile)
    assert {job.status for job in jobs} == {JobStatus.SUCCESSFUL}
    runs = {run.attributes["messaging.message.id"]: run for run in named(spans, "run ")}
    for job_id in good:
        assert hex_ids(runs[str(job_id)])[0] == trace_id
        assert runs[str(job_id)].parent is not None
    for job_id in hostile:
        assert runs[str(job_id)].parent is None, Job.objects.get(pk=job_id).trace_context


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=12,
    )


#: What a JSON column can hold (PostgreSQL's jsonb refuses NUL characters).
STORABLE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
#: The innocent among the hostile: carriers as a propagator writes them.
CARRIERS = st.fixed_dictionaries(
    {"traceparent": st.from_regex(r"\A00-[0-9a-f]{32}-[0-9a-f]{16}-01\Z")},  # sampled
    optional={"tracestate": st.from_regex(r"\A[a-z]{1,8}=[a-z0-9]{1,16}\Z")},
)


@given(value=json_values(st.text()) | st.text() | CARRIERS)
def test_a_stored_trace_context_is_a_small_object_of_strings_or_nothing(value):
    for stored in (value, json.dumps(value)):  # decoded already (PostgreSQL's claim) or text
        carrier = queries._trace_context(stored)
        assert carrier is None or (
            isinstance(carrier, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in carrier.items())
            and sum(len(k) + len(v) for k, v in carrier.items()) <= queries.MAX_TRACE_CONTEXT_CHARS
        )


@pytest.mark.django_db
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values(STORABLE_TEXT) | CARRIERS)
def test_any_json_in_the_column_leaves_the_claim_whole(spans, value):
    Job.objects.all().delete()
    due = timezone.now() - timedelta(hours=1)  # before the transaction's clock (PostgreSQL)
    hostile = Job.objects.create(task_path=ADD, args=[1, 2], trace_context=value, run_after=due)
    Job.objects.create(task_path=ADD, args=[3, 4], run_after=due)
    spans.clear()
    claimed = queries.claim(connection, ["default"], 10, "worker-x", 30)
    assert len(claimed) == 2
    for job in claimed:
        assert not job.unrunnable
        if job.id == hostile.id and queries._trace_context(value) is not None:
            assert job.trace_context == value  # a small object of strings comes back as it was
        with tracing.running(job) as traced:  # and its span starts and ends, whatever it held
            traced.ended(job, None)
    assert len(named(spans, "run ")) == 2


# A real worker: spans from its pool processes and its main process


def run_traced_worker(path, *args: str) -> tuple[list[dict], int]:
    """Run ``runtasks --burst`` with an SDK that writes its spans to ``path``; return them,
    and the pid of the worker's main process."""
    finished = run_worker(
        *args, DBTASKS_TEST_IMPORT="tests.testapp.spans", DBTASKS_TEST_SPANS=str(path)
    )
    assert finished.returncode == 0, finished.stderr
    assert not worker_tracebacks(finished.stderr)
    main_pid = int(re.search(r"event=started host=\S+ pid=(\d+)", finished.stderr).group(1))
    return [json.loads(line) for line in path.read_text().splitlines()], main_pid


def by_job(records: list[dict]) -> dict[str, dict]:
    runs = {record["attributes"]["messaging.message.id"]: record for record in records}
    assert len(runs) == len(records), [record["name"] for record in records]
    return runs


@pytest.mark.django_db(transaction=True)
def test_a_worker_s_runs_are_children_of_the_request_that_enqueued_them(spans, tmp_path):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /tasks-test/add/", kind=SpanKind.SERVER) as request:
        added = Client().post("/tasks-test/add/", {"a": 2, "b": 3}).json()["id"]
        noop = tasks.noop.enqueue().id
        failing = tasks.boom.enqueue("it broke").id
        bulk = [result.id for result in tasks.add.enqueue_many([((i, 1), {}) for i in range(3)])]
    request_trace = f"{request.get_span_context().trace_id:032x}"
    enqueues = {span.attributes["messaging.message.id"]: span for span in named(spans, "enqueue ")}
    [bulk_span] = named(spans, "enqueue_many ")

    records, main_pid = run_traced_worker(tmp_path / "spans.jsonl", "--concurrency", "2")
    runs = by_job(records)
    assert sorted(runs) == sorted(str(job_id) for job_id in [added, noop, failing, *bulk])
    for job_id, record in runs.items():
        parent = enqueues.get(job_id, bulk_span)
        assert record["kind"] == "CONSUMER" and record["trace_id"] == request_trace
        assert record["parent_id"] == f"{parent.get_span_context().span_id:016x}", record["name"]
        assert record["pid"] != main_pid  # the pool process's, flushed as it exited
    for job_id in [added, noop, *bulk]:
        assert runs[str(job_id)]["status"] == "UNSET" and not runs[str(job_id)]["events"]
    broken = runs[str(failing)]
    assert broken["status"] == "ERROR" and broken["description"] == "ValueError: it broke"
    assert [event["attributes"]["exception.type"] for event in broken["events"]] == [
        "builtins.ValueError"
    ]


@pytest.mark.django_db(transaction=True)
def test_attempts_that_end_with_their_pool_process_are_recorded_by_the_main_process(
    spans, tmp_path
):
    with trace.get_tracer("tests").start_as_current_span("request"):
        crashing = tasks.exits_hard.enqueue().id
        overrunning = tasks.spins_forever.enqueue().id
    enqueues = {span.attributes["messaging.message.id"]: span for span in named(spans, "enqueue ")}

    records, main_pid = run_traced_worker(tmp_path / "spans.jsonl", "--concurrency", "2")
    runs = by_job(records)
    assert sorted(runs) == sorted([str(crashing), str(overrunning)])
    for job_id, record in runs.items():
        assert record["pid"] == main_pid
        assert record["parent_id"] == f"{enqueues[job_id].get_span_context().span_id:016x}"
        assert record["status"] == "ERROR"
        assert record["attributes"]["messaging.django_dbtasks.outcome"] == "FAILED"
        [event] = record["events"]
        assert event["attributes"]["exception.type"] == record["attributes"]["error.type"]
    crashed, overran = runs[str(crashing)], runs[str(overrunning)]
    assert crashed["attributes"]["error.type"] == "django_dbtasks.exceptions.WorkerCrashed"
    assert overran["attributes"]["error.type"] == "django_dbtasks.exceptions.JobTimedOut"
    assert overran["end"] - overran["start"] >= 0.9e9  # from when it started, not when it ended


NO_OTEL = """\
import atexit, os, sys

sys.modules["opentelemetry"] = None  # any "import opentelemetry..." raises ImportError


def report():
    tracing = sys.modules.get("django_dbtasks.tracing")
    with open(os.environ["DBTASKS_TEST_NO_OTEL_REPORT"], "a") as file:
        file.write(f"{tracing is not None and tracing.AVAILABLE}\\n")


atexit.register(report)
"""


@pytest.mark.django_db(transaction=True)
def test_enqueue_and_the_worker_work_unchanged_without_opentelemetry(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(NO_OTEL)
    report = tmp_path / "report.txt"
    env = {
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "DBTASKS_TEST_NO_OTEL_REPORT": str(report),
    }
    enqueue = (
        "from tests.testapp import tasks; "
        "print(tasks.add.enqueue(2, 3).id); "
        "print(tasks.add.enqueue_many([((1, 1), {})])[0].id)"
    )
    connection.close()
    shell = subprocess.run(
        manage("shell", "-c", enqueue),
        env=worker_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    ids = [int(line) for line in shell.stdout.split() if line.isdigit()]  # not Django's notes
    finished = run_worker(**env)
    assert finished.returncode == 0, finished.stderr
    assert not worker_tracebacks(finished.stderr)
    assert report.read_text().split() == ["False", "False"]  # the shell's, the worker's
    jobs = Job.objects.filter(pk__in=ids)
    assert [(job.status, job.return_value, job.trace_context) for job in jobs] == [
        (JobStatus.SUCCESSFUL, 2, None),
        (JobStatus.SUCCESSFUL, 5, None),
    ]
