"""The overview's warning banners: the health rules of ``alerts``, as admin messages.

The same rules decide ``manage.py tasks health`` (tests/test_tasks_command.py);
here the rows are written directly and the page is read with Django's client.
"""

from __future__ import annotations

import copy
import html
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings

from django_dbtasks import queries
from django_dbtasks.models import Worker

from .shared_admin import OVERVIEW, job, staff, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


def warnings(client: Client) -> list[str]:
    """The texts of the page's warning messages (Django admin's ``messagelist``)."""
    page = text(client.get(OVERVIEW))
    return [html.unescape(m) for m in re.findall(r'<li class="warning">(.*?)</li>', page, re.S)]


def ago(seconds: float):
    return queries.database_now(connection) - timedelta(seconds=seconds)


def worker(worker_id: str, queues: list, heartbeat_age: float = 0, **fields) -> Worker:
    fields.setdefault("hostname", "web-1")
    return Worker.objects.create(
        id=worker_id, pid=4242, queues=queues, last_heartbeat_at=ago(heartbeat_age), **fields
    )


def with_alert_wait(seconds: float) -> dict:
    tasks = copy.deepcopy(settings.TASKS)
    tasks["default"]["OPTIONS"]["ALERT_WAIT_SECONDS"] = seconds
    return tasks


def test_a_healthy_queue_shows_no_banner(admin_client_):
    worker("w-all", [])  # no queues listed: every queue of its alias
    worker("w-gone", ["default"], heartbeat_age=2 * 3600)  # died long ago: history
    worker("w-stopped", ["emails"], heartbeat_age=600, stopped_at=ago(600))  # exited cleanly
    job(run_after=ago(30))
    page = text(admin_client_.get(OVERVIEW))
    assert warnings(admin_client_) == [] and 'class="messagelist"' not in page


def test_unserved_queue_long_wait_and_recent_death_each_show_a_warning(admin_client_):
    worker("w-live", ["default", "low"])
    worker("w-dead", ["emails"], heartbeat_age=600, hostname="<script>alert(1)</script>")
    job(queue_name="emails", run_after=ago(930))  # due for 15 minutes, nobody serves it
    job(queue_name="emails", run_after=ago(-3600))  # not due: no part in the rules
    job(queue_name="low", run_after=ago(5))

    found = warnings(admin_client_)

    assert len(found) == 3, found
    assert found[0].startswith("Queue 'emails' has 1 due job(s) and no live worker")
    assert found[1].startswith("Queue 'emails': the oldest due job has waited 15m")
    assert "more than 5m00s" in found[1]
    assert found[2].startswith("Worker <script>alert(1)</script>:4242 (w-dead) died")
    page = text(admin_client_.get(OVERVIEW))
    assert "<script>alert(1)</script>" not in page  # escaped, as every message is
    with override_settings(TASKS=with_alert_wait(0)):  # the wait rule turned off
        assert [w.split(" ")[1] for w in warnings(admin_client_)] == [
            "'emails'",
            "<script>alert(1)</script>:4242",
        ]
    with override_settings(TASKS=with_alert_wait(3600)):
        assert not [w for w in warnings(admin_client_) if "oldest due job" in w]


def test_a_view_only_user_sees_the_banners_too(admin_client_):
    job(queue_name="emails", run_after=ago(10))
    viewer = staff("viewer", "view_job")
    assert [w.split(":")[0] for w in warnings(viewer)] == [
        "Queue 'emails' has 1 due job(s) and no live worker"
    ]
