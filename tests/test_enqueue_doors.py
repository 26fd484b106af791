"""The enqueue door: a call that cannot run, or data that would not arrive as sent,
is refused at ``enqueue()`` with a message saying what and where; nothing is
written and the caller's transaction goes on. Rows that did not come through
that door (SQL, an older release) are failed by the worker, alone."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_dbtasks.compat import InvalidTask
from django_dbtasks.exceptions import ArgumentNotSerializable
from django_dbtasks.models import Job, JobStatus

from .conftest import IS_POSTGRES, run_worker
from .testapp import tasks
from .testapp.models import Execution

JOB = Job._meta.db_table


@pytest.mark.django_db
class TestTheCallMustFitTheTask:
    def test_missing_argument(self):
        with pytest.raises(TypeError, match=re.escape("missing a required argument: 'b'")) as e:
            tasks.add.enqueue(1)
        assert "Cannot enqueue tests.testapp.tasks.add" in str(e.value)
        assert "the task is add(a, b)" in str(e.value)
        assert not Job.objects.exists()

    def test_unknown_keyword_and_too_many_arguments(self):
        with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
            tasks.add.enqueue(1, 2, c=3)
        with pytest.raises(TypeError, match="too many positional arguments"):
            tasks.add.enqueue(1, 2, 3)
        assert not Job.objects.exists()

    def test_context_tasks_are_bound_without_their_context(self):
        with pytest.raises(TypeError, match="missing a required argument: 'label'") as e:
            tasks.record_run.enqueue()
        assert "record_run(label)" in str(e.value)
        assert tasks.record_run.enqueue("fits").status == "READY"

    def test_django_s_own_decorator_and_async_tasks_are_checked_too(self):
        with pytest.raises(TypeError, match="missing a required argument: 'b'"):
            tasks.standard_multiply.enqueue(6)
        with pytest.raises(TypeError, match="missing a required argument: 'value'"):
            tasks.async_double.enqueue()
        assert not Job.objects.exists()

    def test_enqueue_many_refuses_the_batch_with_a_bad_call(self):
        with pytest.raises(TypeError, match="missing a required argument: 'b'"):
            tasks.add.enqueue_many([((1, 2), {}), ((3,), {}), ((5, 6), {})])
        assert not Job.objects.exists()

    def test_a_refused_call_leaves_the_callers_transaction_usable(self):
        with transaction.atomic():
            with pytest.raises(TypeError):
                tasks.add.enqueue(1)
            kept = tasks.add.enqueue(1, 2)
        assert list(Job.objects.values_list("pk", flat=True)) == [int(kept.id)]


@pytest.mark.django_db
class TestDataMustArriveAsSent:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (10**5000, "is an integer of about 5,001 digits, too large to store"),
            ({(1, 2): 3}, "has the dict key (1, 2) (of type tuple)"),
            ({1: "one"}, "has the dict key 1 (of type int): JSON object keys are text"),
            ({"ok": {None: 1}}, "at ['ok'] has the dict key None (of type NoneType)"),
            ("a\x00b", "has the character U+0000 (NUL)"),
            (["x\ud800"], "at [0] has the lone surrogate U+D800"),
            (float("inf"), "is the float inf"),
        ],
        ids=["huge-int", "tuple-key", "int-key", "none-key", "nul", "surrogate", "infinity"],
    )
    def test_refused_with_what_and_where(self, value, message):
        with transaction.atomic():
            with pytest.raises(ArgumentNotSerializable, match=re.escape(message)) as e:
                tasks.takes_anything.enqueue(value)
            assert "Cannot enqueue tests.testapp.tasks.takes_anything: positional argument 0" in (
                str(e.value)
            )
            tasks.takes_anything.enqueue("after")  # the transaction is usable
        assert Job.objects.count() == 1

    def test_deep_nesting_names_the_limit(self):
        value: list = []
        for _ in range(100_000):  # deeper than Python's own recursion
            value = [value]
        with pytest.raises(ArgumentNotSerializable, match="nested more than 100 levels deep"):
            tasks.takes_anything.enqueue(key=value)
        assert not Job.objects.exists()

    def test_unique_tasks_refuse_the_same_way(self):
        with pytest.raises(ArgumentNotSerializable, match="dict key 1 .of type int."):
            tasks.unique_per_user.enqueue(7, note={1: "x"})
        assert not Job.objects.exists()


@pytest.mark.django_db
def test_run_after_given_a_timedelta_shows_the_right_spelling():
    with pytest.raises(InvalidTask) as excinfo:
        tasks.add.using(run_after=dt.timedelta(minutes=10)).enqueue(1, 2)
    message = str(excinfo.value)
    assert "run_after must be an aware datetime, not a timedelta" in message
    assert "run_after=timezone.now() + timedelta(minutes=10)" in message
    assert not Job.objects.exists()
    later = timezone.now() + dt.timedelta(minutes=10)
    assert tasks.add.using(run_after=later).enqueue(1, 2).status == "READY"


def insert_raw(args: str, kwargs: str = "{}", worker_ids: str = "[]") -> int:
    """A row written without enqueue(): by SQL, another program, an older release."""
    cast = "::jsonb" if IS_POSTGRES else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JOB} (task_path, queue_name, priority, status, args, kwargs, "
            "run_after, enqueued_at, attempts, max_attempts, crashes, errors, worker_ids, "
            "claimed_by, progress_message) VALUES ('tests.testapp.tasks.takes_anything', "
            f"'default', 0, 'READY', %s{cast}, %s{cast}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
            f"0, 1, 0, '[]', %s{cast}, '', '')",
            [args, kwargs, worker_ids],
        )
    return Job.objects.order_by("-pk").values_list("pk", flat=True)[0]


@pytest.mark.django_db(transaction=True)
def test_malformed_rows_fail_alone_among_good_ones():
    good = tasks.record_run.enqueue_many([((f"good-{i}",), {}) for i in range(20)])
    malformed = {
        insert_raw('{"not": "a list"}'): "args must be a JSON array and kwargs a JSON object",
        insert_raw("[]", kwargs="[1, 2]"): "not an array and an array",
        insert_raw('"text"'): "not a string and an object",
    }
    odd_history = insert_raw("[]", worker_ids="5")  # runs: the claim starts a new list
    good += tasks.record_run.enqueue_many([((f"good-{i}",), {}) for i in range(20, 40)])
    finished = run_worker("--concurrency", "2", DBTASKS_TEST_PREFETCH="5")

    assert finished.returncode == 0, finished.stderr
    for job_id, reason in malformed.items():
        job = Job.objects.get(pk=job_id)
        assert job.status == JobStatus.FAILED
        [error] = job.errors
        assert error["exception_class_path"] == "django_dbtasks.exceptions.ArgumentNotSerializable"
        assert "a malformed row" in error["traceback"] and reason in error["traceback"], error
    statuses = Job.objects.filter(pk__in=[r.id for r in good]).values_list("status", flat=True)
    assert list(statuses) == [JobStatus.SUCCESSFUL] * 40
    repaired = Job.objects.get(pk=odd_history)
    assert repaired.status == JobStatus.SUCCESSFUL and len(repaired.worker_ids) == 1
    assert Execution.objects.count() == 40


@pytest.mark.django_db(transaction=True)
def test_a_returned_dict_with_a_tuple_key_is_named():
    bad = tasks.returns_tuple_key.enqueue()
    assert run_worker().returncode == 0
    [error] = Job.objects.get(pk=bad.id).errors
    assert error["exception_class_path"] == "builtins.TypeError"  # as Django records it
    assert "The task returned at [1] the dict key (1, 2) (of type tuple)" in error["traceback"]
