"""The schedule admin: the form and its messages, the actions, the last fire's outcome."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.models import Job, JobStatus, Schedule

from .shared_admin import ADD, JOBS, SCHEDULES, job, staff, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


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
