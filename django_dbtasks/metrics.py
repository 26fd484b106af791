"""Prometheus metrics: a collector over the job, worker and tally tables, and a view.

Optional: it needs ``prometheus_client`` (``pip install
"django-dbtasks-queue[metrics]"``), the only module that imports it. Mount the
view in the project's URLconf, ``path("metrics", django_dbtasks.metrics.view)``,
or register ``TaskCollector()`` in a registry of your own. Each scrape reads:

- the gauges from the job table in one statement (``queries.queue_counts``
  without the failed rows: READY and RUNNING rows only, through their partial
  indexes, so its cost follows what waits and runs, never the history);
- the workers, by the database's clock (``inspection.workers``);
- the counters and histograms from ``Tally``: running totals the workers add
  to with each heartbeat (``tallies``), one row per alias, queue, task and
  outcome or bucket. They only grow, so a counter never goes down, whichever
  worker on whichever host counted it and whatever ``prunetasks`` deleted.

docs/operations.md lists every metric with its type and labels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from django.db import connections
from django.http import HttpRequest, HttpResponse

from . import inspection, queries, tallies
from .backend import DatabaseBackend

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as missing:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "django_dbtasks.metrics needs prometheus_client: "
        'pip install "django-dbtasks-queue[metrics]"'
    ) from missing

QUEUE_LABELS = ["backend", "queue"]
TASK_LABELS = ["backend", "queue", "task"]

Series = dict[tuple[str, ...], dict[str, float]]


class TaskCollector(Collector):
    """Every metric of every configured ``DatabaseBackend``, read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        gauges = _gauges()
        counts: Series = defaultdict(dict)
        runs: Series = defaultdict(dict)
        waits: Series = defaultdict(dict)
        for database, aliases in _databases().items():
            snapshot = inspection.take(
                database,
                inspection.configured_queues_by_alias(aliases),
                inspection.liveness_seconds(aliases),
                aliases=[backend.alias for backend in aliases],
                settled=False,
                jobs=False,
            )
            _add_snapshot(gauges, snapshot)
            wanted = {backend.alias for backend in aliases}
            for alias, queue, task, metric, key, value in queries.read_tallies(
                connections[database]
            ):
                if alias not in wanted:
                    continue
                if metric == tallies.OUTCOME:
                    counts[(alias, queue, task)][key] = value
                elif metric == tallies.RUN_SECONDS:
                    runs[(alias, queue, task)][key] = value
                elif metric == tallies.WAIT_SECONDS:
                    waits[(alias, queue)][key] = value
        yield from gauges.values()
        yield _outcomes(counts)
        yield _histogram(
            "dbtasks_job_run_duration_seconds",
            "How long attempts ran, from the task's call to its return or raise.",
            TASK_LABELS,
            runs,
        )
        yield _histogram(
            "dbtasks_job_wait_seconds",
            "How long jobs waited from due (run_after) to claimed by a worker, per attempt.",
            QUEUE_LABELS,
            waits,
        )


def _databases() -> dict[str, list[DatabaseBackend]]:
    """The configured backends, by the database alias their job table lives in."""
    found: dict[str, list[DatabaseBackend]] = defaultdict(list)
    for backend in inspection.database_backends():
        found[backend.config.DATABASE].append(backend)
    return found


def _gauges() -> dict[str, GaugeMetricFamily]:
    def gauge(name: str, documentation: str, labels: list[str] = QUEUE_LABELS) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=labels)

    return {
        "ready": gauge("dbtasks_jobs_ready", "Jobs READY, due or deferred to later."),
        "due": gauge("dbtasks_jobs_due", "Jobs READY and due now: waiting for a worker."),
        "running": gauge("dbtasks_jobs_running", "Jobs RUNNING in a worker."),
        "oldest": gauge(
            "dbtasks_oldest_due_job_age_seconds",
            "How long the oldest due job has waited (0 when none is due).",
        ),
        "live": gauge("dbtasks_live_workers", "Live workers serving the queue."),
        "workers": gauge(
            "dbtasks_workers",
            "Worker processes by state: live, or dead (silent for a LEASE, not stopped).",
            ["backend", "state"],
        ),
    }


def _add_snapshot(gauges: dict[str, GaugeMetricFamily], snapshot: inspection.Snapshot) -> None:
    for queue in snapshot.queues:
        labels = [queue.alias, queue.name]
        gauges["ready"].add_metric(labels, queue.ready)
        gauges["due"].add_metric(labels, queue.due)
        gauges["running"].add_metric(labels, queue.running)
        gauges["oldest"].add_metric(labels, max(0.0, queue.oldest_due_wait or 0.0))
        gauges["live"].add_metric(labels, len(queue.workers))
    states: dict[tuple[str, str], int] = defaultdict(int)
    for alias in {queue.alias for queue in snapshot.queues} | {w.alias for w in snapshot.workers}:
        states[(alias, "live")] = states[(alias, "dead")] = 0
    for worker in snapshot.workers:
        states[(worker.alias, worker.state)] += 1
    for (alias, state), count in sorted(states.items()):
        gauges["workers"].add_metric([alias, state], count)


def _outcomes(counts: Series) -> CounterMetricFamily:
    """Every outcome of every series seen, 0 where none happened yet (so rates start at 0)."""
    family = CounterMetricFamily(
        "dbtasks_jobs_finished",
        "Attempts that ended, by outcome: successful, retried (failed, will run again), "
        "failed (for good), cancelled (before it started), rescued (its worker died; it "
        "runs again) and poison (failed after killing its worker too often).",
        labels=[*TASK_LABELS, "outcome"],
    )
    for labels, values in sorted(counts.items()):
        for outcome in tallies.OUTCOMES:
            family.add_metric([*labels, outcome], values.get(outcome, 0.0))
    return family


def _histogram(name: str, documentation: str, labels: list[str], series: Series) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, stored in sorted(series.items()):
        buckets, total = [], 0.0
        for bound, key in zip(tallies.BUCKETS, tallies.BUCKET_KEYS, strict=True):
            total += stored.get(key, 0.0)
            buckets.append((floatToGoString(bound), total))
        family.add_metric(list(values), buckets, sum_value=stored.get("sum", 0.0))
    return family


#: The registry ``view`` serves: this app's metrics only (the process's own are the
#: web server's business; register ``TaskCollector()`` in yours to serve both).
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(TaskCollector())


def view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus's text format (or OpenMetrics, if the scraper asks)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
