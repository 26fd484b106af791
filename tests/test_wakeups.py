"""How an idle worker learns of new jobs: a notification wakes it, polling is the fallback."""

from __future__ import annotations

import time

import pytest

from django_dbtasks.compat import TaskResultStatus

from .conftest import postgres_only, wait_until
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@postgres_only
def test_a_notification_wakes_an_idle_worker_long_before_its_poll(start_worker):
    worker = start_worker(DBTASKS_TEST_POLL="30")
    wait_until(lambda: "started" in worker.output())
    time.sleep(1.5)  # idle, sleeping until its 30 s poll
    enqueued = time.monotonic()
    result = tasks.add.enqueue(1, 2)
    result.wait(timeout=10)
    assert time.monotonic() - enqueued < 2, "woken by NOTIFY, not by the 30 s poll"
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_without_notifications_polling_finishes_every_job(start_worker):
    start_worker("--concurrency", "2", DBTASKS_TEST_NOTIFY="0", DBTASKS_TEST_POLL="0.2")
    time.sleep(1)
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(300)])
    for result in results:
        result.wait(timeout=60)
    assert {r.return_value for r in results} == {2 * i for i in range(300)}
