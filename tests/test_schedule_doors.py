"""Every door a schedule comes in by checks it: full_clean() (so the admin), periodic(),
``manage.py schedules``; and a stored schedule that broke since never stops a worker.

Issue 13. Each refusal is checked with its message. The property-based tests
draw cron expressions (random text, and structured fields with an oracle
written apart from the code) and timezone names, and check that full_clean()
accepts exactly those that fire within the horizon, and that every accepted
schedule can be fired and described.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import time
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from django_dbtasks import cron, queries, scheduler
from django_dbtasks.compat import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django_dbtasks.models import Job, Schedule
from django_dbtasks.scheduler import BROKEN_RECHECK, InvalidSchedule, Scheduler, periodic
from django_dbtasks.serialization import MAX_NESTING

from .conftest import postgres_only, wait_until
from .shared_admin import staff, text
from .testapp import tasks

pytestmark = pytest.mark.django_db

ADD = tasks.add.module_path
ONE = tasks.returns_refused.module_path  # takes one argument: any value
RECORD = tasks.record_run.module_path
SCHEDULES = reverse("admin:django_dbtasks_schedule_changelist")
ADD_URL = reverse("admin:django_dbtasks_schedule_add")


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def refusal(**fields: Any) -> dict[str, list[str]]:
    """full_clean()'s messages, by field, for a schedule of ``fields`` (which must fail)."""
    values = {"name": "s", "task_path": ADD, "cron": "@daily", "args": [1, 2], **fields}
    with pytest.raises(ValidationError) as excinfo:
        Schedule(**values).full_clean()
    return excinfo.value.message_dict


def accepted(**fields: Any) -> Schedule:
    values = {"name": "s", "task_path": ADD, "cron": "@daily", "args": [1, 2], **fields}
    schedule = Schedule(**values)
    schedule.full_clean()
    return schedule


def break_by_sql(schedule: Schedule, **columns: Any) -> None:
    """Write ``columns`` around full_clean(), as SQL or a tzdata update would."""
    table = connection.ops.quote_name(Schedule._meta.db_table)
    sets = ", ".join(f"{connection.ops.quote_name(column)} = %s" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*columns.values(), schedule.pk])


def due_schedule(name: str, cron_text: str = "* * * * * */2", **fields: Any) -> Schedule:
    fields.setdefault("task_path", RECORD)
    fields.setdefault("args", [name])
    schedule = Schedule(name=name, cron=cron_text, **fields)
    schedule.save()
    return schedule


def make_due(schedule: Schedule, ago: dt.timedelta = dt.timedelta(seconds=3)) -> None:
    moment = queries.database_now(connection) - ago
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=moment, last_fire_at=None)


def tick() -> float | None:
    return Scheduler("default").tick()


@contextmanager
def rolled_back():
    """Each Hypothesis example starts from the same rows."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# full_clean(): what would fail later is refused now, with what to write instead


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "* * 30 2 * */2"])
def test_a_cron_that_never_fires_is_refused(expression):
    [message] = refusal(cron=expression)["cron"]
    assert f"{expression!r} never fires: no date matches it within the next 50 years" in message
    assert "30th of February" in message and "for example '0 3 * * *'" in message


def test_the_rarest_expression_fires_within_the_horizon():
    """A Monday on 29 February: every 28 to 40 years, well inside the 50-year horizon."""
    schedule = accepted(cron="0 0 * 2 1#5", timezone="UTC")
    [first] = schedule.upcoming(1)
    assert (first.month, first.day, first.weekday()) == (2, 29, 0)
    assert cron.HORIZON_YEARS == 50


@pytest.mark.parametrize(
    ("expression", "field", "kind"),
    [
        ("R * * * *", "'R'", "croniter's random value R"),
        ("0 r(0-5) * * *", "'r(0-5)'", "croniter's random value R"),
        ("* * * * * R/5", "'R/5'", "croniter's random value R"),
        ("H * * * *", "'H'", "a hashed value H"),
        ("H/15 * * * *", "'H/15'", "a hashed value H"),
    ],
)
def test_random_and_hashed_fields_are_refused(expression, field, kind):
    [message] = refusal(cron=expression)["cron"]
    assert message.startswith(f"{expression!r} uses {field}, {kind}")
    assert "write the value you want instead" in message


def test_aliases_are_read_in_any_case_the_same_everywhere():
    after = dt.datetime(2026, 10, 24, 22, tzinfo=dt.UTC)  # Berlin falls back the next night
    for alias in ("@yearly", "@hourly", "@daily"):
        shouted = alias.upper()
        accepted(cron=shouted)
        assert cron.describe(shouted) == cron.describe(alias) != shouted
        assert cron.fire_times(shouted, "Europe/Berlin", after, limit=8) == cron.fire_times(
            alias, "Europe/Berlin", after, limit=8
        )
    # @HOURLY follows real time through the repeated hour, as @hourly does.
    hours = cron.fire_times("@HOURLY", "Europe/Berlin", after, limit=4)
    assert [t.hour for t in hours] == [23, 0, 1, 2]
    assert cron.describe("@YEARLY") == "At 00:00, on day 1 of the month, only in January"


@pytest.mark.parametrize("priority", [999, TASK_MAX_PRIORITY + 1, TASK_MIN_PRIORITY - 1, -32768])
def test_a_priority_outside_the_task_range_is_refused(priority):
    [message] = refusal(priority=priority)["priority"]
    assert message == (
        f"{priority} is not a task priority: use a whole number from {TASK_MIN_PRIORITY} to "
        f"{TASK_MAX_PRIORITY} (higher runs first), or leave it blank for the task's own."
    )


def test_the_task_priority_range_is_accepted():
    for priority in (TASK_MIN_PRIORITY, 0, TASK_MAX_PRIORITY, None):
        accepted(priority=priority)


@pytest.mark.parametrize(
    ("args", "kind"),
    [({"a": 1}, "an object"), ("1, 2", "a string"), (None, "null"), (3, "a number")],
)
def test_args_must_be_a_list(args, kind):
    [message] = refusal(args=args)["args"]
    assert message == (
        'args must be a JSON list of positional arguments, such as [1, "report"] ([] for none), '
        f"not {kind}."
    )


@pytest.mark.parametrize(("kwargs", "kind"), [([1], "a list"), (None, "null"), ("x", "a string")])
def test_kwargs_must_be_an_object(kwargs, kind):
    [message] = refusal(kwargs=kwargs)["kwargs"]
    assert message == (
        'kwargs must be a JSON object of keyword arguments, such as {"days": 30} ({} for none), '
        f"not {kind}."
    )


def test_kwargs_keys_must_be_strings():
    [message] = refusal(args=[], kwargs={1: 2})["kwargs"]
    assert (
        message == "kwargs keys must be strings, the names of the task's arguments; 1 is a number."
    )


def test_a_queue_the_backend_does_not_serve_is_refused():
    [message] = refusal(queue_name="nope")["queue_name"]
    assert message == (
        "'nope' is not a queue of the task's backend 'default' (its QUEUES: default, emails, "
        "low): use one of those, or leave it blank for the task's own queue ('default')."
    )
    accepted(queue_name="emails")


@pytest.mark.parametrize(
    ("args", "kwargs", "field", "expected"),
    [
        ([float("nan")], {}, "args", "positional argument 0 is "),
        ([1], {"b": float("inf")}, "kwargs", "keyword argument 'b' is "),
        ([nested(MAX_NESTING + 50)], {}, "args", "nested more than 100 levels deep"),
        ([nested(5000)], {}, "args", "nested more than 100 levels deep"),
        ([], {"x": nested(5000)}, "kwargs", "nested more than 100 levels deep"),
        (["a\x00b"], {}, "args", "has the character U+0000 (NUL)"),
        ([{1, 2}], {}, "args", "is a set (builtins.set), which is not JSON serialisable"),
    ],
)
def test_arguments_the_job_table_cannot_store_are_refused(args, kwargs, field, expected):
    messages = refusal(task_path=ONE, args=args, kwargs=kwargs)[field]
    [message] = [m for m in messages if m.startswith(f"Cannot enqueue {ONE}: ")]
    assert expected in message
    assert set(messages) - {message} <= {"Value must be valid JSON."}  # Django's, for a set
    if "float" in expected or " is " in expected:
        assert "not JSON serialisable" in message


def test_null_as_an_argument_value_is_stored_and_passed():
    schedule = accepted(task_path=ONE, args=[None])
    schedule.save()
    job = Scheduler("default").fire_now(schedule)
    job.refresh_from_db()
    assert job.args == [None]


@pytest.mark.parametrize(
    "name", ["a" * 300, "Europe", "", "/etc/passwd", "Europe//Berlin", "../x", "UTC ", "a\x00"]
)
def test_a_timezone_zoneinfo_cannot_load_is_refused(name):
    messages = refusal(timezone=name)["timezone"]
    assert (
        f"{name!r} is not a known IANA timezone; use a name like 'UTC', 'Europe/Berlin' or "
        "'America/New_York'."
    ) in messages


# The admin form: the same rules, and no server error for odd JSON


@pytest.fixture
def root():
    return staff("root", superuser=True)


def post(client, **fields: str):
    data = {
        "name": "door",
        "task_path": ONE,
        "cron": "0 * * * *",
        "timezone": "UTC",
        "args": "[1]",
        "kwargs": "{}",
        "missed": "LATEST",
        "enabled": "on",
        **fields,
    }
    return client.post(ADD_URL, data)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"args": "[NaN]"}, "NaN is not JSON; write a number, or null for no value."),
        ({"kwargs": '{"a": -Infinity}'}, "-Infinity is not JSON"),
        ({"args": "[1e400]"}, "1e400 is too large for a number"),
        ({"args": "[" + "9" * 5000 + "]"}, "a number of 5000 digits is too long"),
        ({"args": "[" * 5000 + "]" * 5000}, "nested more than 100 levels deep"),
        ({"args": "[" * 150 + "]" * 150}, "nested more than 100 levels deep"),
        ({"args": "null"}, "args must be a JSON list of positional arguments"),
        ({"kwargs": "null"}, "kwargs must be a JSON object of keyword arguments"),
        ({"args": '"x"'}, "args must be a JSON list of positional arguments"),
        ({"args": '["a\\u0000"]'}, "has the character U+0000 (NUL)"),
        ({"args": "[1", "kwargs": "{}"}, "Enter a valid JSON."),
        ({"priority": "999"}, "999 is not a task priority: use a whole number from -100 to 100"),
        ({"queue_name": "nope"}, "&#x27;nope&#x27; is not a queue of the task&#x27;s backend"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"cron": "R * * * *"}, "croniter&#x27;s random value R"),
        ({"timezone": "a" * 300}, "Ensure this value has at most 64 characters (it has 300)."),
    ],
)
def test_the_admin_form_refuses_with_the_message(root, fields, expected):
    response = post(root, **fields)
    assert response.status_code == 200
    assert expected in text(response)
    assert not Schedule.objects.exists()


def test_the_admin_form_stores_null_arguments_and_empty_means_none(root):
    assert post(root, args="[null]").status_code == 302
    assert Schedule.objects.get(name="door").args == [None]
    response = post(root, name="empty", task_path=tasks.noop.module_path, args="", kwargs="")
    assert response.status_code == 302
    empty = Schedule.objects.get(name="empty")
    assert (empty.args, empty.kwargs) == ([], {})


def test_a_broken_stored_schedule_is_shown_broken_and_fire_now_refuses_it(root):
    schedule = Schedule.objects.create(name="feb30", task_path=ADD, cron="@daily", args=[1, 2])
    fine = Schedule.objects.create(name="fine", task_path=ADD, cron="@daily", args=[1, 2])
    break_by_sql(schedule, cron="0 0 30 2 *", priority=999)
    page = text(root.get(SCHEDULES))
    assert page.count("Broken</span>") == 1 and "&#x27;0 0 30 2 *&#x27; never fires" in page
    assert "999 is not a task priority" in page and ">OK<" in page
    detail = text(root.get(reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk])))
    assert "Broken</span> cron: &#x27;0 0 30 2 *&#x27; never fires" in detail
    assert "(not fired until fixed)" in detail
    action = {"_selected_action": [schedule.pk, fine.pk], "index": 0, "action": "fire_now"}
    response = root.post(SCHEDULES, action, follow=True)
    assert response.status_code == 200
    assert "Feb30: cannot be fired until it is fixed: cron: &#x27;0 0 30 2 *&#x27;" in text(
        response
    )
    assert not Job.objects.filter(schedule=schedule).exists()
    assert Job.objects.filter(schedule=fine).count() == 1


# periodic(): refused at import, with full_clean()'s message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": "R * * * *"}, "cron"),
        ({"timezone": "a" * 300}, "timezone"),
        ({"timezone": "Europe"}, "timezone"),
        ({"priority": 999}, "priority"),
        ({"queue_name": "nope"}, "queue_name"),
        ({"args": "12"}, "args"),
        ({"args": [float("nan")], "kwargs": {}}, "args"),
        ({"args": [nested(5000)]}, "args"),
        ({"kwargs": [1]}, "kwargs"),
    ],
)
def test_periodic_refuses_what_full_clean_refuses_with_its_message(options, field):
    values = {"cron": "@daily", "args": [1, 2], **options}
    expected = refusal(name="p", task_path=ADD, **values)[field]
    before = dict(scheduler._declared)
    with pytest.raises(InvalidSchedule) as excinfo:
        periodic(tasks.add, values.pop("cron"), name="p", **values)
    assert str(excinfo.value).startswith("periodic() schedule 'p': ")
    assert all(message in str(excinfo.value) for message in expected)
    assert scheduler._declared == before  # nothing declared


def test_periodic_accepts_a_valid_declaration(monkeypatch):
    monkeypatch.setattr(scheduler, "_declared", {})
    periodic(tasks.add, "@YEARLY", name="ok", args=(1, 2), queue_name="low", priority=100)
    assert scheduler._declared["ok"].args == [1, 2]


# A stored schedule that broke since: skipped, logged once per check, the others fire


BROKEN = {
    "feb30": {"cron": "0 0 30 2 *"},
    "random": {"cron": "R * * * *"},
    "gone-zone": {"timezone": "Mars/Olympus"},  # as after a tzdata update removed it
    "priority": {"priority": 999},
    "args": {"args": '{"not": "a list"}'},
    "queue": {"queue_name": "nope"},
    "task": {"task_path": "tests.testapp.tasks.renamed"},
    "huge-number": {"args": "[" + "9" * 5000 + "]"},  # JSON that Python cannot read back
}


def broken_schedules() -> list[Schedule]:
    made = []
    for name, columns in BROKEN.items():
        schedule = due_schedule(name)
        break_by_sql(schedule, **columns)
        make_due(schedule)
        made.append(schedule)
    return made


def test_the_tick_skips_broken_schedules_logs_each_once_and_fires_the_others(caplog):
    broken = broken_schedules()
    # Daily, and due since its last fire time: however slow the first tick is,
    # the second cannot reach the next fire time, so exactly one job is right.
    good = due_schedule("good", "0 3 * * *")
    now = queries.database_now(connection)
    (last_fire,) = cron.recent_fire_times(
        good.cron, good.timezone, now - dt.timedelta(days=2), now, 1
    )
    Schedule.objects.filter(pk=good.pk).update(next_fire_at=last_fire, last_fire_at=None)
    with caplog.at_level(logging.INFO, logger="django_dbtasks.scheduler"):
        tick()
        tick()  # the next second: nothing new is logged
    assert Job.objects.filter(schedule=good).count() == 1
    assert not Job.objects.filter(schedule__in=broken).exists()
    for schedule in broken:
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith(f"schedule={schedule.name} ")
        ]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f'schedule={schedule.name} event="broken, not fired" reason="')
        assert "enqueued" not in lines[0] and lines[0].endswith(
            f"checked_again_in={BROKEN_RECHECK:g}s"
        )
        schedule.refresh_from_db()
        waited = (schedule.next_fire_at - queries.database_now(connection)).total_seconds()
        assert BROKEN_RECHECK - 5 < waited <= BROKEN_RECHECK
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        'schedule=priority event="broken, not fired" reason="priority: 999 is not a task priority'
        in messages
    )
    broken = 'event="broken, not fired" reason="'
    assert f"schedule=gone-zone {broken}timezone: 'Mars/Olympus'" in messages
    assert f"schedule=feb30 {broken}cron: '0 0 30 2 *' never fires" in messages
    assert f"schedule=task {broken}task_path: 'tests.testapp.tasks.renamed'" in messages
    assert (
        f"schedule=huge-number {broken}args: args as stored cannot be read by "
        "Python (Exceeds the limit (4300 digits) for integer string conversion)"
    ) in messages


@pytest.mark.parametrize(
    "raw",
    [
        "[" + "9" * 5000 + "]",
        pytest.param("[" * 3000 + "]" * 3000, marks=postgres_only),  # SQLite's JSON stops at 1000
    ],
)
def test_stored_json_python_cannot_read_still_loads_and_shows_broken(root, raw, capsys):
    schedule = Schedule.objects.create(name="unreadable", task_path=ONE, cron="@daily", args=[1])
    break_by_sql(schedule, args=raw)
    loaded = Schedule.objects.get(pk=schedule.pk)
    assert loaded.args == raw
    assert loaded.broken_reason().startswith("args: args as stored cannot be read by Python (")
    assert "Broken</span> args: args as stored cannot be read" in text(root.get(SCHEDULES))
    detail = root.get(reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk]))
    assert detail.status_code == 200 and raw[:50] in text(detail)
    call_command("schedules")
    assert "BROKEN, not fired until fixed: args: args as stored cannot be read" in (
        capsys.readouterr().out
    )


def test_a_broken_schedule_fires_again_once_fixed():
    schedule = due_schedule("later")
    break_by_sql(schedule, priority=999)
    make_due(schedule)
    tick()
    assert not Job.objects.filter(schedule=schedule).exists()
    break_by_sql(schedule, priority=5)
    make_due(schedule)  # its recheck time has come
    tick()
    assert Job.objects.get(schedule=schedule).priority == 5


def test_a_bug_in_one_schedules_fire_does_not_stop_the_others(monkeypatch, caplog):
    good, buggy = due_schedule("good"), due_schedule("buggy")
    make_due(good)
    make_due(buggy)
    real = Scheduler._times_to_fire

    def times(schedule, now):
        if schedule.name == "buggy":
            raise RuntimeError("a bug")
        return real(schedule, now)

    monkeypatch.setattr(Scheduler, "_times_to_fire", staticmethod(times))
    with caplog.at_level(logging.ERROR, logger="django_dbtasks.scheduler"):
        tick()
    assert Job.objects.filter(schedule=good).count() == 1
    assert not Job.objects.filter(schedule=buggy).exists()
    [record] = caplog.records
    assert record.getMessage().startswith(
        'schedule=buggy event="broken, not fired" reason="RuntimeError: a bug'
    )
    assert record.exc_info is not None


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_firing_beside_broken_schedules(start_worker):
    broken = broken_schedules()
    good = due_schedule("good")
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: Job.objects.filter(schedule=good).count() >= 3, timeout=30)
    time.sleep(1)
    assert worker.process.poll() is None, worker.output()
    assert not Job.objects.filter(schedule__in=broken).exists()
    output = worker.output()
    for schedule in broken:
        assert output.count(f'schedule={schedule.name} event="broken, not fired"') == 1, output
    assert "Traceback" not in output
    good_fired = Job.objects.filter(schedule=good, status="SUCCESSFUL").count()
    assert good_fired >= 2


# manage.py schedules


def test_schedules_fire_needs_a_name():
    Schedule.objects.create(name="report", task_path=ADD, cron="@daily", args=[1, 2])
    with pytest.raises(CommandError) as excinfo:
        call_command("schedules", "--fire", "")
    assert str(excinfo.value) == (
        "--fire needs the name of a schedule (schedules: nightly-noop, report); run "
        "'manage.py schedules' without --fire to list them."
    )
    assert not Job.objects.exists()


def test_schedules_lists_a_broken_schedule_and_refuses_to_fire_it(capsys):
    broken = Schedule.objects.create(name="feb30", task_path=ADD, cron="@daily", args=[1, 2])
    Schedule.objects.create(name="report", task_path=ADD, cron="0 3 * * *", args=[1, 2])
    break_by_sql(broken, cron="0 0 30 2 *", timezone="Mars/Olympus")
    call_command("schedules")
    out = capsys.readouterr().out
    assert "feb30  [enabled, from admin]" in out
    assert "    BROKEN, not fired until fixed: timezone: 'Mars/Olympus' is not a known" in out
    assert "; cron: '0 0 30 2 *' never fires" in out
    assert "report  [enabled, from admin]" in out and "At 03:00" in out
    with pytest.raises(CommandError) as excinfo:
        call_command("schedules", "--fire", "feb30")
    assert str(excinfo.value).startswith(
        "Schedule 'feb30': cannot be fired until it is fixed: timezone: 'Mars/Olympus'"
    )
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("value", "expected"), [("0", "must be at least 1"), ("101", "at most 100")]
)
def test_schedules_next_is_bounded(value, expected):
    with pytest.raises(CommandError) as excinfo:
        call_command("schedules", "--next", value)
    assert expected in str(excinfo.value)


# Properties: cron and timezone strings


MONTHS = [name.lower() for name in calendar.month_abbr[1:]]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: field: (lowest, highest, names or None); day-of-week also takes 7 for Sunday.
FIELDS = {
    "minute": (0, 59, None),
    "hour": (0, 23, None),
    "dom": (1, 31, None),
    "month": (1, 12, MONTHS),
    "dow": (0, 6, DAYS),
    "second": (0, 59, None),
}
LONGEST_MONTH = {m: 29 if m == 2 else calendar.monthrange(2025, m)[1] for m in range(1, 13)}


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    star: bool  # "*" or "?": the field restricts nothing (it is not OR-ed with the other day)


def _cased(draw, name: str) -> str:
    return draw(st.sampled_from([name, name.upper(), name.title()]))


@st.composite
def field_part(draw, kind: str) -> tuple[str, set[int]]:
    """One comma-separated part of a field, and the values it names (the oracle)."""
    lo, hi, names = FIELDS[kind]
    top = 7 if kind == "dow" else hi
    shapes = ["value", "range", "range-step", "start-step", "star-step"]
    shape = draw(st.sampled_from(shapes + (["name", "name-range"] if names else [])))
    if shape == "value":
        n = draw(st.integers(lo, top))
        return str(n), {n}
    if shape in ("range", "range-step"):
        a = draw(st.integers(lo, top - 1))
        b = draw(st.integers(a + 1, top))  # a < b: croniter reads "5-5" as the whole cycle
        step = draw(st.integers(1, hi + 2)) if shape == "range-step" else 1
        suffix = f"/{step}" if shape == "range-step" else ""
        return f"{a}-{b}{suffix}", set(range(a, b + 1, step))
    if shape == "start-step":
        a, step = draw(st.integers(lo, hi)), draw(st.integers(1, hi + 2))
        return f"{a}/{step}", set(range(a, hi + 1, step))
    if shape == "star-step":
        step = draw(st.integers(1, hi + 2))
        return f"*/{step}", set(range(lo, hi + 1, step))
    assert names is not None
    offset = 1 if kind == "month" else 0
    if shape == "name":
        i = draw(st.integers(0, len(names) - 1))
        return _cased(draw, names[i]), {i + offset}
    i = draw(st.integers(0, len(names) - 2))
    j = draw(st.integers(i + 1, len(names) - 1))
    return f"{_cased(draw, names[i])}-{_cased(draw, names[j])}", set(
        range(i + offset, j + 1 + offset)
    )


@st.composite
def cron_field(draw, kind: str) -> Field:
    lo, hi, _ = FIELDS[kind]
    everything = frozenset(range(lo, hi + 1))
    stars = ["*", "?"] if kind in ("dom", "dow") else ["*"]
    if draw(st.integers(0, 3)) == 0:
        return Field(draw(st.sampled_from(stars)), everything, True)
    parts = draw(st.lists(field_part(kind), min_size=1, max_size=3))
    values = set().union(*(v for _, v in parts))
    if kind == "dow":
        values = {0 if v == 7 else v for v in values}
    return Field(",".join(t for t, _ in parts), frozenset(values), False)


ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@st.composite
def structured_cron(draw) -> tuple[str, dict[str, Field]]:
    """An expression from fields (or an alias), with what each field means."""
    if draw(st.integers(0, 5)) == 0:
        alias = draw(st.sampled_from(sorted(ALIASES)))
        minute, hour, dom, month, dow = ALIASES[alias].split()

        def fixed(kind: str, text_: str) -> Field:
            lo, hi, _ = FIELDS[kind]
            if text_ == "*":
                return Field("*", frozenset(range(lo, hi + 1)), True)
            return Field(text_, frozenset({int(text_)}), False)

        fields = {
            "minute": fixed("minute", minute),
            "hour": fixed("hour", hour),
            "dom": fixed("dom", dom),
            "month": fixed("month", month),
            "dow": fixed("dow", dow),
            "second": Field("0", frozenset({0}), False),
        }
        return draw(st.sampled_from([alias, alias.upper(), alias.title()])), fields
    fields = {kind: draw(cron_field(kind)) for kind in FIELDS}
    if draw(st.booleans()):  # late days of short months: where "never fires" lives
        days, short = draw(
            st.sampled_from([([31], [2, 4, 6, 9, 11]), ([30, 31], [2]), ([29, 30, 31], [2, 4])])
        )
        days = draw(st.lists(st.sampled_from(days), min_size=1, max_size=2, unique=True))
        months = draw(st.lists(st.sampled_from(short), min_size=1, max_size=2))
        fields["dom"] = Field(",".join(map(str, days)), frozenset(days), False)
        fields["month"] = Field(",".join(map(str, months)), frozenset(months), False)
        if draw(st.integers(0, 3)):
            star = draw(st.sampled_from(["*", "?"]))
            fields["dow"] = Field(star, frozenset(range(7)), True)
    seconds = draw(st.booleans())
    order = ["minute", "hour", "dom", "month", "dow"] + (["second"] if seconds else [])
    if not seconds:
        fields["second"] = Field("0", frozenset({0}), False)
    separator = draw(st.sampled_from([" ", "  ", "\t"]))
    return separator.join(fields[kind].text for kind in order), fields


def fires(fields: dict[str, Field]) -> bool:
    """The oracle: does any date match? (hours, minutes and seconds always have a value).

    Day-of-month and day-of-week are OR-ed when both restrict, as in cron; every
    month has every weekday, so only a day-of-month its months never have (the
    30th of February) with an unrestricted day-of-week can make it never fire.
    """
    dom, dow = fields["dom"], fields["dow"]
    if dom.star or not dow.star:
        return True
    return any(d <= LONGEST_MONTH[m] for m in fields["month"].values for d in dom.values)


def matches(moment: dt.datetime, fields: dict[str, Field]) -> bool:
    """Whether a UTC fire time is one the fields name."""
    dom, dow = fields["dom"], fields["dow"]
    weekday = (moment.weekday() + 1) % 7  # cron counts from Sunday
    day_ok = {
        (True, True): True,
        (True, False): weekday in dow.values,
        (False, True): moment.day in dom.values,
        (False, False): moment.day in dom.values or weekday in dow.values,
    }[(dom.star, dow.star)]
    return (
        day_ok
        and moment.month in fields["month"].values
        and moment.hour in fields["hour"].values
        and moment.minute in fields["minute"].values
        and moment.second in fields["second"].values
    )


def fire_and_describe(schedule: Schedule) -> None:
    """What an accepted schedule must survive: save, upcoming, tick, fire now, describe."""
    schedule.save()
    assert schedule.next_fire_at is not None
    times = schedule.upcoming(3)
    assert len(times) == 3 and times == sorted(times)
    assert (times[0] - timezone.now()).days <= 366 * cron.HORIZON_YEARS
    assert isinstance(schedule.describe(), str) and schedule.describe()
    # Due since long ago (longer than the longest gap between two fire times): fires once.
    make_due(schedule, dt.timedelta(days=365 * 45))
    tick()
    assert Job.objects.filter(schedule=schedule).exclude(scheduled_for=None).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_fire_at > queries.database_now(connection) - dt.timedelta(seconds=1)
    job = Scheduler("default").fire_now(schedule)
    assert job.pk is not None and job.scheduled_for is None


ZONES = sorted(zoneinfo.available_timezones())
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(drawn=structured_cron(), zone=st.sampled_from(["UTC", *ZONES]))
@example(drawn=("0 0 30 2 *", None), zone="UTC")
@example(drawn=("0 0 * 2 1#5", None), zone="Europe/Berlin")
def test_full_clean_accepts_exactly_the_structured_expressions_that_fire(drawn, zone):
    expression, fields = drawn
    schedule = Schedule(name="p", task_path=tasks.noop.module_path, cron=expression, timezone=zone)
    with rolled_back():
        try:
            schedule.full_clean()
        except ValidationError as error:
            assert set(error.message_dict) == {"cron"}, error.message_dict
            [message] = error.message_dict["cron"]
            assert fields is None or not fires(fields), message
            assert f"{expression!r} never fires" in message
            event("refused: never fires")
            return
        assert fields is None or fires(fields), expression
        event("accepted")
        fire_and_describe(schedule)
        if fields is not None and zone == "UTC":
            assert all(matches(t, fields) for t in schedule.upcoming(3)), expression


cron_text = st.one_of(
    st.text(st.sampled_from(list("0123456789*/-,? #LWRH@lw\t")) | st.characters(), max_size=24),
    st.lists(
        st.sampled_from(
            [
                "*",
                "*/2",
                "1-5",
                "L",
                "15W",
                "5#3",
                "L5",
                "R",
                "H",
                "jan",
                "MON",
                "?",
                "0",
                "59",
                "60",
                "31",
                "30",
                "2",
                "sun-sat",
                "dec/3",
                "9" * 12,
                "-1",
                "7",
                "0-7",
                "@daily",
                "@YEARLY",
                "@reboot",
                "1,2",
                "*/0",
            ]
        ),
        min_size=5,
        max_size=6,
    ).map(" ".join),
)
KNOWN_REFUSALS = (
    "is not a valid cron expression",
    "never fires",
    "croniter's random value R",
    "a hashed value H",
)


@PROPERTY
@given(expression=cron_text)
@example(expression="0 0 31 2 L5")
@example(expression="\u2003".join("0 0 * * *".split()))
def test_any_cron_text_is_accepted_and_fires_or_refused_with_a_message(expression):
    schedule = Schedule(name="p", task_path=tasks.noop.module_path, cron=expression, timezone="UTC")
    with rolled_back():
        try:
            schedule.full_clean()
        except ValidationError as error:
            messages = error.message_dict["cron"]
            [message] = [m for m in messages if m.startswith(f"{expression!r} ")]
            assert set(messages) - {message} <= {"This field cannot be blank."}
            assert any(known in message for known in KNOWN_REFUSALS), message
            event(f"refused: {next(k for k in KNOWN_REFUSALS if k in message)}")
            return
        event("accepted")
        fire_and_describe(schedule)


zone_text = st.one_of(
    st.sampled_from(ZONES),
    st.sampled_from(ZONES).map(lambda z: z.lower()),
    st.sampled_from(
        [
            "Europe",
            "a" * 300,
            "",
            ".",
            "..",
            "../etc",
            "/etc/passwd",
            "UTC ",
            "Europe/",
            "Europe//Berlin",
            "zone.tab",
            "tzdata.zi",
            "a\x00",
            "x" * 70,
        ]
    ),
    st.text(max_size=12),
)


def zoneinfo_loads(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # the oracle: any failure to load is "unknown"
        return False
    return True


@PROPERTY
@given(name=zone_text)
def test_full_clean_accepts_exactly_the_timezones_zoneinfo_loads(name):
    schedule = Schedule(
        name="p", task_path=tasks.noop.module_path, cron="*/7 3 * * *", timezone=name
    )
    with rolled_back():
        try:
            schedule.full_clean()
        except ValidationError as error:
            assert set(error.message_dict) == {"timezone"}, error.message_dict
            assert not zoneinfo_loads(name) or len(name) > 64
            assert any(
                "is not a known IANA timezone" in m or "at most 64" in m
                for m in error.message_dict["timezone"]
            )
            event("refused")
            return
        event("accepted")
        assert zoneinfo_loads(name) and len(name) <= 64
        fire_and_describe(schedule)
        local = schedule.upcoming(1)[0].astimezone(zoneinfo.ZoneInfo(name))
        assert re.fullmatch(r"03:\d\d", local.strftime("%H:%M")) or local.hour == 4  # DST gap


@pytest.mark.django_db
def test_a_fire_the_database_refuses_is_an_error_not_a_silent_drop():
    """Only the duplicate fire time is skipped: a row breaking a CHECK constraint is not
    dropped by ``INSERT OR IGNORE`` on SQLite while the log says "enqueued"."""
    from django.db import IntegrityError

    from django_dbtasks import queries
    from django_dbtasks.models import Job, Schedule

    schedule = Schedule.objects.create(
        name="check", task_path="tests.testapp.tasks.noop", cron="* * * * *"
    )
    moment = timezone.now().replace(microsecond=0)

    def insert_fire(scheduled_for: dt.datetime, priority: int = 0) -> list:
        return queries.insert_jobs(
            connection,
            backend="default",
            task_path=schedule.task_path,
            queue_name="default",
            priority=priority,
            max_attempts=1,
            run_after=None,
            calls=[("[]", "{}")],
            schedule_id=schedule.pk,
            scheduled_for=scheduled_for,
        )

    assert insert_fire(moment) != []
    assert insert_fire(moment) == []  # that fire time has its job
    assert Job.objects.filter(schedule=schedule).count() == 1
    # 999 is outside the job table's CHECK constraint
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_fire(moment + dt.timedelta(minutes=1), priority=999)
