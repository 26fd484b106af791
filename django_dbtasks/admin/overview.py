"""The overview page: per queue, what waits, what runs, what finished and failed lately;
per task, the last hour's throughput, failure rate and run times (p50, p95).

Every number comes from a query bounded by an index (see ``queries``): what
waits, runs and failed from ``inspection`` (the snapshot ``manage.py tasks``
reads too: READY rows through ``dbtasks_job_ready``, RUNNING rows through
``dbtasks_job_running_lease``, the failed and cancelled totals through
``dbtasks_job_failed``), the last hour through a range on
``dbtasks_job_finished``. Successful jobs are counted for the last hour only:
counting every successful job ever run would read the whole table. Live
workers are the snapshot's, by the database's clock. The per-task figures
are one query over the same range, which reads at most ``TASK_SAMPLE``
rows however busy the hour was (``queries.task_stats``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import django
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .. import alerts, inspection, queries
from . import display, setup

#: Minutes the chart and the "last hour" figures cover.
WINDOW = 60
#: The most finished jobs the per-task figures read: a busy hour costs no more.
TASK_SAMPLE = 20_000
#: Seconds between two reloads of the page (``?refresh=N`` changes it, 0 stops it).
REFRESH = 10


@dataclass
class Bar:
    """One minute of the chart: stacked successful (below) and failed (above) jobs."""

    x: int
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass
class QueueStats:
    name: str
    #: The TASKS alias; the page names it only when the project has several.
    alias: str = "default"
    label: str = ""
    ready: int = 0
    due: int = 0
    oldest_wait: float | None = None
    running: int = 0
    failed_total: int = 0
    cancelled_total: int = 0
    successful_window: int = 0
    failed_window: int = 0
    cancelled_window: int = 0
    ok_per_minute: list[int] = field(default_factory=lambda: [0] * WINDOW)
    failed_per_minute: list[int] = field(default_factory=lambda: [0] * WINDOW)
    workers: list[inspection.WorkerSnapshot] = field(default_factory=list)

    @property
    def failure_rate(self) -> float | None:
        """Failed among the jobs that ran to an end in the window (cancelled ones never ran)."""
        ran = self.successful_window + self.failed_window
        return None if ran == 0 else self.failed_window / ran

    @property
    def failure_rate_text(self) -> str:
        rate = self.failure_rate
        return "–" if rate is None else f"{rate:.1%}"

    @property
    def recent_rate(self) -> float:
        """Jobs finished per minute over the last 5 whole minutes (the current one is partial)."""
        minutes = range(1, 6)
        return sum(self.ok_per_minute[m] + self.failed_per_minute[m] for m in minutes) / 5

    @property
    def oldest_wait_text(self) -> str:
        return "–" if self.oldest_wait is None else display.duration(max(0.0, self.oldest_wait))


@dataclass
class TaskStats:
    """One task's jobs finished in the window: how many, how many failed, how long they ran."""

    path: str
    alias: str = "default"
    label: str = ""
    successful: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None
    #: Seconds since the oldest of these jobs finished.
    oldest: float = 0.0
    #: Minutes the figures cover: the window, or less when the sample was full.
    minutes: float = WINDOW

    @property
    def finished(self) -> int:
        return self.successful + self.failed

    @property
    def per_minute(self) -> float:
        return self.finished / self.minutes if self.minutes else 0.0

    @property
    def failure_rate_text(self) -> str:
        return "–" if not self.finished else f"{self.failed / self.finished:.1%}"

    @property
    def p50_text(self) -> str:
        return display.duration(self.p50)

    @property
    def p95_text(self) -> str:
        return display.duration(self.p95)


@dataclass
class TaskFigures:
    """The per-task table, and how much of the window it covers."""

    tasks: list[TaskStats]
    #: Whether the window held more finished jobs than ``TASK_SAMPLE`` (the figures are
    #: then those of the newest ones, over ``minutes``).
    sampled: bool
    minutes: float


def collect_tasks() -> TaskFigures:
    """The per-task figures of the window: one query (``queries.task_stats``)."""
    rows = queries.task_stats(setup.connection(), WINDOW, TASK_SAMPLE)
    found = [
        TaskStats(path, alias, successful=ok, failed=failed, p50=p50, p95=p95, oldest=oldest)
        for (alias, path), ok, failed, p50, p95, oldest in rows
    ]
    sampled = sum(entry.finished for entry in found) >= TASK_SAMPLE
    minutes: float = WINDOW
    if sampled:
        minutes = max(max(entry.oldest for entry in found) / 60, 1 / 60)
    several = len({entry.alias for entry in found}) > 1
    for entry in found:
        entry.minutes = minutes
        entry.label = f"{entry.alias} / {entry.path}" if several else entry.path
    found.sort(key=lambda entry: (-entry.failed, -entry.finished, entry.alias, entry.path))
    return TaskFigures(found, sampled, minutes)


def snapshot() -> inspection.Snapshot:
    """The queues and workers the page shows, read once (see ``inspection``)."""
    return inspection.take(
        setup.database(),
        setup.configured_queues_by_alias(),
        setup.liveness_seconds(),
        jobs=False,  # the page counts running jobs per queue, not per worker
    )


def collect(now: inspection.Snapshot | None = None) -> list[QueueStats]:
    """The overview's numbers: one ``QueueStats`` per configured or seen alias and queue."""
    now = snapshot() if now is None else now
    stats: dict[tuple[str, str], QueueStats] = {}

    def queue(key: tuple[str, str]) -> QueueStats:
        return stats.setdefault(key, QueueStats(name=key[1], alias=key[0]))

    for seen in now.queues:
        entry = queue((seen.alias, seen.name))
        entry.ready, entry.due, entry.oldest_wait = seen.ready, seen.due, seen.oldest_due_wait
        entry.running, entry.workers = seen.running, seen.workers
        entry.failed_total, entry.cancelled_total = seen.failed, seen.cancelled
    for key, status, minutes_ago, count in queries.finished_per_minute(setup.connection(), WINDOW):
        entry = queue(key)
        minute = min(max(minutes_ago, 0), WINDOW - 1)
        if status == "SUCCESSFUL":
            entry.successful_window += count
            entry.ok_per_minute[minute] += count
        elif status == "FAILED":
            entry.failed_window += count
            entry.failed_per_minute[minute] += count
        else:
            entry.cancelled_window += count
    several = len({alias for alias, _ in stats}) > 1
    for (alias, name), entry in stats.items():
        entry.label = f"{alias} / {name}" if several else name
    return [stats[key] for key in sorted(stats)]


def chart(entry: QueueStats, width: int = 600, height: int = 120) -> dict[str, Any]:
    """Geometry of the per-minute SVG bar chart, oldest minute on the left."""
    step = width // WINDOW
    peak = max(
        (
            ok + failed
            for ok, failed in zip(entry.ok_per_minute, entry.failed_per_minute, strict=True)
        ),
        default=0,
    )
    scale = height / peak if peak else 0.0
    bars = []
    for column in range(WINDOW):
        minutes_ago = WINDOW - 1 - column
        ok = entry.ok_per_minute[minutes_ago]
        failed = entry.failed_per_minute[minutes_ago]
        ok_height, failed_height = ok * scale, failed * scale
        when = "this minute" if minutes_ago == 0 else f"{minutes_ago} min ago"
        bars.append(
            Bar(
                x=column * step,
                ok_y=height - ok_height,
                ok_height=ok_height,
                failed_y=height - ok_height - failed_height,
                failed_height=failed_height,
                title=f"{when}: {ok} successful, {failed} failed",
            )
        )
    return {"bars": bars, "width": width, "height": height, "bar_width": step - 1, "peak": peak}


def refresh_seconds(value: str) -> int:
    """``?refresh=N``: whole seconds under an hour, 0 to stop; anything else is ignored."""
    if value.isascii() and value.isdigit() and int(value) < 3600:
        return int(value)
    return REFRESH


def warn(request: HttpRequest, now: inspection.Snapshot) -> None:
    """The health rules' problems as the admin's warning messages, above the page."""
    limits = alerts.wait_limits(inspection.database_backends())
    for problem in alerts.default_problems(now, limits):
        messages.warning(request, problem.message, fail_silently=True)


def overview_view(model_admin: Any) -> Callable[[HttpRequest], HttpResponse]:
    """The view, bound to the job admin (its permissions, its admin site)."""

    def view(request: HttpRequest) -> HttpResponse:
        if not model_admin.has_view_permission(request):
            raise PermissionDenied
        now = snapshot()
        queues = collect(now)
        warn(request, now)
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Task queues",
            "opts": model_admin.model._meta,
            "queues": [(entry, chart(entry)) for entry in queues],
            "task_figures": collect_tasks(),
            "sample": TASK_SAMPLE,
            "window": WINDOW,
            "refresh": refresh_seconds(request.GET.get("refresh", "")),
            "liveness": setup.liveness_seconds(),
            # Django 6 writes breadcrumbs as a list, 5.2 as a line of links.
            "list_breadcrumbs": django.VERSION >= (6, 0),
        }
        request.current_app = model_admin.admin_site.name
        return TemplateResponse(request, "admin/django_dbtasks/overview.html", context)

    return view
