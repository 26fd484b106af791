"""How an idle worker learns of new jobs: a notification wakes it, polling is the fallback."""

from __future__ import annotations

import time

import pytest

from django_dbtasks.compat import TaskResultStatus

from .conftest import postgres_only, wait_until
from .testapp import tasks
from .turns import kind, started, statements_of

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


@postgres_only
@pytest.mark.turns
def test_a_notification_is_not_lost_in_the_workers_own_statements():
    """The worker LISTENs on a connection of its own, which runs no other statement.

    On the worker's own connection, the next statement it ran (a heartbeat, a
    completion) read the waiting notification into psycopg's backlog, so the
    socket never became readable and the job waited for the poll.
    """
    with started() as loop:
        assert [kind(sql) for sql in statements_of(loop)] == ["claim"]  # and now LISTENs
        assert statements_of(loop) == []  # idle: the next poll is a minute away
        result = tasks.add.enqueue(1, 2)
        time.sleep(0.3)  # its notification has reached the worker's host
        with loop.connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # one of the worker's own statements, meanwhile
        woken = statements_of(loop)  # the wait sees the notification ...
        claims = statements_of(loop)  # ... so this turn claims, long before the poll
        statements_of(loop)
        result.refresh()
    assert woken == [] and [kind(sql) for sql in claims] == ["claim"]
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_without_notifications_polling_finishes_every_job(start_worker):
    start_worker("--concurrency", "2", DBTASKS_TEST_NOTIFY="0", DBTASKS_TEST_POLL="0.2")
    time.sleep(1)
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(300)])
    for result in results:
        result.wait(timeout=60)
    assert {r.return_value for r in results} == {2 * i for i in range(300)}
