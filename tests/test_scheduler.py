"""The Schedule model, the scheduler's tick, and real workers firing a schedule."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import threading
import time
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_dbtasks import queries, scheduler
from django_dbtasks.models import Job, MissedFires, Schedule

from .conftest import IS_POSTGRES, wait_until
from .testapp.models import Execution

RECORD = "tests.testapp.tasks.record_run"


def make(cron: str = "* * * * * */2", **fields) -> Schedule:
    schedule = Schedule(name=fields.pop("name", "s"), task_path=RECORD, cron=cron, **fields)
    schedule.args = fields.get("args", ["tick"])
    schedule.save()
    return schedule


def missed_since(schedule: Schedule, moment: dt.datetime) -> None:
    """Pretend no scheduler ran since ``moment`` (next_fire_at long past)."""
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=moment, last_fire_at=None)


def tick() -> float | None:
    return scheduler.Scheduler("default").tick()


@pytest.mark.django_db
class TestValidation:
    def test_a_valid_schedule_passes(self):
        Schedule(
            name="ok", task_path=RECORD, cron="0 3 * * *", timezone="Europe/Berlin"
        ).full_clean()

    def test_invalid_cron_is_rejected_with_an_example(self):
        with pytest.raises(ValidationError) as excinfo:
            Schedule(name="x", task_path=RECORD, cron="61 * * * *").full_clean()
        [message] = excinfo.value.message_dict["cron"]
        assert "'61 * * * *' is not a valid cron expression" in message
        assert "for example '0 3 * * *'" in message

    def test_unknown_timezone_is_rejected(self):
        with pytest.raises(ValidationError) as excinfo:
            Schedule(
                name="x", task_path=RECORD, cron="@daily", timezone="Europe/Atlantis"
            ).full_clean()
        assert (
            "'Europe/Atlantis' is not a known IANA timezone; use a name like 'UTC'"
            in (excinfo.value.message_dict["timezone"][0])
        )

    def test_unregistered_task_is_rejected(self):
        with pytest.raises(ValidationError) as excinfo:
            Schedule(name="x", task_path="os.system", cron="@daily").full_clean()
        message = excinfo.value.message_dict["task_path"][0]
        assert "'os.system' is not a registered task" in message
        assert "tests.testapp.tasks." in message

    def test_save_computes_the_next_fire_time_and_a_description(self):
        schedule = make("0 3 * * *", timezone="Europe/Berlin")
        assert schedule.next_fire_at is not None and schedule.next_fire_at > timezone.now()
        assert schedule.next_fire_at.astimezone(dt.UTC).hour in (1, 2)  # 03:00 Berlin
        assert schedule.describe() == "At 03:00"
        assert len(schedule.upcoming(5)) == 5


@pytest.mark.django_db
class TestTick:
    def test_due_schedule_fires_once_per_fire_time(self):
        schedule = make("* * * * * *")
        time.sleep(1.1)
        tick()
        tick()  # a second scheduler right after finds nothing new to fire
        jobs = list(Job.objects.filter(schedule=schedule))
        assert len(jobs) >= 1
        assert len({job.scheduled_for for job in jobs}) == len(jobs)
        assert all(job.task_path == RECORD and job.args == ["tick"] for job in jobs)

    def test_the_database_refuses_a_second_job_for_one_fire_time(self):
        schedule = make()
        moment = timezone.now().replace(microsecond=0)
        Job.objects.create(task_path=RECORD, schedule=schedule, scheduled_for=moment)
        created = Job.objects.bulk_create(
            [Job(task_path=RECORD, schedule=schedule, scheduled_for=moment)], ignore_conflicts=True
        )
        assert len(created) == 1
        assert Job.objects.filter(schedule=schedule, scheduled_for=moment).count() == 1

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [(MissedFires.LATEST, 1), (MissedFires.SKIP, 0), (MissedFires.ALL, 100)],
    )
    def test_missed_fire_policy(self, policy, expected):
        schedule = make("0 0 1 1 *", missed=policy)  # yearly: 150 fire times missed
        missed_since(schedule, timezone.now() - dt.timedelta(days=365 * 150))
        tick()
        jobs = Job.objects.filter(schedule=schedule).order_by("scheduled_for")
        assert jobs.count() == expected
        if expected:
            assert jobs.last().scheduled_for.month == 1 and jobs.last().scheduled_for.day == 1
            assert jobs.last().scheduled_for.year == queries.database_now(connection).year
        schedule.refresh_from_db()
        assert schedule.next_fire_at > timezone.now()

    def test_disabled_schedule_never_fires(self):
        schedule = make("* * * * * *", enabled=False)
        missed_since(schedule, timezone.now() - dt.timedelta(minutes=5))
        tick()
        assert not Job.objects.filter(schedule=schedule).exists()

    def test_editing_the_expression_applies_from_the_next_fire_time(self):
        schedule = make("0 0 1 1 *")
        assert (schedule.next_fire_at - timezone.now()).days > 0
        schedule.cron = "* * * * * *"
        schedule.save()
        assert (schedule.next_fire_at - timezone.now()).total_seconds() <= 1.1
        time.sleep(1.1)
        tick()
        assert Job.objects.filter(schedule=schedule).exists()

    def test_code_schedules_are_synced_and_disabled_when_removed(self, monkeypatch):
        scheduler.Scheduler("default").sync_declared()
        nightly = Schedule.objects.get(name="nightly-noop")
        assert (nightly.from_code, nightly.enabled, nightly.cron) == (True, True, "0 3 * * *")
        assert nightly.timezone == "Europe/Berlin"
        monkeypatch.setattr(scheduler, "_declared", {})
        scheduler.Scheduler("default").sync_declared()
        nightly.refresh_from_db()
        assert nightly.enabled is False  # kept, with its history, but never fired

    def test_schedules_command_lists_and_fires(self, capsys):
        make("0 3 * * *", name="report", timezone="Europe/Berlin")
        call_command("schedules")
        out = capsys.readouterr().out
        assert "report  [enabled, from admin]" in out and "At 03:00" in out and "next: " in out
        call_command("schedules", "--fire", "report")
        assert "Enqueued job" in capsys.readouterr().out
        assert Job.objects.filter(schedule__name="report", scheduled_for=None).count() == 1


@pytest.mark.django_db(transaction=True)
def test_three_workers_fire_each_due_time_exactly_once(start_worker):
    schedule = make("* * * * * */2")
    workers = [start_worker("--concurrency", "1") for _ in range(3)]
    wait_until(
        lambda: Job.objects.filter(schedule=schedule, status="SUCCESSFUL").count() >= 4, timeout=30
    )
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()
    per_fire_time = Counter(
        Job.objects.filter(schedule=schedule).values_list("scheduled_for", flat=True)
    )
    assert len(per_fire_time) >= 4 and set(per_fire_time.values()) == {1}
    assert all(moment.second % 2 == 0 for moment in per_fire_time)
    executions = Counter(Execution.objects.values_list("job_id", flat=True))
    finished = Job.objects.filter(schedule=schedule, status="SUCCESSFUL")
    assert all(executions[str(job.pk)] == 1 for job in finished)


@pytest.mark.django_db(transaction=True)
def test_workers_started_after_downtime_fire_the_latest_missed_time_only(start_worker):
    schedule = make("* * * * * */2")  # LATEST by default
    down_since = timezone.now() - dt.timedelta(minutes=1)
    missed_since(schedule, down_since)
    started = timezone.now()
    start_worker()
    wait_until(lambda: Job.objects.filter(schedule=schedule).count() >= 2, timeout=30)
    fired = sorted(Job.objects.filter(schedule=schedule).values_list("scheduled_for", flat=True))
    before_start = [moment for moment in fired if moment < started - dt.timedelta(seconds=2)]
    assert before_start == [], "the 30 missed fire times were not replayed"


@pytest.mark.django_db(transaction=True)
def test_a_worker_without_scheduler_fires_nothing(start_worker):
    schedule = make("* * * * * *")
    worker = start_worker("--no-scheduler")
    wait_until(lambda: "scheduler=False" in worker.output())
    time.sleep(2.5)
    assert not Job.objects.filter(schedule=schedule).exists()


@pytest.mark.django_db(transaction=True)
def test_fire_times_stay_exact_while_every_pool_process_is_busy(start_worker):
    from .testapp import tasks

    blocker = tasks.sleep_then_record.enqueue(8, "busy")
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: Job.objects.filter(pk=blocker.id, status="RUNNING").exists())
    schedule = make("* * * * * */2")
    wait_until(lambda: Job.objects.filter(schedule=schedule).count() >= 2, timeout=20)
    assert Job.objects.get(pk=blocker.id).status == "RUNNING", "the pool was busy throughout"
    for job in Job.objects.filter(schedule=schedule):
        assert (job.enqueued_at - job.scheduled_for).total_seconds() < 1.5
    assert worker.process.poll() is None


@pytest.mark.django_db(transaction=True)
def test_an_edited_expression_applies_without_restarting_workers(start_worker):
    schedule = make("0 0 1 1 *")  # yearly
    start_worker()
    time.sleep(2)
    assert not Job.objects.filter(schedule=schedule).exists()
    schedule.cron = "* * * * * *"
    schedule.save()
    wait_until(lambda: Job.objects.filter(schedule=schedule).exists(), timeout=10)


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's locking")
@pytest.mark.django_db(transaction=True)
def test_a_write_by_another_process_during_a_tick_makes_it_wait_not_fail():
    """SQLite: the tick reads, then writes. If another process wrote in between,
    the tick's first write used to fail at once ("database is locked"), which
    at start-up (the same pattern) killed one of several workers starting together."""
    schedule = make()
    missed_since(schedule, timezone.now() - dt.timedelta(seconds=3))  # due: an even second
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=30, check_same_thread=False)
    writes: list[str] = []

    def write_from_another_process() -> None:
        other.execute("UPDATE django_dbtasks_schedule SET updated_at = '2000-01-01 00:00:00'")
        other.commit()
        writes.append("committed")

    def interleave(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "django_dbtasks_schedule" in sql and writer.ident is None:  # after its first read
            writer.start()
            writer.join(timeout=1)  # the tick holds the write lock: the writer waits for it
        return result

    writer = threading.Thread(target=write_from_another_process)
    with connection.execute_wrapper(interleave):
        tick()
    writer.join(timeout=30)
    other.close()
    assert writes == ["committed"]
    assert Job.objects.filter(schedule=schedule).count() == 1
