"""A worker's spans, written as JSON lines to the file named by ``DBTASKS_TEST_SPANS``.

A test starts ``runtasks`` with ``DBTASKS_TEST_IMPORT=tests.testapp.spans``
(tests/settings.py imports it first thing), then reads the file. The SDK is
set up as docs/observability.md tells a site to: a ``BatchSpanProcessor``
configured before the worker forks its pool, so the pool processes' spans
reach the file only if the worker flushes them before those processes exit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


def as_record(span: ReadableSpan) -> dict:
    """What a test reads of a finished span: ids in hex, as ``traceparent`` writes them."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "description": span.status.description,
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
        "start": span.start_time,
        "end": span.end_time,
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per span; each export is one write, so processes can share it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(as_record(span)) + "\n" for span in spans)
        with open(self.path, "a") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(os.environ["DBTASKS_TEST_SPANS"])))
trace.set_tracer_provider(provider)
