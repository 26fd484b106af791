"""The worker admin: every ``runtasks`` process, live or dead, and what it runs now.

Whether a worker is live, dead or stopped is ``WorkerQuerySet``'s to say (in
``models``): the list, its filter and the overview ask it, and it measures
heartbeats with the database's clock, as the rescue of a dead worker's jobs does.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from ..inspection import queue_names
from ..models import Job, JobStatus, Worker, WorkerQuerySet, WorkerState
from . import display, setup
from .lookups import CheckedChangeList, DeclaredLookupsOnly
from .times import TimesWithSeconds

#: Badge colours per state.
STATE_COLOURS = {
    WorkerState.LIVE: "#2e7d32",
    WorkerState.STOPPED: "#6d6d6d",
    WorkerState.DEAD: "#c62828",
}

DETAIL_FIELDS = [
    "id",
    "state_column",
    "hostname",
    "pid",
    "queues_column",
    "concurrency",
    "started_at",
    "last_heartbeat_at",
    "heartbeat_ago",
    "stopped_at",
    "running_jobs",
]


class StateFilter(admin.SimpleListFilter):
    """Live, stopped or dead, by ``WorkerQuerySet``'s rules (the database's clock)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in WorkerState.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workers = cast(WorkerQuerySet, queryset)
        if self.value() == WorkerState.LIVE:
            return workers.live(setup.liveness_seconds())
        if self.value() == WorkerState.STOPPED:
            return workers.stopped()
        if self.value() == WorkerState.DEAD:
            return workers.dead(setup.liveness_seconds())
        return queryset


class WorkerAdmin(DeclaredLookupsOnly, TimesWithSeconds, admin.ModelAdmin):
    list_display = [
        "id",
        "state_column",
        "hostname",
        "pid",
        "queues_column",
        "concurrency",
        "current_jobs",
        "started_at",
        "last_heartbeat_at",
        "heartbeat_ago",
    ]
    list_filter = [StateFilter, "hostname"]
    search_fields = ["id", "hostname"]
    fields = tuple(DETAIL_FIELDS)
    readonly_fields = tuple(DETAIL_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # workers write their own rows

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # dead workers' rows are removed after WORKER_RETENTION

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CheckedChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """Each worker with its state and its RUNNING job count (the small RUNNING index)."""
        running = (
            Job.objects.running()
            .filter(claimed_by=OuterRef("id"))
            .order_by()
            .values("claimed_by")
            .annotate(count=Count("*"))
            .values("count")
        )
        workers = cast(WorkerQuerySet, super().get_queryset(request))
        return workers.with_state(setup.liveness_seconds()).annotate(
            running=Coalesce(Subquery(running), 0)
        )

    @admin.display(description="state")
    def state_column(self, worker: Any) -> SafeString:
        """The ``state`` that ``get_queryset`` annotates: the database decides, by its clock."""
        value = worker.state
        colour = STATE_COLOURS[value]
        return format_html(
            '<span class="dbtasks-status" style="background:{}">{}</span>', colour, value
        )

    @admin.display(description="queues")
    def queues_column(self, worker: Worker) -> str:
        if queue_names(worker) == worker.queues:
            return ", ".join(worker.queues)
        return f"malformed: {display.json_text(worker.queues)}"

    @admin.display(description="heartbeat")
    def heartbeat_ago(self, worker: Worker) -> str:
        return display.ago(worker.last_heartbeat_at)

    @admin.display(description="current jobs")
    def current_jobs(self, worker: Any) -> SafeString:
        query = urlencode({"status__exact": JobStatus.RUNNING, "claimed_by": worker.id})
        url = f"{reverse('admin:django_dbtasks_job_changelist')}?{query}"
        return format_html('<a href="{}">{} running</a>', url, getattr(worker, "running", 0))

    @admin.display(description="running jobs")
    def running_jobs(self, worker: Worker) -> SafeString | str:
        jobs = Job.objects.running().filter(claimed_by=worker.id).order_by("id")
        rows = [
            (
                reverse("admin:django_dbtasks_job_change", args=[job.pk]),
                job.pk,
                job.task_path,
                display.progress_bar(job.progress, job.progress_message),
            )
            for job in jobs.only("id", "task_path", "progress", "progress_message")
        ]
        if not rows:
            return "none"
        return format_html(
            '<ul class="dbtasks-running">{}</ul>',
            format_html_join("", '<li><a href="{}">#{} {}</a> {}</li>', rows),
        )
