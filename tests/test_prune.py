"""``prunetasks`` deletes old finished jobs, and only those."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_dbtasks.models import Job

pytestmark = pytest.mark.django_db


def make(status: str, days_ago: float | None) -> Job:
    finished = None if days_ago is None else timezone.now() - dt.timedelta(days=days_ago)
    return Job.objects.create(task_path="app.tasks.t", status=status, finished_at=finished)


def test_prunes_old_finished_jobs_in_batches(capsys):
    old = [make("SUCCESSFUL", 10) for _ in range(5)] + [make("CANCELLED", 9)]
    kept = [make("SUCCESSFUL", 1), make("READY", None), make("RUNNING", None), make("FAILED", 2)]

    call_command("prunetasks", "--older-than", "7d", "--batch-size", "2")

    assert "Deleted 6 finished job(s)" in capsys.readouterr().out
    assert not Job.objects.filter(pk__in=[job.pk for job in old]).exists()
    assert Job.objects.filter(pk__in=[job.pk for job in kept]).count() == 4


def test_status_option_keeps_other_statuses():
    failed, done = make("FAILED", 40), make("SUCCESSFUL", 40)
    call_command("prunetasks", "--older-than", "30d", "--status", "failed")
    assert list(Job.objects.values_list("pk", flat=True)) == [done.pk]
    assert failed.pk not in Job.objects.values_list("pk", flat=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "a week"], "is not a duration; use a number of seconds"),
        (["--older-than", "1d", "--status", "READY"], "'READY' is not a finished status"),
    ],
)
def test_bad_options_are_explained(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("prunetasks", *args)


def test_a_backend_that_is_not_ours_is_explained():
    from django.test import override_settings

    from django_dbtasks.compat import task_backends

    immediate = type(task_backends["default"]).__mro__[1].__module__.split(".backends")[0]
    path = f"{immediate}.backends.immediate.ImmediateBackend"
    with override_settings(TASKS={"default": {"BACKEND": path}}):
        with pytest.raises(CommandError, match="serves django_dbtasks.backend.DatabaseBackend"):
            call_command("prunetasks", "--older-than", "1d")
