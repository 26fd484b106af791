"""Two TASKS aliases on one database share nothing: not a result, not a claim, not a run.

This is the isolation a RabbitMQ virtual host gives, inside one job table: each
row records the alias that enqueued it.
"""

from __future__ import annotations

import copy
import re
from collections import Counter

import pytest
from django.conf import settings
from django.test import override_settings

from django_dbtasks.compat import TaskResultDoesNotExist
from django_dbtasks.models import Job, JobStatus

from .conftest import wait_until
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def two_aliases() -> dict:
    both = copy.deepcopy(settings.TASKS)
    both["reports"] = copy.deepcopy(both["default"])
    return both


@override_settings(TASKS=two_aliases())
def test_a_result_belongs_to_the_alias_that_enqueued_it():
    reports = tasks.add.using(backend="reports")
    mine = reports.enqueue(1, 2)
    theirs = tasks.add.enqueue(3, 4)

    assert Job.objects.get(pk=mine.id).backend == "reports"
    assert Job.objects.get(pk=theirs.id).backend == "default"
    assert reports.get_result(mine.id) == mine
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(mine.id)  # the "default" alias does not see it
    with pytest.raises(TaskResultDoesNotExist):
        reports.get_result(theirs.id)
    assert tasks.add.get_backend().cancel(mine.id) is False
    assert Job.objects.get(pk=mine.id).status == JobStatus.READY
    [bulk] = reports.enqueue_many([((5, 6), {})])
    assert Job.objects.get(pk=bulk.id).backend == "reports"


def test_existing_rows_go_to_the_only_alias_a_project_configures():
    from importlib import import_module

    from django.apps import apps
    from django.db import connection

    migration = import_module("django_dbtasks.migrations.0009_job_backend_alias")
    old = tasks.add.enqueue(1, 2)

    class Editor:  # what RunPython hands its function: the connection it migrates
        pass

    editor = Editor()
    editor.connection = connection  # type: ignore[attr-defined]
    with override_settings(TASKS={"jobs": settings.TASKS["default"]}):
        migration.give_existing_jobs_their_alias(apps, editor)
    assert Job.objects.get(pk=old.id).backend == "jobs"
    Job.objects.update(backend="default")
    migration.give_existing_jobs_their_alias(apps, editor)  # "default" and another: kept
    assert Job.objects.get(pk=old.id).backend == "default"


@pytest.mark.slow
@override_settings(TASKS=two_aliases())
def test_workers_of_each_alias_run_only_their_own_jobs_exactly_once(start_worker):
    per_alias = 1000
    ids = {
        alias: [
            int(r.id)
            for r in tasks.record_run.using(backend=alias).enqueue_many(
                [((f"{alias}-{i}",), {}) for i in range(per_alias)]
            )
        ]
        for alias in ("default", "reports")
    }
    env = {"DBTASKS_TEST_SECOND_ALIAS": "1"}
    workers = {
        alias: [start_worker("--backend", alias, "--concurrency", "2", **env) for _ in range(2)]
        for alias in ("default", "reports")
    }
    every = [*ids["default"], *ids["reports"]]
    wait_until(
        lambda: Job.objects.filter(pk__in=every, status=JobStatus.SUCCESSFUL).count() == 2000,
        timeout=240,
        interval=0.5,
    )

    runs = Counter(int(j) for j in Execution.objects.values_list("job_id", flat=True))
    assert [runs[job_id] for job_id in every] == [1] * 2000, "exactly once per job"
    pids = {
        alias: {str(worker.pid) for worker in workers[alias]} for alias in ("default", "reports")
    }
    for alias, job_ids in ids.items():
        ran_by = {
            re.split(r"-", worker_ids[0])[-2]
            for worker_ids in Job.objects.filter(pk__in=job_ids).values_list(
                "worker_ids", flat=True
            )
        }
        assert ran_by <= pids[alias], f"{alias}'s jobs ran on another alias's worker"


def test_empty_queues_accept_any_name_and_a_worker_serves_every_queue():
    """As in Django: QUEUES [] restricts nothing (test settings name three queues)."""
    from .conftest import run_worker

    with override_settings(TASKS={"default": {**settings.TASKS["default"], "QUEUES": []}}):
        anywhere = [
            tasks.record_run.using(queue_name=name).enqueue(name).id
            for name in ("default", "made-up", "reports-2026")
        ]
    finished = run_worker(DBTASKS_TEST_ANY_QUEUE="1")
    assert finished.returncode == 0, finished.stderr
    assert "queues=*" in finished.stderr
    statuses = Job.objects.filter(pk__in=anywhere).values_list("status", flat=True)
    assert list(statuses) == [JobStatus.SUCCESSFUL] * 3


@override_settings(TASKS=two_aliases())
def test_the_admin_shows_filters_and_counts_each_alias_apart():
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from django_dbtasks.admin.overview import collect

    tasks.add.using(backend="reports").enqueue_many([((1, 2), {})] * 3)
    tasks.add.enqueue(1, 2)
    admin = Client()
    admin.force_login(User.objects.create(username="op", is_staff=True, is_superuser=True))
    jobs = reverse("admin:django_dbtasks_job_changelist")

    page = admin.get(jobs, {"backend": "reports"}).content.decode()
    assert page.count('class="field-backend">reports<') == 3
    assert 'class="field-backend">default<' not in page
    assert "By alias" in admin.get(jobs).content.decode()

    rows = {(entry.alias, entry.name): entry for entry in collect()}
    assert (rows["reports", "default"].ready, rows["default", "default"].ready) == (3, 1)
    assert rows["reports", "default"].label == "reports / default"
    overview = admin.get(reverse("admin:django_dbtasks_job_overview")).content.decode()
    assert "reports / default" in overview and 'data-alias="reports"' in overview
