"""What the admin tests share: page addresses, task paths, rows written directly, clients.

Each page has its own test file (``test_admin_jobs``, ``test_admin_schedules``,
``test_admin_workers``, ``test_admin_overview``); the doors tests use these too.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.models import Job, JobStatus

from .testapp import tasks

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


def text(response) -> str:
    return response.content.decode()
