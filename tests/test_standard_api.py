"""Django's task API, exactly: what a result read back carries, what is recorded
for a failure, and what Django's own log line says, as under its own backends."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from django_dbtasks.compat import TaskResultStatus

from .conftest import run_worker
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


class TestAResultReadBackIsTheResultEnqueueReturned:
    def test_using_survives_get_result(self):
        when = timezone.now() + dt.timedelta(hours=1)
        task = tasks.record_email.using(priority=20, queue_name="emails", run_after=when)
        enqueued = task.enqueue("x")
        read = tasks.record_email.get_result(enqueued.id)

        assert (read.task.priority, read.task.queue_name, read.task.run_after) == (
            20,
            "emails",
            when,
        )
        assert read.task.backend == "default"
        assert read == enqueued
        assert read.task.max_attempts == tasks.record_email.max_attempts  # still our DbTask

    def test_a_job_never_deferred_reads_back_with_run_after_none(self):
        enqueued = tasks.add.enqueue(1, 2)
        read = tasks.add.get_result(enqueued.id)
        assert read.task.run_after is None and read.task == tasks.add
        assert read == enqueued

    def test_refresh_and_the_async_twins_keep_it_too(self):
        from asgiref.sync import async_to_sync  # thread-sensitive work stays on this thread

        when = timezone.now() + dt.timedelta(hours=1)
        enqueued = tasks.add.using(priority=-5, queue_name="low", run_after=when).enqueue(1, 2)
        enqueued.refresh()
        assert (enqueued.task.priority, enqueued.task.queue_name) == (-5, "low")
        read = async_to_sync(tasks.add.aget_result)(enqueued.id)
        assert read == enqueued
        async_to_sync(read.arefresh)()
        assert read.task.run_after == when


class TestFailuresAreRecordedAsDjangoRecordsThem:
    def test_a_non_json_return_value_is_a_type_error(self):
        result = tasks.returns_a_set.enqueue()
        assert run_worker().returncode == 0
        result.refresh()
        [error] = result.errors
        assert error.exception_class_path == "builtins.TypeError"
        assert error.exception_class is TypeError
        assert "returned a set (builtins.set), which is not JSON serialisable" in error.traceback

    @pytest.mark.parametrize(
        ("task", "expected"),
        [
            (tasks.raises_system_exit, SystemExit),
            (tasks.raises_keyboard_interrupt, KeyboardInterrupt),
        ],
    )
    def test_system_exit_and_keyboard_interrupt(self, task, expected):
        result = task.enqueue()
        assert run_worker().returncode == 0
        result.refresh()
        assert result.status == TaskResultStatus.FAILED
        assert result.errors[0].exception_class is expected


class TestLogLines:
    def test_django_s_own_line_for_a_failed_task_carries_its_traceback(self):
        failing = tasks.boom.enqueue("it broke")
        finished = run_worker()
        assert finished.returncode == 0
        # Django's receiver logs "Task id=... path=... state=FAILED" with exc_info.
        line = re.search(
            rf"Task id={failing.id} path=tests.testapp.tasks.boom state=\S*FAILED\n"
            r"(?P<traceback>Traceback \(most recent call last\):.*?)\n(?:[A-Z]+ |\Z)",
            finished.stderr,
            re.S,
        )
        assert line, finished.stderr
        assert "raise ValueError(message)" in line["traceback"]
        assert "ValueError: it broke" in line["traceback"]
        assert "NoneType: None" not in finished.stderr

    def test_a_final_failure_is_an_error_and_a_retry_a_warning(self):
        flaky = tasks.fails_at_once_each_time.enqueue()  # 3 attempts, no delay
        finished = run_worker()
        assert finished.returncode == 0
        outcomes = re.findall(
            rf"^(\w+) job={flaky.id} task=\S+ outcome=(\w+) .*$", finished.stderr, re.M
        )
        assert outcomes == [("WARNING", "RETRY"), ("WARNING", "RETRY"), ("ERROR", "FAILED")]


class TestTheRestOfTheStandardSurface:
    def test_get_result_through_another_task_is_a_mismatch(self):
        from django_dbtasks.compat import TaskResultMismatch

        other = tasks.boom.enqueue()
        with pytest.raises(TaskResultMismatch):
            tasks.add.get_result(other.id)

    @pytest.mark.parametrize(
        "bad_id", ["", "abc", "1.5", "-3", "0", str(2**63), "9" * 40, None, "1; DROP TABLE x"]
    )
    def test_a_missing_or_malformed_id_is_task_result_does_not_exist(self, bad_id):
        from django_dbtasks.compat import TaskResultDoesNotExist

        tasks.add.enqueue(1, 2)
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(bad_id)
        assert tasks.add.get_backend().cancel(bad_id) is False

    def test_a_task_and_its_result_pickle(self):
        import pickle

        task = tasks.add.using(priority=3)
        assert pickle.loads(pickle.dumps(task)) == task
        result = task.enqueue(1, 2)
        assert pickle.loads(pickle.dumps(result)) == result
        run_worker()
        result.refresh()
        again = pickle.loads(pickle.dumps(result))
        assert again == result and again.return_value == 3

    def test_a_view_enqueues_and_a_later_request_reads_the_result(self, client):
        enqueued = client.post("/tasks-test/add/", {"a": 2, "b": 5})
        assert enqueued.status_code == 201
        job_id = enqueued.json()["id"]
        assert client.get(f"/tasks-test/result/{job_id}/").json() == {"status": "READY"}
        assert run_worker().returncode == 0
        assert client.get(f"/tasks-test/result/{job_id}/").json() == {
            "status": "SUCCESSFUL",
            "return_value": 7,
        }


class TestCeleryShapedCalls:
    def test_apply_async_maps_countdown_eta_queue_and_priority(self):
        before = timezone.now()
        result = tasks.add.apply_async(args=(1, 2), countdown=60, queue="low", priority=7)
        task = tasks.add.get_result(result.id).task
        assert (task.queue_name, task.priority) == ("low", 7)
        assert (
            before + dt.timedelta(seconds=59) < task.run_after < before + dt.timedelta(seconds=70)
        )
        when = timezone.now() + dt.timedelta(hours=2)
        later = tasks.add.apply_async(kwargs={"a": 1, "b": 2}, eta=when)
        assert tasks.add.get_result(later.id).task.run_after == when
        assert tasks.add.apply_async((3, 4)).args == [3, 4]

    @pytest.mark.parametrize(
        ("option", "says"),
        [
            ("expires", "cancel()"),
            ("time_limit", "timeout="),
            ("link", "no callbacks"),
            ("serializer", "always JSON"),
            ("exchange", "use queue="),
            ("frobnicate", "no equivalent"),
        ],
    )
    def test_apply_async_names_what_to_use_instead(self, option, says):
        with pytest.raises(TypeError, match=re.escape(says)) as excinfo:
            tasks.add.apply_async((1, 2), **{option: 1})
        assert f"apply_async({option}=...) is not supported" in str(excinfo.value)

    def test_get_returns_the_value_or_raises_the_recorded_error(self):
        ok = tasks.add.delay(2, 3)
        failing = tasks.boom.delay("it broke")
        run_worker()
        assert ok.get(timeout=5) == 5
        with pytest.raises(ValueError, match="^it broke$"):
            failing.get(timeout=5)
        error = failing.get(timeout=5, propagate=False)
        assert isinstance(error, ValueError) and str(error) == "it broke"

    def test_get_gives_up_after_its_timeout(self):
        from django_dbtasks.exceptions import ResultTimeout

        waiting = tasks.add.delay(1, 1)
        with pytest.raises(ResultTimeout):
            waiting.get(timeout=0.2)
        assert issubclass(ResultTimeout, TimeoutError)

    @pytest.mark.parametrize("name", ["s", "si", "signature", "map", "chunks"])
    def test_canvas_methods_point_to_the_docs(self, name):
        with pytest.raises(AttributeError, match="docs/celery.md"):
            getattr(tasks.add, name)(1, 2)


def standard_modules():
    """Django's task API as this Django has it: the module and its exceptions module."""
    try:
        import django.tasks as api
        import django.tasks.exceptions as exceptions
    except ImportError:  # Django 5.2: the backport
        import django_tasks as api  # type: ignore[no-redef]
        import django_tasks.exceptions as exceptions  # type: ignore[no-redef]
    return api, exceptions


def check_public_name(name: str, api, exceptions) -> None:
    """Use one public name of the standard API against our backend, as documented."""
    from django.utils.connection import ConnectionProxy

    from django_dbtasks.backend import DatabaseBackend
    from django_dbtasks.base import DbTask

    value = getattr(api, name, None) or getattr(exceptions, name)
    if name == "DEFAULT_TASK_BACKEND_ALIAS":
        assert isinstance(api.task_backends[value], DatabaseBackend)
    elif name == "DEFAULT_TASK_QUEUE_NAME":
        assert tasks.add.queue_name == value
        assert tasks.add.get_result(tasks.add.enqueue(1, 2).id).task.queue_name == value
    elif name == "default_task_backend":
        assert value.__class__ is ConnectionProxy
        assert isinstance(api.task_backends[api.DEFAULT_TASK_BACKEND_ALIAS], DatabaseBackend)
        assert value.supports_defer and value.supports_get_result  # proxied to ours
        assert value.enqueue(tasks.add, [1, 2], {}).status == api.TaskResultStatus.READY
    elif name == "task_backends":
        assert [type(backend) for backend in value.all()] == [DatabaseBackend]
    elif name == "task":
        assert isinstance(tasks.standard_multiply, DbTask)  # defined with Django's decorator
        made = value(priority=5)(tasks.add.func)
        assert (type(made), made.priority) == (DbTask, 5)
    elif name == "Task":
        assert isinstance(tasks.add, value) and isinstance(tasks.add.using(priority=1), value)
    elif name == "TaskResult":
        assert isinstance(tasks.add.enqueue(1, 2), value)
    elif name == "TaskResultStatus":
        result = tasks.add.enqueue(2, 2)
        assert result.status == value.READY
        assert run_worker().returncode == 0
        result.refresh()
        assert result.status == value.SUCCESSFUL and result.return_value == 4
    elif name == "TaskContext":
        result = tasks.record_run.enqueue("context")
        assert run_worker().returncode == 0
        result.refresh()
        assert result.return_value == "context"  # the task read its TaskContext's result id
    elif name in ("InvalidTask", "InvalidTaskError"):
        with pytest.raises(value):
            tasks.add.using(queue_name="not-a-queue")
    elif name in ("InvalidTaskBackend", "InvalidTaskBackendError"):
        with pytest.raises(value):
            api.task_backends["not-configured"]
    elif name == "TaskResultDoesNotExist":
        with pytest.raises(value):
            tasks.add.get_result("987654321")
    elif name == "TaskResultMismatch":
        with pytest.raises(value):
            tasks.add.get_result(tasks.boom.enqueue().id)
    elif name == "TaskException":
        assert issubclass(exceptions.TaskResultDoesNotExist, value)
    elif name == "ImproperlyConfigured":
        from django.core.exceptions import ImproperlyConfigured

        assert value is ImproperlyConfigured
    else:
        raise AssertionError(f"{name} is public in Django's task API: add a check for it here")


def test_every_public_name_of_the_standard_api_works_with_our_backend():
    api, exceptions = standard_modules()
    names = [*api.__all__, *(n for n in dir(exceptions) if not n.startswith("_"))]
    public = [n for n in dict.fromkeys(names) if not isinstance(getattr(api, n, None), type(api))]
    assert len(public) >= 10
    for name in public:
        check_public_name(name, api, exceptions)
