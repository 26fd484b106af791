"""The schedule admin: create and edit cron schedules of registered tasks, fire them now.

The task is a choice among the registered tasks, never free text: a schedule
can only ever run a function decorated with ``@task``. Validation is
``Schedule.clean()``'s (cron expression, timezone, task, priority, queue,
arguments), shown at each field; ``args``/``kwargs`` text that is not JSON
(NaN, nesting too deep to parse) is refused by the form fields below. A stored
schedule that has broken since is shown as such, with the reason, in the list
and on its page, and "Fire now" refuses it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import cron, registry
from ..models import Job, JobStatus, Schedule, UnreadableJSON
from ..scheduler import CODE_OWNED_FIELDS, InvalidSchedule, Scheduler
from ..serialization import MAX_NESTING, deeper_than
from . import display, setup
from .lookups import DeclaredLookupsOnly
from .times import TimesWithSeconds


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; write a number, or null for no value.")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number (it would be Infinity, not JSON).")
    return number


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits())
        raise ValueError(
            f"a number of {len(text)} digits is too long; pass it as a string."
        ) from None


def _too_deep() -> ValidationError:
    return ValidationError(
        f"Lists or dicts are nested more than {MAX_NESTING} levels deep: pass a flatter "
        "structure, or store the data (a model, a file) and pass its key.",
        code="invalid",
    )


class ArgumentsField(forms.JSONField):
    """A schedule's ``args`` as JSON text; empty means none, NaN and deep nesting are refused."""

    empty: Callable[[], Any] = list

    def __init__(self, **kwargs: Any) -> None:
        # Typed text is parsed strictly below; the model's lenient decoder is for stored rows.
        super().__init__(**{**kwargs, "decoder": None})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableJSON):
            return InvalidJSONInput(value)  # the stored text, as it is, to be rewritten
        return super().prepare_value(value)

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return super().to_python(value)
        if value in self.empty_values:
            return self.empty()
        if not isinstance(value, str) or isinstance(value, JSONString):
            return super().to_python(value)  # already parsed
        try:
            converted = json.loads(
                value,
                parse_constant=_refuse_constant,
                parse_float=_finite_float,
                parse_int=_whole_number,
            )
        except json.JSONDecodeError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        except RecursionError:
            raise _too_deep() from None
        except ValueError as error:
            raise ValidationError(str(error), code="invalid") from None
        if deeper_than(converted, MAX_NESTING):
            raise _too_deep()
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except (ValueError, RecursionError):  # shown again as typed
            return InvalidJSONInput(data)


class KeywordArgumentsField(ArgumentsField):
    """A schedule's ``kwargs`` as JSON text; empty means none."""

    empty = dict


class ScheduleForm(forms.ModelForm):
    task_path = forms.ChoiceField(
        label="Task", help_text="One of the registered tasks (functions decorated with @task)."
    )

    class Meta:
        model = Schedule
        fields = [
            "name",
            "task_path",
            "enabled",
            "cron",
            "timezone",
            "missed",
            "args",
            "kwargs",
            "queue_name",
            "priority",
        ]
        field_classes = {"args": ArgumentsField, "kwargs": KeywordArgumentsField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "task_path" not in self.fields:
            return  # read-only: declared in code
        choices = [("", "---------")] + [(p, p) for p in registry.registered_paths()]
        current = self.instance.task_path if self.instance.pk else ""
        if current and current not in registry.registered_paths():
            # Shown so the page tells the truth; clean() refuses to save it.
            choices.append((current, f"{current} (not registered)"))
        field = self.fields["task_path"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices


class ScheduleAdmin(DeclaredLookupsOnly, TimesWithSeconds, admin.ModelAdmin):
    form = ScheduleForm
    list_display = [
        "name",
        "task_path",
        "cron",
        "description",
        "timezone",
        "state",
        "next_fire_at",
        "last_fire_at",
        "last_outcome",
        "health",
    ]
    list_filter = ["enabled", "from_code"]
    search_fields = ["name", "task_path"]
    actions = ["enable_schedules", "disable_schedules", "fire_now"]
    readonly_fields = [
        "origin",
        "state",
        "health",
        "description",
        "upcoming",
        "next_fire_at",
        "last_fire_at",
        "last_outcome",
        "jobs_link",
        "from_code",
    ]
    fieldsets = [
        (None, {"fields": ["name", "origin", "task_path", "enabled", "state", "health"]}),
        ("When", {"fields": ["cron", "timezone", "missed", "description", "upcoming"]}),
        ("Call", {"fields": ["args", "kwargs", "queue_name", "priority"]}),
        ("History", {"fields": ["last_fire_at", "last_outcome", "jobs_link", "from_code"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """For people who may only look, the arguments are shown redacted like a job's."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        swap = {"args": "args_display", "kwargs": "kwargs_display"}
        return [
            (
                title,
                {
                    **options,
                    "fields": [
                        swap.get(f, f) if isinstance(f, str) else f for f in options["fields"]
                    ],
                },
            )
            for title, options in fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Code owns what a ``periodic()`` schedule runs and when; the admin, only ``enabled``."""
        fields = [*super().get_readonly_fields(request, obj), "args_display", "kwargs_display"]
        if obj is not None and obj.from_code:
            fields += ["name", *CODE_OWNED_FIELDS]
        return fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Record who turned a schedule off here, so that syncs from code leave it off."""
        if "enabled" in form.changed_data:
            obj.disabled_by = "" if obj.enabled else request.user.get_username()
            obj.disabled_at = None if obj.enabled else timezone.now()
        super().save_model(request, obj, form, change)

    @admin.display(description="declared")
    def origin(self, schedule: Schedule) -> str:
        if not schedule.from_code:
            return "In the admin: every field is edited here."
        return (
            "In code, with periodic(): the task, expression, timezone, arguments, queue, "
            "priority and missed-fire policy come from code and are written at each worker "
            "start (change them there). Enabled is decided here: a schedule disabled here "
            "stays off across worker starts until it is enabled here."
        )

    @admin.display(description="state")
    def state(self, schedule: Schedule) -> SafeString | str:
        """On, or off and why: by whom in the admin, or because code no longer declares it."""
        if schedule.enabled:
            return "On"
        if schedule.disabled_by_operator:
            return format_html(
                '<span title="{}">Off: disabled in the admin by {}, {}</span>',
                schedule.disabled_at.isoformat() if schedule.disabled_at else "",
                schedule.disabled_by or "an operator",
                display.ago(schedule.disabled_at),
            )
        if schedule.from_code:
            return "Off: no longer declared in code (on again if it is declared again)"
        return "Off"

    @admin.display(description="args")
    def args_display(self, schedule: Schedule) -> SafeString:
        return display.pretty_json(
            registry.redact_job(schedule.task_path, schedule.args, schedule.kwargs)[0]
        )

    @admin.display(description="kwargs")
    def kwargs_display(self, schedule: Schedule) -> SafeString:
        return display.pretty_json(
            registry.redact_job(schedule.task_path, schedule.args, schedule.kwargs)[1]
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """Each schedule with its last fire's job: one index lookup per row, same query."""
        last_job = Job.objects.filter(
            schedule=OuterRef("pk"), scheduled_for=OuterRef("last_fire_at")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_job_id=Subquery(last_job.values("pk")[:1]),
                last_job_status=Subquery(last_job.values("status")[:1]),
            )
        )

    @admin.display(description="health")
    def health(self, schedule: Schedule) -> SafeString | str:
        """ "OK", or "Broken" and why: what the scheduler checks before each fire."""
        if schedule.pk is None:
            return "–"
        reason = schedule.broken_reason()
        if not reason:
            return "OK"
        return format_html(
            '<span class="dbtasks-status dbtasks-status-broken" style="background:{}">'
            "Broken</span> {} (not fired until fixed)",
            display.STATUS_COLOURS["FAILED"],
            reason,
        )

    @admin.display(description="description")
    def description(self, schedule: Schedule) -> str:
        if not schedule.cron:
            return "–"
        return schedule.describe()

    @admin.display(description="next 5 fire times")
    def upcoming(self, schedule: Schedule) -> SafeString | str:
        """In the schedule's timezone (how its cron reads), in UTC, and how soon."""
        try:
            times = schedule.upcoming(5)
            zone = cron.zone(schedule.timezone)
        except cron.InvalidCron as error:
            return str(error)
        rows = (
            (
                t.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
                t.strftime("%Y-%m-%d %H:%M:%S UTC"),
                display.ago(t),
            )
            for t in times
        )
        return format_html(
            '<ol class="dbtasks-upcoming">{}</ol>',
            format_html_join("", "<li>{} &middot; {} &middot; {}</li>", rows),
        )

    @admin.display(description="last fire's outcome")
    def last_outcome(self, schedule: Any) -> SafeString | str:
        job_id = getattr(schedule, "last_job_id", None)
        status = getattr(schedule, "last_job_status", None)
        if job_id is None or status is None:
            return "–"
        url = reverse("admin:django_dbtasks_job_change", args=[job_id])
        badge = display.status_badge(status, str(JobStatus(status).label))
        return format_html('<a href="{}">#{}</a> {}', url, job_id, badge)

    @admin.display(description="jobs")
    def jobs_link(self, schedule: Schedule) -> SafeString | str:
        if schedule.pk is None:
            return "–"
        url = reverse("admin:django_dbtasks_job_changelist") + f"?schedule__exact={schedule.pk}"
        return format_html('<a href="{}">Jobs of this schedule</a>', url)

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Any], enabled: bool) -> None:
        by = request.user.get_username()
        changed = sum(schedule.set_enabled(enabled, by=by) for schedule in queryset)
        plural = "s" if changed != 1 else ""
        if enabled:
            self.message_user(request, f"Enabled {changed} schedule{plural}.")
            return
        self.message_user(
            request,
            f"Disabled {changed} schedule{plural}. They stay off, even those declared in "
            "code, until enabled here.",
        )

    @admin.action(description="Fire selected schedules now", permissions=["change"])
    def fire_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        scheduler = Scheduler(setup.database())
        for schedule in queryset:
            try:
                job = scheduler.fire_now(schedule)
            except (LookupError, InvalidSchedule) as error:
                self.message_user(request, f"{schedule.name}: {error}", messages.ERROR)
                continue
            url = reverse("admin:django_dbtasks_job_change", args=[job.pk])
            self.message_user(
                request,
                format_html('{}: enqueued job <a href="{}">#{}</a>.', schedule.name, url, job.pk),
                messages.SUCCESS,
            )
