"""OpenTelemetry spans around ``enqueue()`` and each run, the trace context kept in the job row.

The only module that imports ``opentelemetry`` (the optional ``otel`` extra,
``opentelemetry-api``). Where nothing is traced it costs nothing one can
measure: without the package, ``enqueueing()`` and ``running()`` return the
shared ``NOT_TRACED`` after reading one module global; with it, ``enqueueing()``
also reads the current span (one context variable), and ``running()`` asks
whether a tracer provider (an SDK) is configured. Only a job enqueued inside a
trace stores a context, with its own INSERT (see ``queries``); every other job
is inserted by the statement it always was.

The spans follow OpenTelemetry's messaging conventions (docs/tracing.md
lists their names and attributes). ``enqueue``/``enqueue_many`` is a PRODUCER
span, and the context the configured propagator writes for it (W3C
``traceparent`` and ``tracestate`` by default) goes into ``Job.trace_context``.
Each attempt's ``run`` is a CONSUMER span whose parent is that context, started
in the pool process that runs the task, so the task's own spans nest under it.
An attempt that never ends there (killed for its timeout, a crash, a row that
cannot run) is recorded by the worker's main process, which knows when it
started and why it ended. Nothing here touches the database or decides an outcome.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from importlib import metadata
from types import TracebackType
from typing import Any

from . import registry
from .claimed import ClaimedJob
from .logfmt import Fields

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, StatusCode
except ImportError:  # the otel extra is not installed: nothing is traced
    AVAILABLE = False
else:
    AVAILABLE = True

logger = logging.getLogger("django_dbtasks.tracing")

#: ``messaging.system``: this library, as the conventions name a system not in their list.
SYSTEM = "django_dbtasks"
#: Attributes of OpenTelemetry's messaging conventions.
MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"
#: Ours, in the ``messaging.{system}`` namespace the conventions reserve for a system.
TASK = "messaging.django_dbtasks.task"
BACKEND = "messaging.django_dbtasks.backend"
ATTEMPT = "messaging.django_dbtasks.attempt"
MAX_ATTEMPTS = "messaging.django_dbtasks.max_attempts"
OUTCOME = "messaging.django_dbtasks.outcome"
DUPLICATE = "messaging.django_dbtasks.duplicate"

#: Seconds a pool process waits, as it exits, for its last spans to be exported.
FLUSH_TIMEOUT = 2.0


class SpanScope:
    """What ``enqueue()`` or a run holds when nothing is traced: it does nothing."""

    #: The carrier to store in the job row (None: store nothing).
    context: dict[str, str] | None = None

    def __enter__(self) -> SpanScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def enqueued(self, job_id: Any, duplicate: bool = False) -> None:
        """Note the job ``enqueue()`` wrote (or found: a duplicate unique job)."""

    def enqueued_many(self, count: int) -> None:
        """Note how many jobs ``enqueue_many()`` wrote."""

    def ended(self, job: ClaimedJob, error: dict[str, Any] | None) -> None:
        """Note how the attempt ended (``error`` None: it succeeded)."""


NOT_TRACED = SpanScope()


def enqueueing(task: Any, backend: str, operation: str = "enqueue") -> SpanScope:
    """A span around an enqueue, whose context the job rows keep; only inside a trace.

    Outside any trace (no current span) the job stores no context: there is
    no trace for its run to join. Without an SDK (API only), the caller's
    context is stored as it is, so a trace passing through still joins up.
    """
    if not AVAILABLE or not trace.get_current_span().get_span_context().is_valid:
        return NOT_TRACED
    return _Enqueueing(task, backend, operation)


def running(job: ClaimedJob) -> SpanScope:
    """The span of one attempt, run in this process; only where an SDK records spans."""
    if not AVAILABLE:
        return NOT_TRACED
    tracer = _tracer()
    if tracer is None:
        return NOT_TRACED
    return _Running(tracer, job)


def record_attempt(job: ClaimedJob, error: dict[str, Any], duration: float) -> None:
    """Record the span of a failed attempt that no pool process could end.

    The process was killed (its timeout, a crash) or never ran the job (a
    row that cannot run, a job that could not be handed over): the worker's
    main process records it, from ``duration`` seconds ago to now.
    """
    if not AVAILABLE:
        return
    tracer = _tracer()
    if tracer is None:
        return
    end = time.time_ns()
    try:
        span = tracer.start_span(
            _run_name(job),
            context=_parent(job),
            kind=SpanKind.CONSUMER,
            attributes=_run_attributes(job),
            start_time=end - int(max(duration, 0.0) * 1e9),
        )
        _end_run(span, job, error, end)
    except Exception:  # the worker goes on: the outcome is written all the same
        _tracing_failed("run", job)


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Export the spans this process still holds, before it exits.

    A pool process ends with ``os._exit()``, as every process
    ``multiprocessing`` forks does, so the SDK's own ``atexit`` flush never
    runs there: without this, a ``BatchSpanProcessor`` would lose the spans of
    its last few seconds.
    """
    if not AVAILABLE:
        return
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is None:
        return
    try:
        force_flush(int(timeout * 1000))
    except Exception:
        logger.exception("%s", Fields(pid=os.getpid(), event="spans could not be flushed"))


# Spans


class _Enqueueing(SpanScope):
    def __init__(self, task: Any, backend: str, operation: str) -> None:
        self.task = task
        self.backend = backend
        self.operation = operation
        self.span: Any = None
        self.token: Any = None

    def __enter__(self) -> SpanScope:
        try:
            self._start()
        except Exception:  # a broken span processor must not lose the job: no span
            _tracing_failed("enqueue")
            self.span, self.context = None, None
        return self

    def _start(self) -> None:
        tracer = _tracer()
        if tracer is not None:
            self.span = tracer.start_span(
                f"{self.operation} {self.task.module_path}",
                kind=SpanKind.PRODUCER,
                attributes={
                    MESSAGING_SYSTEM: SYSTEM,
                    OPERATION_TYPE: "send",
                    OPERATION_NAME: self.operation,
                    DESTINATION: self.task.queue_name,
                    TASK: self.task.module_path,
                    BACKEND: self.backend,
                },
            )
            self.token = otel_context.attach(trace.set_span_in_context(self.span))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.context = carrier or None

    def enqueued(self, job_id: Any, duplicate: bool = False) -> None:
        if self.span is not None:
            self.span.set_attribute(MESSAGE_ID, str(job_id))
            if duplicate:
                self.span.set_attribute(DUPLICATE, True)

    def enqueued_many(self, count: int) -> None:
        if self.span is not None:
            self.span.set_attribute(BATCH_COUNT, count)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.span is None:
            return
        otel_context.detach(self.token)
        try:
            if exc is not None:
                self.span.record_exception(exc)
                self.span.set_attribute(ERROR_TYPE, _class_path(type(exc)))
                self.span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            self.span.end()
        except Exception:
            _tracing_failed("enqueue")


class _Running(SpanScope):
    def __init__(self, tracer: Any, job: ClaimedJob) -> None:
        self.tracer = tracer
        self.job = job
        self.pid = os.getpid()
        self.span: Any = None
        self.token: Any = None

    def __enter__(self) -> SpanScope:
        try:
            self.span = self.tracer.start_span(
                _run_name(self.job),
                context=_parent(self.job),
                kind=SpanKind.CONSUMER,
                attributes=_run_attributes(self.job),
            )
        except Exception:  # a broken span processor must not fail the job: no span
            _tracing_failed("run", self.job)
            return self
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def ended(self, job: ClaimedJob, error: dict[str, Any] | None) -> None:
        # A copy forked by the task returns from it too: the attempt is not its to end.
        if self.span is None or os.getpid() != self.pid:
            return
        try:
            _end_run(self.span, job, error, None)
        except Exception:
            _tracing_failed("run", job)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.token is not None:
            otel_context.detach(self.token)


def _run_name(job: ClaimedJob) -> str:
    return f"run {job.task_path}"


def _run_attributes(job: ClaimedJob) -> dict[str, Any]:
    attributes = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "run",
        DESTINATION: job.queue_name,
        MESSAGE_ID: str(job.id),
        TASK: job.task_path,
        ATTEMPT: job.attempts,
        MAX_ATTEMPTS: job.max_attempts,
    }
    if job.worker_ids and isinstance(job.worker_ids[-1], str):
        attributes[CLIENT_ID] = job.worker_ids[-1]  # the worker of this claim
    return attributes


def _parent(job: ClaimedJob) -> Any:
    """The context the run's span is a child of: the enqueuer's, else the current one."""
    if not job.trace_context:
        return None
    try:
        return propagate.extract(job.trace_context, otel_context.get_current())
    except Exception:  # a propagator that chokes on a stored value: as if there were none
        return None


def _end_run(span: Any, job: ClaimedJob, error: dict[str, Any] | None, end: int | None) -> None:
    """End an attempt's span with its outcome; a failure is an error, with its traceback."""
    span.set_attribute(OUTCOME, _outcome(job, error))
    if error is not None:
        message = error.get("message") or error.get("exception_class_path") or ""
        span.add_event(
            "exception",
            {
                "exception.type": error.get("exception_class_path", ""),
                "exception.message": message,
                "exception.stacktrace": error.get("traceback", ""),
            },
        )
        span.set_attribute(ERROR_TYPE, error.get("exception_class_path", ""))
        span.set_status(StatusCode.ERROR, message)
    span.end(end_time=end)


def _outcome(job: ClaimedJob, error: dict[str, Any] | None) -> str:
    """What the attempt comes to, spelled as the worker's log line spells it.

    The rule of ``queries.fail_many``: a failed attempt is retried while the
    row has attempts left and its task is registered.
    """
    if error is None:
        return "SUCCESSFUL"
    if job.attempts < job.max_attempts and registry.lookup(job.task_path) is not None:
        return "RETRY"
    return "FAILED"


def _tracing_failed(span: str, job: ClaimedJob | None = None) -> None:
    """Log a tracing error (an exporter's or a span processor's): the job goes on without it."""
    job_id = job.id if job is not None else None
    logger.exception("%s", Fields(job=job_id, event="tracing failed", span=span))


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# The tracer


def _tracer() -> Any:
    """This library's tracer, or None while no SDK is configured (nothing would be recorded)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return None
    return _tracer_of(provider)


@functools.lru_cache(maxsize=4)
def _tracer_of(provider: Any) -> Any:
    return provider.get_tracer(SYSTEM, _version())


def _version() -> str | None:
    try:
        return metadata.version("django-dbtasks-queue")
    except metadata.PackageNotFoundError:
        return None  # run from a checkout
