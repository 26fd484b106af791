"""The job admin: the list, a job's page, the retry and cancel actions, and who may use them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_dbtasks.models import Job, JobStatus, Schedule
from django_dbtasks.sensitive import REDACTED

from .shared_admin import (
    ADD,
    BOOM,
    JOBS,
    OVERVIEW,
    SCHEDULES,
    SECRET,
    UNIQUE,
    WORKERS,
    error,
    job,
    staff,
    text,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", "view_job", "view_schedule", "view_worker")


# The job list


def test_job_list_shows_status_progress_and_redacted_arguments(admin_client_):
    job(JobStatus.FAILED, BOOM, errors=[error("first")])
    job(JobStatus.RUNNING, progress=40, progress_message="exported 400 of 1,000", claimed_by="w-1")
    job(JobStatus.READY, SECRET, args=[7, "sk-live-123"])
    page = text(admin_client_.get(JOBS))
    assert 'class="dbtasks-status dbtasks-status-failed"' in page
    assert '<progress class="dbtasks-progress" max="100" value="40">' in page
    assert "exported 400 of 1,000" in page
    assert "sk-live-123" not in page and REDACTED in page
    assert "Queue overview" in page
    assert "_facets" not in page  # no "Show counts": it would count the whole table


def test_job_list_never_counts_the_whole_table_and_has_a_fixed_query_budget(admin_client_):
    for _ in range(30):
        job(JobStatus.SUCCESSFUL, return_value=1)
    with CaptureQueriesContext(connection) as small:
        assert admin_client_.get(JOBS).status_code == 200
    for _ in range(30):
        job(JobStatus.FAILED, BOOM, errors=[error("x")])
    with CaptureQueriesContext(connection) as large:
        assert admin_client_.get(JOBS + "?status__exact=FAILED").status_code == 200
    assert len(large) == len(small) <= 8
    counts = [q["sql"] for q in large.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 10001" in sql for sql in counts), counts
    assert not any("DISTINCT" in q["sql"].upper() for q in large.captured_queries)
    # Tracebacks are not loaded for the list.
    select = next(q["sql"] for q in large.captured_queries if "ORDER BY" in q["sql"])
    assert '"errors"' not in select


def test_capped_count_says_more_than(admin_client_, monkeypatch):
    from django_dbtasks.admin.jobs import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 5)
    for _ in range(8):
        job()
    page = text(admin_client_.get(JOBS))
    assert "More than 5 jobs match" in page
    assert "5+ jobs" in page and "5+ results" in page


def test_filters_by_status_queue_and_task(admin_client_):
    failed = job(JobStatus.FAILED, BOOM)
    email = job(queue_name="emails")
    ok = job(JobStatus.SUCCESSFUL)

    def ids(query: str) -> set[int]:
        return {
            int(i)
            for i in re.findall(
                r'name="_selected_action" value="(\d+)"', text(admin_client_.get(JOBS + query))
            )
        }

    assert ids("?status__exact=FAILED") == {failed.pk}
    assert ids("?queue=emails") == {email.pk}
    assert ids(f"?task={BOOM}") == {failed.pk}
    assert ids("") == {failed.pk, email.pk, ok.pk}


def test_search_by_id_path_and_arguments_but_not_secrets(admin_client_):
    plain = job(args=["invoice-2024-17"])
    secret = job(task_path=SECRET, args=[7, "sk-live-123"])
    other = job(JobStatus.FAILED, BOOM)

    def ids(term: str) -> set[int]:
        page = text(admin_client_.get(JOBS, {"q": term}))
        return {int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', page)}

    assert ids(str(other.pk)) == {other.pk}
    assert ids("invoice-2024") == {plain.pk}
    assert ids("boom") == {other.pk}
    assert ids("calls_an_api") == {secret.pk}
    assert ids("sk-live") == set()  # a secret cannot be found (or guessed) by searching


# The job page


def test_job_page_shows_pretty_arguments_every_traceback_and_its_schedule(admin_client_):
    schedule = Schedule.objects.create(name="nightly", task_path=BOOM, cron="0 3 * * *")
    failed = job(
        JobStatus.FAILED,
        BOOM,
        args=[{"user": 7, "items": [1, 2]}],
        kwargs={"note": "héllo"},
        attempts=2,
        max_attempts=2,
        errors=[error("first try"), error("second try", line="File 'x.py', line 9")],
        schedule=schedule,
        worker_ids=["w-1", "w-2"],
    )
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert "Attempt 1.</strong> ValueError: first try" in page
    assert "Attempt 2.</strong> ValueError: second try" in page
    assert "ValueError: second try\n</pre>" in page  # the traceback itself
    assert '"items": [\n      1,\n      2\n    ]' in page.replace("&quot;", '"')
    assert "héllo" in page
    assert reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk]) in page
    assert 'name="retry"' in page and 'name="_save"' not in page


def test_job_page_redacts_sensitive_arguments(admin_client_):
    secret = job(JobStatus.FAILED, SECRET, args=[7], kwargs={"api_key": "sk-live-123"})
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[secret.pk])))
    assert "sk-live-123" not in page
    assert REDACTED in page and "7" in page


# Actions


def _action(client: Client, action: str, jobs: list[Job]):
    return client.post(
        JOBS,
        {"action": action, "_selected_action": [j.pk for j in jobs], "index": 0},
        follow=True,
    )


def test_retry_makes_failed_and_cancelled_jobs_ready_and_says_what_it_skipped(admin_client_):
    failed = job(JobStatus.FAILED, BOOM, attempts=3, max_attempts=3, errors=[error("a")])
    cancelled = job(JobStatus.CANCELLED)
    running = job(JobStatus.RUNNING, claimed_by="w-1")
    ok = job(JobStatus.SUCCESSFUL)
    response = _action(admin_client_, "retry_jobs", [failed, cancelled, running, ok])
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Retried 2 jobs. Skipped 2: 1 running, 1 successful "
        "(only failed or cancelled jobs can be retried)."
    )
    failed.refresh_from_db()
    assert failed.status == JobStatus.READY
    assert (failed.attempts, failed.finished_at, failed.started_at) == (0, None, None)
    assert failed.errors == [error("a")]  # the history stays
    assert Job.objects.get(pk=cancelled.pk).status == JobStatus.READY
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING
    assert Job.objects.get(pk=ok.pk).status == JobStatus.SUCCESSFUL


def test_retry_of_everything_selected_across_pages(admin_client_):
    failed = [job(JobStatus.FAILED, BOOM) for _ in range(3)]
    job(JobStatus.SUCCESSFUL)
    job(JobStatus.SUCCESSFUL)
    response = admin_client_.post(
        JOBS,
        {"action": "retry_jobs", "_selected_action": [failed[0].pk], "select_across": 1},
        follow=True,
    )
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Retried 3 jobs. Skipped 2: 2 successful (only failed or cancelled jobs can be retried)."
    )
    assert not Job.objects.filter(status=JobStatus.FAILED).exists()


def test_retry_skips_a_unique_job_whose_key_is_taken(admin_client_):
    first = job(JobStatus.FAILED, UNIQUE, unique_key="k7")
    second = job(JobStatus.FAILED, UNIQUE, unique_key="k7")
    response = _action(admin_client_, "retry_jobs", [first, second])
    message = str(next(iter(response.context["messages"])))
    assert message.startswith("Retried 1 job. Skipped 1: 1 unique job whose key already has")
    statuses = sorted(Job.objects.filter(unique_key="k7").values_list("status", flat=True))
    assert statuses == [JobStatus.FAILED, JobStatus.READY]


def test_cancel_cancels_ready_jobs_only(admin_client_):
    ready = job()
    running = job(JobStatus.RUNNING, claimed_by="w-1")
    response = _action(admin_client_, "cancel_jobs", [ready, running])
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Cancelled 1 job. Skipped 1: 1 running "
        "(only ready jobs can be cancelled; a running job is not interrupted)."
    )
    ready.refresh_from_db()
    assert ready.status == JobStatus.CANCELLED and ready.finished_at is not None
    assert ready.errors[-1]["exception_class_path"].endswith("JobCancelled")
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING


def test_retry_and_cancel_buttons_on_the_job_page(admin_client_):
    failed = job(JobStatus.FAILED, BOOM)
    retry_url = reverse("admin:django_dbtasks_job_retry", args=[failed.pk])
    assert admin_client_.get(retry_url).status_code == 405
    admin_client_.post(retry_url)
    assert Job.objects.get(pk=failed.pk).status == JobStatus.READY
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert 'name="cancel"' in page and 'name="retry"' not in page
    admin_client_.post(reverse("admin:django_dbtasks_job_cancel", args=[failed.pk]))
    assert Job.objects.get(pk=failed.pk).status == JobStatus.CANCELLED


# Permissions (on every page; the job admin owns the overview's)


def test_view_only_staff_sees_everything_but_cannot_retry_or_cancel(viewer):
    failed = job(JobStatus.FAILED, BOOM, errors=[error("x")])
    ready = job()
    page = text(viewer.get(JOBS))
    assert "retry_jobs" not in page and "cancel_jobs" not in page
    _action(viewer, "retry_jobs", [failed])
    _action(viewer, "cancel_jobs", [ready])
    assert (
        viewer.post(reverse("admin:django_dbtasks_job_retry", args=[failed.pk])).status_code == 403
    )
    assert (
        viewer.post(reverse("admin:django_dbtasks_job_cancel", args=[ready.pk])).status_code == 403
    )
    assert Job.objects.get(pk=failed.pk).status == JobStatus.FAILED
    assert Job.objects.get(pk=ready.pk).status == JobStatus.READY
    detail = text(viewer.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert "ValueError: x" in detail
    assert 'name="retry"' not in detail and 'name="_save"' not in detail
    assert viewer.get(OVERVIEW).status_code == 200
    schedule = Schedule.objects.create(name="s", task_path=ADD, cron="@daily", args=[1, 2])
    form = text(viewer.get(reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk])))
    assert 'name="_save"' not in form and "fire_now" not in text(viewer.get(SCHEDULES))
    secret = Schedule.objects.create(
        name="api", task_path=SECRET, cron="@daily", args=[7], kwargs={"api_key": "sk-live-123"}
    )
    form = text(viewer.get(reverse("admin:django_dbtasks_schedule_change", args=[secret.pk])))
    assert "sk-live-123" not in form and REDACTED in form
    assert viewer.get(WORKERS).status_code == 200


def test_non_staff_users_are_sent_to_the_login_page():
    user = User.objects.create_user("someone", password="pw")
    client = Client()
    client.force_login(user)
    for url in (JOBS, OVERVIEW, SCHEDULES, WORKERS):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    anonymous = Client().get(OVERVIEW)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
