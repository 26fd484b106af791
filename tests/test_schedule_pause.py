"""Code declares a schedule, operators turn it off: who owns which field, across syncs.

``periodic()`` decides what a schedule runs and when; a schedule disabled in the
admin stays off through worker starts (``sync_declared()``) and through
``manage.py schedules``, which only reads, until it is enabled in the admin.
"""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtasks import scheduler
from django_dbtasks.models import Schedule
from django_dbtasks.scheduler import CODE_OWNED_FIELDS, Scheduler

from .conftest import ROOT, manage, postgres_only, run_worker, worker_env
from .shared_admin import staff, text

pytestmark = pytest.mark.django_db(transaction=True)

SCHEDULES = reverse("admin:django_dbtasks_schedule_changelist")
NIGHTLY = "nightly-noop"  # periodic() in tests/testapp/tasks.py: "0 3 * * *", Europe/Berlin


def sync() -> None:
    Scheduler("default").sync_declared()


def nightly() -> Schedule:
    return Schedule.objects.get(name=NIGHTLY)


def act(client: Any, action: str, schedule: Schedule) -> str:
    response = client.post(
        SCHEDULES, {"action": action, "_selected_action": [schedule.pk], "index": 0}, follow=True
    )
    return text(response)


def table() -> list[tuple[Any, ...]]:
    """Every column of every schedule, to show that nothing was written."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM django_dbtasks_schedule ORDER BY id")
        return list(cursor.fetchall())


def redeclared(**changes: Any) -> dict[str, scheduler.Declared]:
    declared = dict(scheduler._declared)
    declared[NIGHTLY] = dataclasses.replace(declared[NIGHTLY], **changes)
    return declared


def test_a_code_schedule_disabled_in_the_admin_stays_off_through_a_real_worker_start():
    sync()
    operator = staff("operator", "view_schedule", "change_schedule")
    page = act(operator, "disable_schedules", nightly())
    assert "Disabled 1 schedule. They stay off, even those declared in code" in page
    off = nightly()
    assert (off.enabled, off.disabled_by) == (False, "operator") and off.disabled_at is not None

    started = run_worker()  # its start syncs the code schedules
    assert started.returncode == 0, started.stderr
    after = nightly()
    assert (after.enabled, after.disabled_by, after.disabled_at) == (
        False,
        "operator",
        off.disabled_at,
    )
    page = text(operator.get(reverse("admin:django_dbtasks_schedule_change", args=[off.pk])))
    assert "Off: disabled in the admin by operator" in page
    assert "stays off across worker starts until it is enabled here" in page

    act(operator, "enable_schedules", nightly())
    assert run_worker().returncode == 0
    on = nightly()
    assert (on.enabled, on.disabled_by, on.disabled_at) == (True, "", None)


def test_code_still_owns_the_expression_of_a_schedule_turned_off_in_the_admin(monkeypatch):
    sync()
    nightly().set_enabled(False, by="operator")
    monkeypatch.setattr(scheduler, "_declared", redeclared(cron="0 4 * * *", args=[7]))
    sync()
    changed = nightly()
    assert (changed.cron, changed.args, changed.enabled) == ("0 4 * * *", [7], False)


def test_a_schedule_gone_from_code_comes_back_on_when_declared_again_unless_turned_off(
    monkeypatch,
):
    sync()
    declared = dict(scheduler._declared)
    monkeypatch.setattr(scheduler, "_declared", {})
    sync()
    assert nightly().enabled is False and nightly().disabled_at is None  # not an operator's
    monkeypatch.setattr(scheduler, "_declared", declared)
    sync()
    assert nightly().enabled is True

    nightly().set_enabled(False, by="operator")
    monkeypatch.setattr(scheduler, "_declared", {})
    sync()
    monkeypatch.setattr(scheduler, "_declared", declared)
    sync()
    assert nightly().enabled is False and nightly().disabled_by == "operator"


def test_the_admin_form_of_a_code_schedule_edits_enabled_only():
    sync()
    schedule = nightly()
    operator = staff("operator", "view_schedule", "change_schedule")
    url = reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk])
    page = text(operator.get(url))
    assert "In code, with periodic()" in page
    for name in ("name", *CODE_OWNED_FIELDS):
        assert f'name="{name}"' not in page, name  # shown, not editable
    assert 'name="enabled"' in page
    response = operator.post(url, {"cron": "* * * * *", "task_path": "x", "missed": "ALL"})
    assert response.status_code == 302, text(response)  # "enabled" unticked: off
    after = nightly()
    assert (after.cron, after.task_path, after.missed) == (
        schedule.cron,
        schedule.task_path,
        schedule.missed,
    )
    assert (after.enabled, after.disabled_by) == (False, "operator")
    sync()
    assert nightly().enabled is False
    operator.post(url, {"enabled": "on"})
    assert (nightly().enabled, nightly().disabled_at) == (True, None)


def test_people_who_may_only_look_cannot_turn_a_schedule_off():
    sync()
    viewer = staff("viewer", "view_schedule")
    act(viewer, "disable_schedules", nightly())
    assert nightly().enabled is True and nightly().disabled_at is None


def test_manage_py_schedules_writes_nothing_and_shows_what_code_will_change(monkeypatch, capsys):
    call_command("schedules")  # nothing synced yet: the declaration is shown, not written
    assert not Schedule.objects.exists()
    assert f"{NIGHTLY}  [enabled, from code]" in capsys.readouterr().out

    sync()
    nightly().set_enabled(False, by="operator")
    monkeypatch.setattr(scheduler, "_declared", redeclared(cron="15 4 * * *"))
    before = table()
    with CaptureQueriesContext(connection) as queries:
        call_command("schedules")
    out = capsys.readouterr().out
    assert table() == before
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    assert "'15 4 * * *'" in out and "pending: changed in code (cron)" in out
    assert "disabled in the admin by operator" in out and "stays off until enabled there" in out


@postgres_only
def test_manage_py_schedules_runs_as_a_database_user_that_may_only_read(tmp_path):
    """The strongest 'never writes': PostgreSQL itself refuses any write of that user."""
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dbtasks_reader")
        cursor.execute("CREATE ROLE dbtasks_reader LOGIN PASSWORD 'reader'")
        cursor.execute(
            f'GRANT CONNECT ON DATABASE "{connection.settings_dict["NAME"]}" TO dbtasks_reader'
        )
        cursor.execute("GRANT USAGE ON SCHEMA public TO dbtasks_reader")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO dbtasks_reader")
    try:
        settings_dict = connection.settings_dict
        url = (
            f"postgres://dbtasks_reader:reader@{settings_dict['HOST'] or 'localhost'}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        )
        connection.close()
        listed = subprocess.run(
            manage("schedules"),
            env=worker_env(DATABASE_URL=url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert f"{NIGHTLY}  [enabled, from code]" in listed.stdout
    finally:
        with connection.cursor() as cursor:
            cursor.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM dbtasks_reader")
            cursor.execute("REVOKE ALL ON SCHEMA public FROM dbtasks_reader")
            cursor.execute(
                f'REVOKE ALL ON DATABASE "{connection.settings_dict["NAME"]}" FROM dbtasks_reader'
            )
            cursor.execute("DROP ROLE dbtasks_reader")


operations = st.lists(
    st.sampled_from(["admin off", "admin on", "sync", "remove from code", "declare again"]),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_only_the_admin_decides_whether_a_declared_schedule_is_on(monkeypatch, steps):
    """Whatever the order of admin switches, syncs and code edits, each keeps to its part.

    The model: an operator's "off" lasts until their "on"; a schedule gone from
    code is off after a sync; otherwise a synced code schedule is on.
    """
    declared = dict(scheduler._declared)
    with transaction.atomic():
        monkeypatch.setattr(scheduler, "_declared", declared)
        sync()
        operator_off, in_code = False, True
        for step in steps:
            if step == "admin off":
                nightly().set_enabled(False, by="operator")
                operator_off = True
            elif step == "admin on":
                nightly().set_enabled(True)
                operator_off = False
            elif step == "remove from code":
                monkeypatch.setattr(scheduler, "_declared", {})
                in_code = False
            elif step == "declare again":
                monkeypatch.setattr(scheduler, "_declared", declared)
                in_code = True
            else:
                sync()
                assert nightly().enabled is (in_code and not operator_off), steps
            assert nightly().disabled_by_operator is operator_off, steps
        transaction.set_rollback(True)
    monkeypatch.setattr(scheduler, "_declared", declared)
