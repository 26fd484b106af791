"""The admin: lists, detail pages, actions, permissions, the overview and its numbers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.models import Job, JobStatus, Schedule, Worker
from django_dbtasks.sensitive import REDACTED

from .testapp import tasks

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:django_dbtasks_job_changelist")
OVERVIEW = reverse("admin:django_dbtasks_job_overview")
SCHEDULES = reverse("admin:django_dbtasks_schedule_changelist")
WORKERS = reverse("admin:django_dbtasks_worker_changelist")
ADD = tasks.add.module_path
BOOM = tasks.boom.module_path
SECRET = tasks.calls_an_api.module_path
UNIQUE = tasks.unique_per_user.module_path


def job(status: str = JobStatus.READY, task_path: str = ADD, **fields) -> Job:
    """A job row in a given state, written directly (no worker needed to show it)."""
    now = timezone.now()
    if status != JobStatus.READY:
        fields.setdefault("started_at", now - timedelta(seconds=3))
        fields.setdefault("attempts", 1)
    if status in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED):
        fields.setdefault("finished_at", now)
    fields.setdefault("args", [1, 2])
    return Job.objects.create(status=status, task_path=task_path, **fields)


def error(message: str, line: str = 'File "tasks.py", line 7, in boom') -> dict:
    return {
        "exception_class_path": "builtins.ValueError",
        "traceback": f"Traceback (most recent call last):\n  {line}\nValueError: {message}\n",
        "message": f"ValueError: {message}",
    }


def staff(username: str, *codenames: str, superuser: bool = False) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.is_superuser = superuser
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", "view_job", "view_schedule", "view_worker")


def text(response) -> str:
    return response.content.decode()


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


# Permissions


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


# The overview


def _stat(page: str, queue: str, name: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}"[^>]*>(.*?)</tr>', page, re.S)
    assert row, queue
    cell = re.search(rf'data-stat="{name}">(?:<a [^>]*>)?([^<]*)<', row.group(1))
    assert cell, name
    return cell.group(1).strip()


def test_overview_numbers_for_a_known_set_of_rows(admin_client_):
    now = timezone.now()
    # Half-minute offsets: PostgreSQL's now() is the test transaction's start, a little earlier.
    job(run_after=now - timedelta(minutes=5, seconds=30))
    job(run_after=now + timedelta(hours=1))
    job(JobStatus.RUNNING, claimed_by="w-1", lease_expires_at=now + timedelta(seconds=30))
    for minutes in (1.5, 1.5, 2.5, 30.5):
        job(JobStatus.SUCCESSFUL, finished_at=now - timedelta(minutes=minutes))
    job(JobStatus.FAILED, finished_at=now - timedelta(minutes=2.5))
    job(JobStatus.FAILED, finished_at=now - timedelta(hours=3))  # outside the window
    job(JobStatus.CANCELLED)
    job(JobStatus.SUCCESSFUL, queue_name="emails", finished_at=now - timedelta(hours=2))
    Worker.objects.create(id="w-1", hostname="h", pid=1, queues=["default", "emails"])
    Worker.objects.create(
        id="w-2",
        hostname="h",
        pid=2,
        queues=["default"],
        last_heartbeat_at=now - timedelta(hours=1),
    )
    page = text(admin_client_.get(OVERVIEW))
    assert '<meta http-equiv="refresh" content="10">' in page
    assert _stat(page, "default", "ready") == "2"
    assert _stat(page, "default", "due") == "1"
    assert _stat(page, "default", "oldest-wait").startswith("5 min")
    assert _stat(page, "default", "running") == "1"
    assert _stat(page, "default", "successful-window") == "4"
    assert _stat(page, "default", "rate") == "0.8"  # 4 jobs in minutes 1 and 2, over 5 minutes
    assert _stat(page, "default", "failed-window") == "1"
    assert _stat(page, "default", "failure-rate") == "20.0%"
    assert _stat(page, "default", "failed-total") == "2"
    assert _stat(page, "default", "cancelled-total") == "1"
    assert _stat(page, "default", "workers") == "1"
    assert _stat(page, "emails", "successful-window") == "0"
    assert _stat(page, "emails", "failure-rate") == "–"
    assert _stat(page, "emails", "workers") == "1"
    assert _stat(page, "low", "ready") == "0"  # configured, empty
    # The chart: one bar of 2 successful a minute ago, the tallest, at full height.
    assert "<title>1 min ago: 2 successful, 0 failed</title>" in page
    assert "<title>2 min ago: 1 successful, 1 failed</title>" in page
    assert 'height="120.00"' in page
    paused = text(admin_client_.get(OVERVIEW + "?refresh=0"))
    assert 'http-equiv="refresh"' not in paused and "Not reloading" in paused
    assert "http" not in re.search(r"<svg.*?</svg>", page, re.S).group(0).replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_app_index_links_to_the_overview(admin_client_):
    page = text(admin_client_.get(reverse("admin:app_list", args=["django_dbtasks"])))
    assert OVERVIEW in page


# Workers


def test_worker_list_and_page_show_state_and_current_jobs(admin_client_):
    now = timezone.now()
    Worker.objects.create(id="w-live", hostname="web-1", pid=10, queues=["default"], concurrency=4)
    Worker.objects.create(
        id="w-dead",
        hostname="web-2",
        pid=11,
        queues=["emails"],
        last_heartbeat_at=now - timedelta(hours=2),
    )
    running = job(JobStatus.RUNNING, claimed_by="w-live", progress=70, progress_message="almost")
    job(JobStatus.RUNNING, claimed_by="w-live")
    page = text(admin_client_.get(WORKERS))
    live = re.search(r"<tr.*?w-live.*?</tr>", page, re.S).group(0)
    dead = re.search(r"<tr.*?w-dead.*?</tr>", page, re.S).group(0)
    assert ">live<" in live and "2 running" in live and "web-1" in live
    assert ">dead<" in dead and "0 running" in dead and "2 h 00 min ago" in dead
    assert text(admin_client_.get(WORKERS + "?state=live")).count("w-dead") == 0
    current = text(admin_client_.get(JOBS + "?status__exact=RUNNING&claimed_by=w-live"))
    assert set(re.findall(r'name="_selected_action" value="(\d+)"', current)) == {
        str(j) for j in Job.objects.filter(claimed_by="w-live").values_list("pk", flat=True)
    }
    detail = text(admin_client_.get(reverse("admin:django_dbtasks_worker_change", args=["w-live"])))
    assert reverse("admin:django_dbtasks_job_change", args=[running.pk]) in detail
    assert 'value="70"' in detail and "almost" in detail


# Schedules


def test_schedule_form_offers_registered_tasks_only_and_shows_clean_messages(admin_client_):
    add_url = reverse("admin:django_dbtasks_schedule_add")
    form = text(admin_client_.get(add_url))
    assert f'<option value="{ADD}">' in form
    assert 'name="task_path"' in form and "<select" in form
    data = {
        "name": "hourly-add",
        "task_path": "os.system",
        "cron": "not a cron",
        "timezone": "Mars/Olympus",
        "args": "[1, 2]",
        "kwargs": "{}",
        "missed": "LATEST",
        "enabled": "on",
    }
    page = text(admin_client_.post(add_url, data))
    assert "Select a valid choice. os.system is not one of the available choices." in page
    assert "is not a valid cron expression" in page
    assert "is not a known IANA timezone" in page
    assert not Schedule.objects.exists()
    data.update(task_path=ADD, cron="0 * * * *", timezone="UTC")
    assert admin_client_.post(add_url, data).status_code == 302
    schedule = Schedule.objects.get(name="hourly-add")
    page = text(
        admin_client_.get(reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk]))
    )
    assert "Every hour" in page
    assert len(re.findall(r"<li>\d{4}-\d\d-\d\d \d\d:00:00 UTC &middot; ", page)) == 5


def test_schedule_actions_and_last_outcome(admin_client_):
    schedule = Schedule.objects.create(name="adder", task_path=ADD, cron="@daily", args=[1, 2])
    post = {"_selected_action": [schedule.pk], "index": 0}
    response = admin_client_.post(SCHEDULES, {**post, "action": "fire_now"}, follow=True)
    fired = Job.objects.get(schedule=schedule)
    fired_url = reverse("admin:django_dbtasks_job_change", args=[fired.pk])
    assert f'Adder: enqueued job <a href="{fired_url}">' in text(response)
    assert fired.status == JobStatus.READY and fired.args == [1, 2]
    admin_client_.post(SCHEDULES, {**post, "action": "disable_schedules"})
    assert not Schedule.objects.get(pk=schedule.pk).enabled
    admin_client_.post(SCHEDULES, {**post, "action": "enable_schedules"})
    assert Schedule.objects.get(pk=schedule.pk).enabled
    when = timezone.now().replace(microsecond=0)
    Schedule.objects.filter(pk=schedule.pk).update(last_fire_at=when)
    job(JobStatus.FAILED, ADD, schedule=schedule, scheduled_for=when)
    page = text(admin_client_.get(SCHEDULES))
    assert "At 00:00" in page  # the readable description
    assert re.search(r'#\d+</a> <span class="dbtasks-status dbtasks-status-failed"', page)
    jobs = text(admin_client_.get(JOBS + f"?schedule__exact={schedule.pk}"))
    assert len(re.findall(r'name="_selected_action"', jobs)) == 2  # fired now, and at its time
