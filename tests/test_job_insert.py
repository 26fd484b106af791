"""The one INSERT of a job row: the model's defaults, unique jobs and cron fires.

``queries.insert_jobs`` writes every job row (``enqueue()``, ``enqueue_many()``,
unique jobs, a schedule's fires) with raw SQL, so the model's defaults are
copied into it by hand: these tests hold the copy equal to the model, and
prove the ``ON CONFLICT DO NOTHING`` paths on both databases.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import pytest
from django.db import connection
from django.db.models import NOT_PROVIDED
from django.utils import timezone

from django_dbtasks import queries, scheduler
from django_dbtasks.compat import TaskResultStatus, task_enqueued
from django_dbtasks.models import Job, Schedule

from .testapp import tasks

UNIQUE = "tests.testapp.tasks.unique_per_user"
NOOP = "tests.testapp.tasks.noop"


def _split(text: str) -> list[str]:
    """Split SQL on the commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _written(statement: str) -> dict[str, str]:
    """``{column: the SQL written there}`` of an INSERT of one row (VALUES or SELECT)."""
    match = re.match(r"INSERT INTO \w+ \((.*?)\)\s*(VALUES|SELECT)\s*(.*)", statement, re.S)
    assert match, statement
    columns = _split(match.group(1))
    body = match.group(3)
    if match.group(2) == "VALUES":
        body = body[body.index("(") + 1 :]
        depth = 1
        for end, char in enumerate(body):  # noqa: B007 - the end of the first row
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
        body = body[:end]
    else:
        body = body[: body.index("\nFROM ")]
    values = _split(body)
    assert len(values) == len(columns), (columns, values)
    return dict(zip(columns, values, strict=True))


def _literal(sql: str) -> object:
    """A SQL literal as Python: ``'READY'``, ``0``, ``'[]'`` (JSON columns hold JSON text)."""
    if sql.startswith("'"):
        return sql[1:-1]
    return int(sql)


STATEMENTS = {
    "postgres": queries._insert_sql(True, 1, ""),
    "postgres, in bulk": queries.INSERT_BATCH_POSTGRES,
    "sqlite, in bulk": queries.INSERT_BATCH_SQLITE,
    "sqlite": queries._insert_sql(False, 1, ""),
    "sqlite, two rows": queries._insert_sql(False, 2, ""),
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_each_column_the_insert_fixes_holds_the_models_default(name):
    written = _written(STATEMENTS[name])
    fields = {field.column: field for field in Job._meta.concrete_fields}
    assert set(written) <= set(fields), set(written) - set(fields)
    for column, sql in written.items():
        if "%(" in sql or sql.startswith("call."):
            continue  # a parameter (or an element of one): the caller's value
        field = fields[column]
        assert field.has_default(), column
        expected = field.get_default()
        value = _literal(sql)
        if field.get_internal_type() == "JSONField":
            value = json.loads(str(value))
        assert value == expected, (column, sql, expected)


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_every_column_the_insert_leaves_out_has_a_database_default_or_is_null(name):
    """A Python ``default`` is not in the table's DDL: a column the INSERT leaves out
    gets NULL, unless the field has a ``db_default``."""
    written = _written(STATEMENTS[name])
    for field in Job._meta.concrete_fields:
        if field.column in written or field.primary_key:
            continue
        assert field.null or field.db_default is not NOT_PROVIDED, field.column
        if field.db_default is NOT_PROVIDED:
            assert not field.has_default(), f"{field.column} would be NULL, not its default"


def _compare(row: Job, reference: Job, skip: set[str]) -> None:
    for field in Job._meta.concrete_fields:
        if field.attname in {"id", "enqueued_at", "run_after", *skip}:
            continue
        assert getattr(row, field.attname) == getattr(reference, field.attname), field.attname


def _insert(**options) -> list[tuple[int, dt.datetime | None]]:
    values = {
        "backend": "default",
        "task_path": NOOP,
        "queue_name": "default",
        "priority": 0,
        "max_attempts": 1,
        "run_after": None,
        "calls": [("[]", "{}")],
        **options,
    }
    return queries.insert_jobs(connection, **values)


@pytest.mark.django_db
@pytest.mark.parametrize("calls", [1, 3])
def test_a_row_inserted_by_sql_equals_one_saved_by_the_orm(calls):
    reference = Job.objects.create(task_path=NOOP)
    reference.refresh_from_db()
    inserted = _insert(calls=[("[]", "{}")] * calls)
    assert len(inserted) == calls
    for job_id, enqueued_at in inserted:
        row = Job.objects.get(pk=job_id)
        _compare(row, reference, skip=set())
        assert row.enqueued_at == enqueued_at is not None
        assert row.run_after == row.enqueued_at  # never deferred: the result tells None


@pytest.mark.django_db
def test_a_row_inserted_in_a_batch_equals_one_saved_by_the_orm():
    reference = Job.objects.create(task_path=NOOP, args=[1, "a"], kwargs={"k": [2]})
    reference.refresh_from_db()
    inserted = queries.insert_batch(
        connection,
        backend="default",
        task_path=NOOP,
        queue_name="default",
        priority=0,
        max_attempts=1,
        run_after=None,
        calls='[[[1, "a"], {"k": [2]}], [[1, "a"], {"k": [2]}]]',
    )
    assert len(inserted) == 2 and inserted[0][0] < inserted[1][0]
    for job_id, enqueued_at in inserted:
        row = Job.objects.get(pk=job_id)
        _compare(row, reference, skip=set())
        assert row.enqueued_at == enqueued_at is not None
        assert row.run_after == row.enqueued_at  # never deferred: the result tells None


@pytest.mark.django_db
def test_a_unique_job_and_a_fire_write_their_columns_and_nothing_else():
    schedule = Schedule.objects.create(name="s", task_path=NOOP, cron="* * * * *")
    moment = timezone.now().replace(microsecond=0)
    reference = Job.objects.create(task_path=NOOP)
    reference.refresh_from_db()
    [(unique_id, _)] = _insert(unique_key="k")
    [(fire_id, _)] = _insert(schedule_id=schedule.pk, scheduled_for=moment)
    unique, fire = Job.objects.get(pk=unique_id), Job.objects.get(pk=fire_id)
    _compare(unique, reference, skip={"unique_key"})
    _compare(fire, reference, skip={"schedule_id", "scheduled_for"})
    assert unique.unique_key == "k"
    assert (fire.schedule_id, fire.scheduled_for) == (schedule.pk, moment)


@pytest.mark.django_db
def test_a_deferred_job_keeps_its_run_after():
    when = timezone.now() + dt.timedelta(hours=1)
    [(job_id, enqueued_at)] = _insert(run_after=when)
    row = Job.objects.get(pk=job_id)
    assert row.run_after == when and row.enqueued_at == enqueued_at != when


@pytest.mark.django_db
def test_the_insert_refuses_a_key_or_fire_for_several_calls():
    with pytest.raises(ValueError, match="one call"):
        _insert(unique_key="k", calls=[("[]", "{}")] * 2)
    with pytest.raises(ValueError, match="not both"):
        _insert(unique_key="k", schedule_id=1)


# Unique jobs, as before the one INSERT


@pytest.mark.django_db
def test_a_key_with_an_unfinished_job_inserts_nothing():
    assert len(_insert(task_path=UNIQUE, unique_key="k")) == 1
    assert _insert(task_path=UNIQUE, unique_key="k") == []
    assert len(_insert(task_path=NOOP, unique_key="k")) == 1  # the key is per task
    Job.objects.filter(task_path=UNIQUE).update(status="FAILED")
    assert len(_insert(task_path=UNIQUE, unique_key="k")) == 1  # a finished job frees it
    assert Job.objects.filter(task_path=UNIQUE).count() == 2


@pytest.mark.django_db
def test_a_duplicate_returns_the_existing_result_and_sends_no_signal():
    sent: list[str] = []

    def receiver(sender, task_result, **kwargs):
        sent.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        first = tasks.unique_per_user.enqueue(7, note="first")
        again = tasks.unique_per_user.enqueue(user_id=7, note="second")
    finally:
        task_enqueued.disconnect(receiver)
    assert sent == [first.id]
    assert again.id == first.id and again.status == TaskResultStatus.READY
    assert (again.args, again.kwargs) == ([7], {"note": "first"})  # the existing job's call
    assert again.enqueued_at == first.enqueued_at


@pytest.mark.django_db
def test_a_duplicate_of_a_running_job_returns_the_running_job():
    first = tasks.unique_per_user.enqueue(7)
    # Due before this test's transaction began (now() on PostgreSQL).
    Job.objects.filter(pk=first.id).update(run_after=timezone.now() - dt.timedelta(minutes=1))
    [claimed] = queries.claim(connection, ["default"], 1, "w", 30)
    assert str(claimed.id) == first.id
    again = tasks.unique_per_user.enqueue(7)
    assert again.id == first.id and again.status == TaskResultStatus.RUNNING
    assert again.worker_ids == ["w"]


@pytest.mark.django_db
def test_duplicates_in_one_enqueue_many_share_one_job():
    results = tasks.unique_per_user.enqueue_many([((7,), {}), ((8,), {}), ((), {"user_id": 7})])
    assert results[0].id == results[2].id != results[1].id
    assert Job.objects.filter(task_path=UNIQUE).count() == 2


@pytest.mark.django_db
def test_a_new_unique_job_has_the_result_of_a_plain_one():
    unique = tasks.unique_per_user.enqueue(7)
    plain = tasks.noop.enqueue()
    for result in (unique, plain):
        assert result.status == TaskResultStatus.READY and result.task.run_after is None
        assert result.errors == [] and result.worker_ids == [] and result.started_at is None
        assert result.enqueued_at is not None
    assert Job.objects.get(pk=unique.id).unique_key == tasks.unique_per_user.unique_key([7], {})


# Cron fires


@pytest.mark.django_db
def test_the_scheduler_logs_only_the_fires_it_enqueued(caplog):
    schedule = Schedule(name="yearly", task_path=NOOP, cron="0 0 1 1 *")
    schedule.save()

    def fire() -> list[logging.LogRecord]:
        # Due since long ago: the latest missed fire time is fired (the LATEST policy).
        Schedule.objects.filter(pk=schedule.pk).update(
            next_fire_at=timezone.now() - dt.timedelta(days=400), last_fire_at=None
        )
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="django_dbtasks.scheduler"):
            scheduler.Scheduler("default").tick()
        return [r for r in caplog.records if r.name == "django_dbtasks.scheduler"]

    [enqueued] = fire()
    [job] = Job.objects.filter(schedule=schedule)
    assert enqueued.levelno == logging.INFO
    assert enqueued.getMessage() == (
        f"schedule=yearly task={NOOP} fire_time={job.scheduled_for.isoformat()} job={job.pk}"
    )
    # Another scheduler's tick for the same fire time: skipped, and not logged as enqueued.
    [skipped] = fire()
    assert Job.objects.filter(schedule=schedule).count() == 1
    assert skipped.levelno == logging.DEBUG and "job=" not in skipped.getMessage()
    assert "already enqueued by another scheduler" in skipped.getMessage()


@pytest.mark.django_db
def test_fire_now_inserts_a_job_outside_the_schedules_times():
    schedule = Schedule.objects.create(name="s", task_path=NOOP, cron="0 3 * * *", args=[])
    first = scheduler.Scheduler("default").fire_now(schedule)
    second = scheduler.Scheduler("default").fire_now(schedule)
    assert first.pk != second.pk
    assert (first.schedule_id, first.scheduled_for, first.status) == (schedule.pk, None, "READY")
