"""``django_dbtasks.testing``: a test's jobs run in the test's process, thread and transaction.

Inside Django's ``TestCase`` (one transaction: on PostgreSQL the claim's clock
stands still there) and with pytest-django's ``db`` and ``transactional_db``.
What a worker writes is compared with a real ``runtasks --burst`` subprocess.
"""

from __future__ import annotations

import time

import pytest
from django.core import mail
from django.db import connection
from django.test import TestCase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtasks.compat import task_finished
from django_dbtasks.models import Job, JobStatus
from django_dbtasks.pytest_plugin import run_jobs  # noqa: F401 - the fixture, as a conftest would
from django_dbtasks.testing import TooManyJobs, run_ready_jobs

from .conftest import run_worker
from .testapp import tasks

UNKNOWN_PATH = "tests.testapp.tasks.was_renamed"


@pytest.fixture(autouse=True)
def in_memory_mail(settings):
    """Django 6.1 warns when mail is sent with no MAILERS; Django 5.2 ignores the setting."""
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


def unknown_task_row() -> Job:
    """A row whose task path names no registered task (renamed since it was enqueued)."""
    return Job.objects.create(task_path=UNKNOWN_PATH, backend="default", queue_name="default")


def comparable(job: Job) -> dict:
    """What a worker writes about a finished job, less what differs between any two runs."""
    return {
        "status": job.status,
        "attempts": job.attempts,
        "errors": [comparable_error(entry, job) for entry in job.errors],
        "return_value": job.return_value,
        "finished": job.finished_at is not None,
        "workers": len(job.worker_ids),
        "claimed_by": job.claimed_by,
        "lease_token": job.lease_token,
    }


def comparable_error(entry: dict, job: Job) -> dict:
    """An error entry, its attempt's times and worker (which differ between runs) as checks."""
    return {
        **entry,
        "started_at": entry.get("started_at") is not None,
        "finished_at": entry.get("finished_at") is not None,
        "worker_id": entry.get("worker_id") in job.worker_ids,
    }


class InsideATestCase(TestCase):
    """One transaction per test: the jobs enqueued in it are visible on its connection only."""

    def test_a_task_s_mail_lands_in_the_test_s_outbox(self):
        result = tasks.send_welcome_email.enqueue("ada@example.com")

        [job] = run_ready_jobs()

        assert job.pk == int(result.id) and job.status == JobStatus.SUCCESSFUL
        assert job.return_value == "ada@example.com"
        assert [message.to for message in mail.outbox] == [["ada@example.com"]]
        result.refresh()
        assert result.status == "SUCCESSFUL" and result.return_value == "ada@example.com"
        # The row's run_after is its own again (it was moved for the claim only).
        assert result.task.run_after is None and job.run_after == job.enqueued_at

    def test_a_job_enqueued_by_a_job_runs_in_the_same_call(self):
        tasks.enqueue_welcome.enqueue("grace@example.com")

        ran = run_ready_jobs()

        assert [job.task_path for job in ran] == [
            "tests.testapp.tasks.enqueue_welcome",
            "tests.testapp.tasks.send_welcome_email",
        ]
        assert all(job.status == JobStatus.SUCCESSFUL for job in ran)
        assert ran[0].return_value == str(ran[1].pk)  # a result id, as Django gives it
        assert len(mail.outbox) == 1

    def test_a_retry_waits_for_its_delay_even_long_after_the_transaction_began(self):
        time.sleep(0.7)  # the test's transaction (PostgreSQL's now()) is older than the delay
        result = tasks.flaky.enqueue("flaky", failures=1)  # retry delay 0.24-0.3 s

        [job] = run_ready_jobs()

        assert job.status == JobStatus.READY and job.attempts == 1
        assert job.errors[0]["message"] == "ConnectionError: attempt 1 failed"
        time.sleep(0.4)
        [again] = run_ready_jobs()  # now it is due
        assert again.pk == int(result.id)
        assert again.status == JobStatus.SUCCESSFUL and again.attempts == 2

    def test_retry_now_runs_every_attempt_in_one_call(self):
        tasks.always_fails.enqueue("never")  # 3 attempts, 0.1 s apart
        tasks.flaky.enqueue("once", failures=1)

        ran = run_ready_jobs(retry_now=True)

        by_task = {job.task_path.rsplit(".", 1)[1]: job for job in ran}
        assert by_task["always_fails"].status == JobStatus.FAILED
        assert by_task["always_fails"].attempts == 3 and len(by_task["always_fails"].errors) == 3
        assert by_task["flaky"].status == JobStatus.SUCCESSFUL and by_task["flaky"].attempts == 2

    def test_a_deferred_job_is_left_alone(self):
        from datetime import timedelta

        from django.utils import timezone

        later = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
        now = tasks.add.enqueue(3, 4)

        assert [job.pk for job in run_ready_jobs()] == [int(now.id)]
        assert Job.objects.get(pk=later.id).status == JobStatus.READY

    def test_only_the_queues_asked_for_run(self):
        tasks.send_welcome_email.enqueue("emails@example.com")  # queue "emails"
        other = tasks.add.enqueue(1, 1)

        ran = run_ready_jobs(queues=["default"])

        assert [job.pk for job in ran] == [int(other.id)]
        assert mail.outbox == []

    def test_an_unknown_task_path_fails_as_a_worker_fails_it(self):
        row = unknown_task_row()

        [job] = run_ready_jobs()

        assert job.pk == row.pk and job.status == JobStatus.FAILED
        [error] = job.errors
        assert error["exception_class_path"] == "django_dbtasks.exceptions.TaskNotRegistered"
        assert UNKNOWN_PATH in error["message"]

    def test_a_timeout_stops_the_task_in_process(self):
        started = time.monotonic()
        tasks.spins_forever.enqueue()  # timeout=1, an endless loop

        [job] = run_ready_jobs()

        assert time.monotonic() - started < 5
        assert job.status == JobStatus.FAILED
        [error] = job.errors
        assert error["exception_class_path"] == "django_dbtasks.exceptions.JobTimedOut"
        assert error["message"].startswith("JobTimedOut: Timed out after 1 s (the task's timeout)")

    def test_the_runaway_bound_stops_a_job_that_enqueues_itself(self):
        tasks.enqueues_itself.enqueue(0)

        with pytest.raises(TooManyJobs, match=r"ran 5 job attempts.*enqueues_itself"):
            run_ready_jobs(max_jobs=5)

        statuses = list(Job.objects.order_by("pk").values_list("status", flat=True))
        assert statuses == [JobStatus.SUCCESSFUL] * 5 + [JobStatus.READY]

    def test_exactly_max_jobs_ready_is_no_runaway(self):
        tasks.noop.enqueue_many([((), {})] * 3)
        assert len(run_ready_jobs(max_jobs=3)) == 3

    def test_task_finished_is_sent_for_each_job(self):
        seen = []

        def receiver(sender, task_result, **kwargs):
            seen.append((task_result.task.name, task_result.status))

        task_finished.connect(receiver)
        try:
            tasks.add.enqueue(1, 2)
            tasks.boom.enqueue()
            run_ready_jobs()
        finally:
            task_finished.disconnect(receiver)
        assert sorted(seen) == [("add", "SUCCESSFUL"), ("boom", "FAILED")]

    def test_ctrl_c_during_a_job_fails_it_and_ends_the_call(self):
        interrupted = tasks.interrupts_its_process.enqueue()
        later = tasks.add.enqueue(1, 2)

        with pytest.raises(KeyboardInterrupt):
            run_ready_jobs()

        job = Job.objects.get(pk=interrupted.id)
        assert job.status == JobStatus.FAILED
        assert job.errors[0]["exception_class_path"] == "builtins.KeyboardInterrupt"
        assert Job.objects.get(pk=later.id).status == JobStatus.READY  # never started
        assert run_ready_jobs()[0].pk == int(later.id)  # and not lost

    def test_a_task_raising_keyboard_interrupt_only_fails(self):
        tasks.raises_keyboard_interrupt.enqueue()
        [job] = run_ready_jobs()
        assert job.status == JobStatus.FAILED

    def test_nothing_ready_runs_nothing(self):
        assert run_ready_jobs() == []


# pytest-django


def test_the_fixture_runs_jobs_inside_the_test_s_transaction(run_jobs):  # noqa: F811
    assert connection.in_atomic_block  # pytest-django's db: one transaction
    tasks.enqueue_welcome.enqueue("linus@example.com")

    ran = run_jobs()

    assert [job.status for job in ran] == [JobStatus.SUCCESSFUL] * 2
    assert mail.outbox[0].to == ["linus@example.com"]


@pytest.mark.django_db(transaction=True)
def test_with_a_transactional_db_the_jobs_run_in_autocommit(run_jobs):  # noqa: F811
    assert not connection.in_atomic_block
    tasks.flaky.enqueue("x", failures=1)
    [job] = run_jobs(retry_now=True)
    assert job.status == JobStatus.SUCCESSFUL and job.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_what_it_writes_is_what_a_worker_process_writes():
    """The same jobs, one run here, one by ``runtasks --burst``: the same rows."""
    tasks.boom.enqueue("the same message")
    tasks.add.enqueue(2, 3)
    unknown_task_row()
    here = run_ready_jobs()
    assert len(here) == 3

    tasks.boom.enqueue("the same message")
    tasks.add.enqueue(2, 3)
    unknown_task_row()
    finished = run_worker()
    assert finished.returncode == 0, finished.stderr
    there = list(Job.objects.exclude(pk__in=[job.pk for job in here]).order_by("pk"))

    assert [comparable(job) for job in here] == [comparable(job) for job in there]
    assert here[0].errors[0]["traceback"].startswith("Traceback (most recent call last):")


# Bad arguments: a clear error, and nothing run


def _refused(error_type, **arguments) -> str:
    with pytest.raises(error_type) as raised:
        run_ready_jobs(**arguments)
    return str(raised.value)


def test_bad_arguments_say_what_is_wrong(db):
    job = tasks.add.enqueue(1, 2)
    assert "queues=['emails']" in _refused(TypeError, queues="emails")
    assert "'nope'" in _refused(ValueError, queues=["nope"])
    assert "leave it out" in _refused(ValueError, queues=[])
    assert "queue names (str)" in _refused(TypeError, queues=[1])
    assert "at least 1" in _refused(ValueError, max_jobs=0)
    assert "whole number" in _refused(TypeError, max_jobs=2.5)
    assert "whole number" in _refused(TypeError, max_jobs=True)
    assert "True or False" in _refused(TypeError, retry_now="yes")
    assert "Cannot load task backend 'nope'" in _refused(ValueError, backend="nope")
    assert "a str" in _refused(TypeError, backend=None)
    with pytest.raises(TypeError):
        run_ready_jobs("default")  # type: ignore[misc]  # keywords only
    assert Job.objects.get(pk=job.id).status == JobStatus.READY


def test_a_backend_that_stores_no_jobs_is_refused(db, settings):
    settings.TASKS = {
        **settings.TASKS,
        "eager": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    }
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        settings.TASKS["eager"]["BACKEND"] = "django_tasks.backends.immediate.ImmediateBackend"
    assert "ImmediateBackend, which stores no jobs" in _refused(ValueError, backend="eager")


ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "queues": st.one_of(
            st.none(),
            st.text(max_size=8),
            st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=3),
            st.integers(),
        ),
        "max_jobs": st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=3)),
        "retry_now": st.one_of(st.booleans(), st.integers(), st.none(), st.text(max_size=3)),
        "backend": st.one_of(st.just("default"), st.text(max_size=8), st.integers(), st.none()),
    },
)


def _valid(arguments: dict) -> bool:
    queues = arguments.get("queues")
    max_jobs = arguments.get("max_jobs", 1)
    known = {"default", "emails", "low"}
    return (
        (queues is None or (isinstance(queues, list) and queues and set(queues) <= known))
        and type(max_jobs) is int
        and max_jobs >= 1
        and type(arguments.get("retry_now", False)) is bool
        and arguments.get("backend", "default") == "default"
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arguments=ARGUMENTS)
def test_any_arguments_run_the_jobs_or_raise_a_clear_error(db, arguments):
    Job.objects.all().delete()  # the examples share the test's transaction
    job = tasks.add.enqueue(1, 2)
    if _valid(arguments):
        served = arguments.get("queues") or ["default"]
        expected = [int(job.id)] if "default" in served else []
        assert [ran.pk for ran in run_ready_jobs(**arguments)] == expected
        return
    with pytest.raises((TypeError, ValueError)) as raised:
        run_ready_jobs(**arguments)
    message = str(raised.value)
    assert 10 < len(message) < 500
    assert Job.objects.get(pk=job.id).status == JobStatus.READY
