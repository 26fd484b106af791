"""``enqueue_many()`` at bulk speed, with the standard API's promises kept.

It encodes each batch of 1,000 calls as one JSON document, inserts it with one
statement, builds the results without the dataclass machinery and looks up
``task_enqueued``'s receivers once per call. These tests hold each shortcut
to what the plain way gives: the same results (equal to ``DbTaskResult.build``
and to what ``get_result`` reads back), one signal per job in order, the
same rows and the same errors, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtasks import serialization
from django_dbtasks.base import DbTaskResult
from django_dbtasks.compat import TaskResultStatus, task_enqueued
from django_dbtasks.exceptions import ArgumentNotSerializable
from django_dbtasks.models import Job

from .test_storable_properties import fits_json_as_sent, json_values
from .testapp import tasks

PATH = "tests.testapp.tasks.takes_anything"

#: Calls whose arguments Django's ``normalize_json`` changes (tuples become lists,
#: nested) beside plain ones, and text that looks like JSON's own brackets.
MIXED_CALLS = [
    ((), {}),
    ((1, "two", 3.5, None, True), {"k": "v"}),
    (((1, (2, 3)),), {"nested": {"a": [1, {"b": (4,)}]}}),
    (("[{not a list}]",), {"x": "]["}),
    (("é😀",), {}),
]


def _built(result: DbTaskResult) -> DbTaskResult:
    """The result ``DbTaskResult.build`` makes for the same job: the reference."""
    return DbTaskResult.build(
        result.task,
        int(result.id),
        TaskResultStatus.READY,
        backend=result.backend,
        args=result.args,
        kwargs=result.kwargs,
        enqueued_at=result.enqueued_at,
    )


@pytest.mark.django_db
def test_each_result_equals_the_one_build_makes_and_the_one_read_back():
    results = tasks.takes_anything.enqueue_many(MIXED_CALLS)
    assert [(r.args, r.kwargs) for r in results] == [
        ([], {}),
        ([1, "two", 3.5, None, True], {"k": "v"}),
        ([[1, [2, 3]]], {"nested": {"a": [1, {"b": [4]}]}}),  # normalized as Django does
        (["[{not a list}]"], {"x": "]["}),
        (["é😀"], {}),
    ]
    for result in results:
        assert result == _built(result)  # every field, the dataclass's own __eq__
        assert result.errors == [] and result.worker_ids == [] and result.attempts == 0
        assert result.status == TaskResultStatus.READY and not result.is_finished
        with pytest.raises(ValueError, match="not finished yet"):
            _ = result.return_value
        read = tasks.takes_anything.get_result(result.id)
        assert (read.id, read.args, read.kwargs, read.enqueued_at, read.task) == (
            result.id,
            result.args,
            result.kwargs,
            result.enqueued_at,
            result.task,
        )
    assert results[0].enqueued_at is not None and results[0].enqueued_at.tzinfo is not None


@pytest.mark.django_db
def test_results_of_one_batch_do_not_share_their_lists():
    first, second = tasks.noop.enqueue_many([((), {}), ((), {})])
    first.errors.append("mine")
    first.worker_ids.append("w")
    first.args.append(1)
    assert second.errors == [] and second.worker_ids == [] and second.args == []


@pytest.mark.django_db
def test_a_result_refreshes_and_cancels_like_any_other():
    [result] = tasks.add.enqueue_many([((1, 2), {})])
    assert result.cancel() is True
    assert result.status == TaskResultStatus.FAILED  # refreshed in place
    assert Job.objects.get(pk=result.id).status == "CANCELLED"


@pytest.mark.django_db
def test_each_result_names_its_own_row_across_batches():
    """2,500 calls are three INSERTs; each result's id is the row of its own call."""
    results = tasks.takes_anything.enqueue_many([((i,), {"n": f"call-{i}"}) for i in range(2500)])
    rows = dict(Job.objects.values_list("pk", "args"))
    assert len(rows) == 2500
    for i, result in enumerate(results):
        assert result.args == [i] and result.kwargs == {"n": f"call-{i}"}
        assert rows[int(result.id)] == [i]
    assert [int(r.id) for r in results] == sorted(int(r.id) for r in results)


@pytest.mark.django_db
def test_deferred_and_prioritised_batches_keep_their_options():
    from datetime import timedelta

    from django.utils import timezone

    when = timezone.now() + timedelta(hours=1)
    shaped = tasks.add.using(run_after=when, priority=7, queue_name="default")
    results = shaped.enqueue_many([((1, 2), {}), ((3, 4), {})])
    for result in results:
        assert (result.task.run_after, result.task.priority) == (when, 7)
        job = Job.objects.get(pk=result.id)
        assert (job.run_after, job.priority, job.args) == (when, 7, result.args)
        assert tasks.add.get_result(result.id).task.run_after == when


# task_enqueued


@pytest.fixture
def received():
    """Every ``task_enqueued`` sent, as ``(sender, task_result)``, in order."""
    sent: list[tuple[Any, Any]] = []

    def receiver(sender, task_result, signal, **kwargs):
        assert signal is task_enqueued
        sent.append((sender, task_result))

    task_enqueued.connect(receiver)
    yield sent
    task_enqueued.disconnect(receiver)


@pytest.mark.django_db
def test_one_task_enqueued_per_job_with_its_result(received):
    results = tasks.takes_anything.enqueue_many(MIXED_CALLS * 300)  # 1,500: two INSERTs
    assert len(received) == len(results) == 1500
    assert [result for _, result in received] == results
    assert all(sent is returned for (_, sent), returned in zip(received, results, strict=True))
    senders = {sender for sender, _ in received}
    assert senders == {type(tasks.takes_anything.get_backend())}


@pytest.mark.django_db
def test_a_receiver_for_another_sender_hears_nothing():
    heard: list[Any] = []

    def receiver(sender, task_result, **kwargs):
        heard.append(task_result)

    task_enqueued.connect(receiver, sender=object)
    try:
        tasks.noop.enqueue_many([((), {})] * 3)
    finally:
        task_enqueued.disconnect(receiver, sender=object)
    assert heard == []


@pytest.mark.django_db
def test_an_async_receiver_is_sent_each_result_too():
    heard: list[str] = []

    async def receiver(sender, task_result, **kwargs):
        heard.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        results = tasks.noop.enqueue_many([((), {})] * 4)
    finally:
        task_enqueued.disconnect(receiver)
    assert heard == [r.id for r in results]


@pytest.mark.django_db
def test_without_any_receiver_the_jobs_are_still_enqueued():
    saved = list(task_enqueued.receivers)
    task_enqueued.receivers.clear()  # Django's own log receiver too
    task_enqueued.sender_receivers_cache.clear()
    try:
        results = tasks.noop.enqueue_many([((), {})] * 5)
    finally:
        task_enqueued.receivers[:] = saved
        task_enqueued.sender_receivers_cache.clear()
    assert Job.objects.filter(pk__in=[r.id for r in results], status="READY").count() == 5


@pytest.mark.django_db
def test_a_receiver_that_raises_stops_the_call_after_the_jobs_are_inserted():
    """As ``enqueue()``: the signal is sent after the INSERT, and its error is the caller's."""

    def receiver(sender, task_result, **kwargs):
        raise RuntimeError("receiver failed")

    task_enqueued.connect(receiver)
    try:
        with pytest.raises(RuntimeError, match="receiver failed"):
            tasks.noop.enqueue_many([((), {})] * 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert Job.objects.count() == 2


# The door: the same checks and the same errors as enqueue()


BAD_VALUES = [
    10**5000,
    {(1, 2): 3},
    {1: "one"},
    {"ok": {None: 1}},
    "a\x00b",
    ["x\ud800"],
    float("inf"),
    float("nan"),
    object(),
]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: type(v).__name__)
def test_a_bad_argument_anywhere_in_a_batch_gives_enqueues_error(bad):
    with pytest.raises(ArgumentNotSerializable) as alone:
        tasks.takes_anything.enqueue("fine", bad)
    calls = [(("fine",), {})] * 1500 + [(("fine", bad), {})] + [(("after",), {})]
    with transaction.atomic():
        with pytest.raises(ArgumentNotSerializable) as batch:
            tasks.takes_anything.enqueue_many(calls)
        tasks.takes_anything.enqueue("usable")  # the caller's transaction goes on
    assert str(batch.value) == str(alone.value)
    assert list(Job.objects.values_list("args", flat=True)) == [["usable"]]


@pytest.mark.django_db
def test_nesting_is_refused_past_the_limit_only():
    def nested(depth: int) -> list:
        value: list = []
        for _ in range(depth - 1):
            value = [value]
        return value

    deepest = nested(serialization.MAX_NESTING)
    [result] = tasks.takes_anything.enqueue_many([((deepest,), {})])
    assert Job.objects.get(pk=result.id).args == [deepest]
    with pytest.raises(ArgumentNotSerializable, match="nested more than 100 levels deep"):
        tasks.takes_anything.enqueue_many([((1,), {})] * 10 + [((), {"k": [deepest]})])
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_each_shape_of_call_is_checked_and_the_first_misfit_named():
    calls = [((1, 2), {})] * 5 + [((1,), {"b": 2})] * 5 + [((1, 2), {"c": 3}), ((1,), {})]
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument 'c'")):
        tasks.add.enqueue_many(calls)
    with pytest.raises(TypeError, match="too many positional arguments"):
        tasks.add.enqueue_many([((1, 2), {}), ((1, 2, 3), {})])
    assert not Job.objects.exists()


def _expected(calls: list[tuple[list[Any], dict[str, Any]]]) -> Any:
    """The oracle: ``encode_arguments`` on each call, or the error it raises first."""
    try:
        encoded = [serialization.encode_arguments(PATH, a, k) for a, k in calls]
    except ArgumentNotSerializable as error:
        return str(error)
    return [[json.loads(a), json.loads(k)] for a, k in encoded]


calls_strategy = st.lists(
    st.tuples(
        st.lists(json_values, max_size=3),
        st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    ),
    max_size=6,
)


@given(calls_strategy)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([([], {})] * 3)
@example([(["a\x00"], {})])
@example([([[[[]]]] * 40, {})] * 3)  # many brackets, none deep
@example([([{"x": 1}], {}), ([{2: 1}], {})])
def test_a_batch_document_holds_what_each_call_would_or_fails_as_it_would(calls):
    """The one document of a batch: the same values as a document per call, the same
    first error, and ``holds_containers`` False only when normalizing changes nothing."""
    expected = _expected(calls)
    try:
        document = serialization.encode_calls(PATH, calls)
    except ArgumentNotSerializable as error:
        assert str(error) == expected
        assert not all(fits_json_as_sent(v) for a, k in calls for v in [*a, *k.values()])
        return
    assert json.loads(document) == expected
    if not serialization.holds_containers(document, len(calls)):
        for args, kwargs in calls:
            assert all(not isinstance(v, list | dict | tuple) for v in [*args, *kwargs.values()])
