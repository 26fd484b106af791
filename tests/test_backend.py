"""The standard task API on our backend, in the test process (no worker)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from django_dbtasks.base import DbTask, DbTaskResult
from django_dbtasks.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from django_dbtasks.exceptions import ArgumentNotSerializable, ResultTimeout
from django_dbtasks.models import Job, JobStatus

from .testapp import tasks

pytestmark = pytest.mark.django_db


def test_enqueue_writes_a_ready_row_and_returns_a_standard_result():
    result = tasks.add.enqueue(2, b=3)

    job = Job.objects.get(pk=result.id)
    assert (job.task_path, job.args, job.kwargs) == ("tests.testapp.tasks.add", [2], {"b": 3})
    assert job.status == JobStatus.READY and job.queue_name == "default"
    assert job.enqueued_at is not None and job.run_after is not None
    assert isinstance(result, DbTaskResult)
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at == job.enqueued_at
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_standard_decorator_returns_our_task_class_and_enqueues():
    assert isinstance(tasks.standard_multiply, DbTask)
    result = tasks.standard_multiply.enqueue(6, 7)
    assert Job.objects.get(pk=result.id).task_path == "tests.testapp.tasks.standard_multiply"


def test_get_result_reads_the_row_from_any_process():
    result = tasks.add.enqueue(1, 1)
    Job.objects.filter(pk=result.id).update(status="SUCCESSFUL", return_value=2)

    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.return_value == 2
    result.refresh()
    assert result.return_value == 2
    assert async_to_sync(tasks.add.aget_result)(result.id).return_value == 2


def test_get_result_of_unknown_id_raises_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("999999")
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("not-a-number")


def test_aenqueue_inserts_a_row():
    result = async_to_sync(tasks.add.aenqueue)(4, 5)
    assert Job.objects.get(pk=result.id).args == [4, 5]


def test_delay_is_enqueue():
    result = tasks.add.delay(1, 2)
    assert Job.objects.filter(pk=result.id, task_path="tests.testapp.tasks.add").exists()


def test_priority_queue_and_run_after_are_stored():
    when = timezone.now() + dt.timedelta(hours=1)
    result = tasks.record_email.using(priority=50, run_after=when).enqueue("x")
    job = Job.objects.get(pk=result.id)
    assert (job.priority, job.queue_name, job.run_after) == (50, "emails", when)


def test_enqueue_sends_task_enqueued():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id]


def test_enqueue_many_inserts_every_call_in_one_go(django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # savepoint/begin, one INSERT, release/commit
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(50)])
    assert len(results) == 50
    ids = [int(r.id) for r in results]
    assert sorted(Job.objects.filter(pk__in=ids).values_list("args", flat=True)) == sorted(
        [[i, i] for i in range(50)]
    )


def test_enqueue_many_is_all_or_nothing():
    with pytest.raises(ArgumentNotSerializable):
        tasks.add.enqueue_many([((1, 2), {}), ((object(), 2), {})])
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_a_rolled_back_transaction_leaves_no_job():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        tasks.add.enqueue(1, 2)
        assert Job.objects.count() == 1
        raise Rollback
    assert Job.objects.count() == 0


def test_model_instance_argument_is_refused_with_advice():
    user = User.objects.create(username="ada")
    with pytest.raises(ArgumentNotSerializable) as excinfo:
        tasks.add.enqueue(user, 1)
    message = str(excinfo.value)
    assert "positional argument 0 is a User (django.contrib.auth.models.User)" in message
    assert "primary key" in message and "user.pk" in message
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({1, 2}, "a set (builtins.set)"),
        (b"raw", "a bytes (builtins.bytes)"),
        (float("nan"), "the float nan"),
    ],
)
def test_non_json_arguments_are_refused_naming_the_type(value, named):
    # The message names the argument, where inside it the value is, and its type.
    with pytest.raises(
        ArgumentNotSerializable,
        match=re.escape(f"keyword argument 'b' at ['nested'][0] is {named}"),
    ):
        tasks.add.enqueue(1, b={"nested": [value]})
    assert not Job.objects.exists()


def test_queue_not_in_queues_is_refused():
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)


def test_naive_run_after_is_refused():
    with pytest.raises(InvalidTask, match="aware datetime"):
        tasks.add.using(run_after=dt.datetime(2030, 1, 1)).enqueue(1, 2)


def test_invalid_task_options_are_refused():
    with pytest.raises(InvalidTask, match="max_attempts"):
        DbTask(func=tasks.add.func, max_attempts=0)
    with pytest.raises(InvalidTask, match="timeout"):
        DbTask(func=tasks.add.func, timeout=-1)


def test_cancel_only_applies_to_jobs_that_have_not_started():
    waiting = tasks.add.enqueue(1, 2)
    running = tasks.add.enqueue(3, 4)
    Job.objects.filter(pk=running.id).update(status="RUNNING")

    assert waiting.cancel() is True
    assert running.cancel() is False
    assert Job.objects.get(pk=waiting.id).status == JobStatus.CANCELLED
    assert Job.objects.get(pk=running.id).status == JobStatus.RUNNING
    assert waiting.status == TaskResultStatus.FAILED
    assert waiting.errors[0].exception_class_path == "django_dbtasks.exceptions.JobCancelled"


def test_wait_times_out_with_a_clear_error():
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(ResultTimeout, match=f"Job {result.id} .* still READY after 0.2 s"):
        result.wait(timeout=0.2)
