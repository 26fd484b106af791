"""The job admin: a fast list over millions of rows, a read-only detail, retry and cancel.

Speed on a large table comes from three choices. The list never counts the
whole table: the paginator counts at most ``CappedPaginator.cap`` rows (and
``show_full_result_count`` is off). The filters offer fixed choices (statuses,
configured queues, registered tasks), so drawing them reads no rows, and the
status filter is served by the partial indexes (``dbtasks_job_ready``,
``dbtasks_job_running_lease``, ``dbtasks_job_failed``). The list loads no
tracebacks or return values, and sorts only by id (the primary key).

The query string may filter only by the declared filters (see ``lookups``):
a lookup such as ``?args__1__startswith=`` would read a sensitive argument
back one character at a time. Rows of the wrong shape (written by SQL, or
by an older or buggy version) are shown as stored, marked "malformed".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Substr
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import queries, registry
from ..conf import shown
from ..errors import LatestError
from ..models import Job, JobStatus
from ..sensitive import REDACTED
from . import attempts, display, operations, setup
from .lookups import CheckedChangeList, DeclaredLookupsOnly
from .overview import overview_view
from .times import TimesWithSeconds

RETRY_RULE = "only failed or cancelled jobs can be retried"
CANCEL_RULE = "only ready jobs can be cancelled; a running job is not interrupted"


class CappedPaginator(Paginator):
    """Counts at most ``cap`` matching rows: enough for page links, never a full scan.

    ``COUNT(*)`` of a million rows takes longer than the page itself; a count
    over ``LIMIT cap + 1`` stops early. Beyond the cap, the last pages are
    reached by filtering or searching, and the list says "more than".
    """

    cap = 10_000
    #: Whether more rows matched than were counted (set by ``count``).
    capped = False

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        # Ids only: the list's annotations (the latest error) would be computed per row.
        counted = object_list.values("pk")[: self.cap + 1].count()
        self.capped = counted > self.cap
        return min(counted, self.cap)


class AtLeast(int):
    """A count that stopped at its cap: shown as "10,000+" wherever the admin prints it."""

    def __str__(self) -> str:
        return f"{int(self):,}+"


class JobChangeList(CheckedChangeList):
    """Prints a capped count as "10,000+" (results, pagination, "select all")."""

    def get_ordering_field(self, field_name: Any) -> Any:
        """Only ``sortable_by`` columns: ``?o=`` never sorts the whole table by another."""
        if field_name not in (self.sortable_by or ()):
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        """Django's; an ``?o=`` naming no sortable column keeps the default order (newest first)."""
        ordering = list(super().get_ordering(request, queryset))
        return ordering or list(self.model_admin.get_ordering(request))

    def get_filters(self, request: HttpRequest) -> Any:
        """Django's; a schedule id no column can hold is an invalid lookup (SQLite fails on it)."""
        found = super().get_filters(request)
        low, high = setup.connection().ops.integer_field_range("BigAutoField")
        for value in self.get_filters_params().get("schedule__exact", []):
            try:
                number = int(value)
            except ValueError:
                continue  # Django's own conversion refuses it
            if not low <= number <= high:
                raise IncorrectLookupParameters(f"schedule__exact: {value} is out of range.")
        return found

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if getattr(self.paginator, "capped", False):
            self.result_count = AtLeast(self.result_count)


class FixedChoicesFilter(admin.SimpleListFilter):
    """A filter whose choices come from configuration, so drawing it reads no job rows."""

    field = ""

    def choices_from_configuration(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.choices_from_configuration()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class QueueFilter(FixedChoicesFilter):
    """The queues named in TASKS."""

    title = "queue"
    parameter_name = "queue"
    field = "queue_name"

    def choices_from_configuration(self) -> list[str]:
        return list(setup.configured_queues())


class AliasFilter(FixedChoicesFilter):
    """The TASKS aliases of this backend: jobs of aliases sharing the database, apart."""

    title = "alias"
    parameter_name = "backend"
    field = "backend"

    def choices_from_configuration(self) -> list[str]:
        return setup.configured_aliases()


class TaskFilter(FixedChoicesFilter):
    """The registered tasks, by path (no ``SELECT DISTINCT`` over the table)."""

    title = "task"
    parameter_name = "task"
    field = "task_path"

    def choices_from_configuration(self) -> list[str]:
        return registry.registered_paths()


#: An exception class path as ``exception_path`` writes it: ``module.Qualified.Name``.
EXCEPTION_PATH = re.compile(r"(?:[^\W\d]\w*|<locals>)(?:\.(?:[^\W\d]\w*|<locals>))+")


class LatestErrorFilter(admin.SimpleListFilter):
    """Jobs by their latest error's exception class, as the error column shows it.

    The choices come from ``queries.latest_error_classes`` (one index probe
    per class, at most ``most``), the rows from the same index: neither reads
    jobs that never failed. A value that cannot be a class path is ignored,
    with a message saying what the filter takes.
    """

    title = "latest error"
    parameter_name = "error"
    #: Classes listed at most (the rarest beyond it are reached by their URL).
    most = 50

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        value = self.value()
        # A NUL character gets the "invalid lookup" answer of every filter (CheckedChangeList),
        # a redirect: a message here would show on the page after it.
        if value is not None and "\x00" not in value and not self.is_class_path(value):
            del self.used_parameters[self.parameter_name]
            messages.warning(
                request,
                f"The error filter was ignored: {shown(value)} is not an exception class "
                "path. Pick a class in the filter, or give its dotted path, for example "
                "?error=builtins.ValueError.",
            )

    @staticmethod
    def is_class_path(value: str) -> bool:
        return len(value) <= 255 and EXCEPTION_PATH.fullmatch(value) is not None

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        paths = queries.latest_error_classes(setup.connection(), self.most)
        value = self.value()
        if value is not None and value not in paths and self.is_class_path(value):
            paths.append(value)  # a class beyond the first ``most`` stays selectable
        return [(path, display.exception_label(path)) for path in paths]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.alias(_error_class=LatestError("exception_class_path")).filter(
            _error_class=value
        )


class EnqueuedFilter(admin.DateFieldListFilter):
    """Django's date filter; a date typed without a time zone is read in the current one.

    Django's own links carry an offset. A hand-typed ``?enqueued_at__gte=2024-05-01``
    would reach the query naive, so it is read as a form's date-time field
    reads it; a value that is no date gets the admin's "invalid lookup" answer.
    """

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        given: dict[str, Any] = self.used_parameters
        try:
            self.used_parameters = {
                name: [self.moment(value) for value in values] for name, values in given.items()
            }
        except (ValidationError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error
        return cast(QuerySet[Any], super().queryset(request, queryset))

    @staticmethod
    def moment(value: str) -> datetime | None:
        """The time a parameter names; ``OverflowError`` if it is not one in UTC (year 0)."""
        when = forms.DateTimeField().to_python(value)
        if when is not None:
            when.astimezone(UTC)  # the database is written in UTC (SQLite converts, and fails)
        return when


def is_job_id(text: str) -> bool:
    """Whether ``text`` reads as a job id: ASCII digits only (``"²".isdigit()`` is true)."""
    return text.isascii() and text.isdigit()


class JobAdmin(DeclaredLookupsOnly, TimesWithSeconds, admin.ModelAdmin):
    # What triage reads first comes first, narrow enough for 1366 px with both sidebars
    # open (see styles.html); the rest follows and scrolls.
    list_display = [
        "id",
        "task",
        "status_column",
        "error_column",
        "finished_column",
        "duration_column",
        "attempts_column",
        "queue_column",
        "worker_column",
        "enqueued_column",
        "started_column",
        "priority",
        "call_column",
    ]
    list_display_links = ["id", "task"]

    def get_list_display(self, request: HttpRequest) -> Any:
        """The alias column appears once the project has several aliases of this backend."""
        columns = list(super().get_list_display(request))
        if len(setup.configured_aliases()) > 1:
            columns.insert(columns.index("queue_column"), "backend")
        return columns

    list_filter = [
        "status",
        AliasFilter,
        QueueFilter,
        TaskFilter,
        LatestErrorFilter,
        ("enqueued_at", EnqueuedFilter),
    ]
    # A worker's "running jobs" link, and a schedule's "jobs of this schedule".
    linked_lookups = frozenset({"claimed_by", "schedule__exact"})
    search_fields = ["task_path"]  # shows the box; get_search_results does the searching
    search_help_text = "A job id, part of a task path, or text in the arguments."
    sortable_by = ["id"]
    ordering = ["-id"]
    list_per_page = 50
    show_full_result_count = False
    # Facet counts would be one aggregate over the whole table per filter choice.
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedPaginator
    actions = ["retry_jobs", "cancel_jobs"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "task_path",
                    "status_column",
                    "backend",
                    "queue_name",
                    "priority",
                    "schedule_link",
                    "scheduled_for",
                    "unique_key_display",
                ]
            },
        ),
        ("Call", {"fields": ["args_display", "kwargs_display"]}),
        ("Outcome", {"fields": ["return_value_display", "errors_display"]}),
        (
            "Times",
            {
                "fields": [
                    "enqueued_at",
                    "run_after",
                    "started_at",
                    "last_attempted_at",
                    "finished_at",
                    "duration_column",
                ]
            },
        ),
        (
            "Attempts and workers",
            {
                "fields": [
                    "attempts_column",
                    "crashes",
                    "workers_display",
                    "claimed_by",
                    "lease_expires_at",
                ]
            },
        ),
    ]
    # Every field is read-only: jobs change through the actions only.
    readonly_fields = flatten_fieldsets(fieldsets)

    # Read-only, except through the actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # finished jobs are removed by ``prunetasks``

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The change permission allows the actions; a job's fields are never edited."""
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def can_operate(self, request: HttpRequest) -> bool:
        return super().has_change_permission(request)

    # The list

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "django_dbtasks_job_changelist":
            # Tracebacks and return values can be large; the list shows neither, only
            # the latest error's class and the start of its one-line message.
            queryset = queryset.defer("errors", "return_value", "lease_token").annotate(
                error_class=LatestError("exception_class_path"),
                error_message=Substr(LatestError("message"), 1, display.ERROR_PREVIEW_CHARS),
            )
        return queryset

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Search by id (exact), task path, or argument text, except sensitive tasks' arguments.

        Matching arguments of a task that declares ``sensitive`` would let a
        search guess a secret letter by letter, so those rows match only by
        id or path.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        if is_job_id(term.lstrip("#")):
            return queryset.filter(pk=int(term.lstrip("#"))), False
        queryset = queryset.annotate(
            _args_text=Cast("args", TextField()), _kwargs_text=Cast("kwargs", TextField())
        )
        in_arguments = Q(_args_text__icontains=term) | Q(_kwargs_text__icontains=term)
        matches = Q(task_path__icontains=term) | (
            in_arguments & ~Q(task_path__in=registry.sensitive_task_paths())
        )
        return queryset.filter(matches), False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra = {"overview_url": reverse("admin:django_dbtasks_job_overview")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    # Columns

    @admin.display(description="task", ordering="task_path")
    def task(self, job: Job) -> SafeString:
        return display.task_path(job.task_path)

    @admin.display(description="status")
    def status_column(self, job: Job) -> SafeString:
        badge = display.status_badge(job.status, job.get_status_display())
        if job.status != JobStatus.RUNNING:
            return badge
        return format_html(
            '{}<span class="dbtasks-status-detail">{}</span>',
            badge,
            display.progress_bar(job.progress, job.progress_message),
        )

    @admin.display(description="error")
    def error_column(self, job: Job) -> SafeString | str:
        """The latest error's class and the first line of its message (none: "–")."""
        path = getattr(job, "error_class", None)
        if path is None:
            return "–"
        return display.error_summary(
            path,
            getattr(job, "error_message", None) or "",
            earlier=job.status == JobStatus.SUCCESSFUL,
        )

    @admin.display(description="queue")
    def queue_column(self, job: Job) -> str:
        return job.queue_name

    @admin.display(description="enqueued")
    def enqueued_column(self, job: Job) -> SafeString | str:
        return display.moment(job.enqueued_at)

    @admin.display(description="started")
    def started_column(self, job: Job) -> SafeString | str:
        return display.moment(job.started_at)

    @admin.display(description="finished")
    def finished_column(self, job: Job) -> SafeString | str:
        return display.moment(job.finished_at)

    @admin.display(description="attempts")
    def attempts_column(self, job: Job) -> str:
        return f"{job.attempts} of {job.max_attempts}"

    @admin.display(description="duration")
    def duration_column(self, job: Job) -> str:
        if job.status == JobStatus.READY:
            return "–"
        return display.duration(display.between(job.started_at, job.finished_at))

    @admin.display(description="worker")
    def worker_column(self, job: Job) -> SafeString | str:
        """Who holds the job now, else who ran it last."""
        ran: Any = job.worker_ids
        if job.claimed_by:
            return display.worker_links([job.claimed_by])
        if isinstance(ran, list) and ran:
            return display.worker_links(ran[-1:])
        return "–" if ran in (None, []) else "malformed"

    @admin.display(description="arguments")
    def call_column(self, job: Job) -> str:
        args, kwargs = registry.redact_job(job.task_path, job.args, job.kwargs)
        return display.short_call(args, kwargs, limit=40)

    # The detail page

    @admin.display(description="args")
    def args_display(self, job: Job) -> SafeString:
        args = registry.redact_job(job.task_path, job.args, job.kwargs)[0]
        if not isinstance(job.args, list):
            return display.malformed("args should be a JSON list", args)
        return display.pretty_json(args)

    @admin.display(description="kwargs")
    def kwargs_display(self, job: Job) -> SafeString:
        kwargs = registry.redact_job(job.task_path, job.args, job.kwargs)[1]
        if not isinstance(job.kwargs, dict):
            return display.malformed("kwargs should be a JSON object", kwargs)
        return display.pretty_json(kwargs)

    @admin.display(description="unique key")
    def unique_key_display(self, job: Job) -> str:
        """The key, except a sensitive task's: it is a function of the secret arguments."""
        if job.unique_key is None:
            return "–"
        if registry.is_sensitive(job.task_path):
            return f"{REDACTED} (the task has sensitive arguments)"
        return job.unique_key

    @admin.display(description="return value")
    def return_value_display(self, job: Job) -> SafeString | str:
        if job.status != JobStatus.SUCCESSFUL:
            return "–"
        return display.pretty_json(job.return_value)

    @admin.display(description="errors")
    def errors_display(self, job: Job) -> SafeString | str:
        """Where the failed attempts are (the top of the page), or the value if malformed."""
        errors: Any = job.errors
        if errors is None or errors == []:
            return "–"
        if not isinstance(errors, list):
            return display.malformed("errors should be a JSON list", errors)
        count = len(errors)
        return format_html(
            '<a href="#dbtasks-attempts">{} failed attempt{}</a>, shown at the top of this page.',
            count,
            "" if count == 1 else "s",
        )

    @admin.display(description="schedule")
    def schedule_link(self, job: Job) -> SafeString | str:
        if job.schedule_id is None:
            return "–"
        url = reverse("admin:django_dbtasks_schedule_change", args=[job.schedule_id])
        return format_html('<a href="{}">{}</a>', url, job.schedule)

    @admin.display(description="workers")
    def workers_display(self, job: Job) -> SafeString | str:
        ran: Any = job.worker_ids
        if ran is None or ran == []:
            return "–"
        if not isinstance(ran, list):
            return display.malformed("worker_ids should be a JSON list", ran)
        return display.worker_links(ran)

    # Actions

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        report = operations.retry(queryset)
        self._report(request, report, operations.describe(report, "Retried", RETRY_RULE))

    @admin.action(description="Cancel selected ready jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        report = operations.cancel(queryset, request.user.get_username())
        self._report(request, report, operations.describe(report, "Cancelled", CANCEL_RULE))

    def _report(self, request: HttpRequest, report: operations.ActionReport, text: str) -> None:
        skipped = report.skipped or report.conflicts or report.raced
        level = messages.WARNING if skipped else messages.SUCCESS
        if not report.changed:
            level = messages.ERROR if skipped else messages.INFO
        self.message_user(request, text, level)

    # One job's buttons and the overview page

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "overview/",
                wrap(overview_view(self)),
                name="django_dbtasks_job_overview",
            ),
            path("<int:object_id>/retry/", wrap(self.retry_view), name="django_dbtasks_job_retry"),
            path(
                "<int:object_id>/cancel/", wrap(self.cancel_view), name="django_dbtasks_job_cancel"
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._operate(request, object_id, "retry")

    def cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._operate(request, object_id, "cancel")

    def _operate(self, request: HttpRequest, object_id: int, act: str) -> HttpResponse:
        """The retry and cancel buttons of one job's page: the actions, for that job."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.can_operate(request):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=object_id)
        selection = Job.objects.filter(pk=job.pk)
        if act == "retry":
            report = operations.retry(selection)
            text = operations.describe(report, "Retried", RETRY_RULE)
        else:
            report = operations.cancel(selection, request.user.get_username())
            text = operations.describe(report, "Cancelled", CANCEL_RULE)
        self._report(request, report, text)
        return HttpResponseRedirect(reverse("admin:django_dbtasks_job_change", args=[job.pk]))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context["attempts"] = attempts.history(obj)
            context["attempts_title"] = attempts.title(obj, context["attempts"])
        operate = obj is not None and self.can_operate(request)
        context["can_retry"] = operate and obj.status in (JobStatus.FAILED, JobStatus.CANCELLED)
        context["can_cancel"] = operate and obj.status == JobStatus.READY
        return super().render_change_form(request, context, add, change, form_url, obj)
