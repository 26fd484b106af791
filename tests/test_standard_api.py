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
