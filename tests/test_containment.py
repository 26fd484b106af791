"""One bad job never hurts another: each hostile job among 40 innocent ones.

Every test here puts the hostile job in the middle of innocent jobs, so that
they are claimed in the same batches (``claimed_beside`` checks it: a claim
stamps one ``last_attempted_at`` on all its rows), then runs real workers.
Each innocent job must end SUCCESSFUL (exactly once where nothing crashed),
the hostile job must end finished with a clear error, and a burst worker
must exit 0.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_dbtasks.exceptions import ArgumentNotSerializable
from django_dbtasks.models import Job, JobStatus

from .conftest import IS_POSTGRES, run_worker, wait_until, worker_tracebacks
from .testapp import tasks
from .testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

#: Workers claim far ahead (up to MAX_BATCH once they have timed a job), so the
#: hostile job shares its claim with most of the innocent ones.
BIG_BATCHES = {"DBTASKS_TEST_PREFETCH": "5"}
SHORT_LEASE = {"DBTASKS_TEST_LEASE": "1.5", "DBTASKS_TEST_HEARTBEAT": "0.5", **BIG_BATCHES}
INNOCENTS = 40
FINISHED = (JobStatus.SUCCESSFUL, JobStatus.FAILED)
JOB = Job._meta.db_table


def among_innocents(enqueue_hostile: Callable[[], object]) -> tuple[int, list[int]]:
    """Enqueue the hostile job in the middle of 40 innocent ones; return the ids."""
    first = tasks.record_run.enqueue_many([((f"before-{i}",), {}) for i in range(INNOCENTS // 2)])
    hostile = enqueue_hostile()
    last = tasks.record_run.enqueue_many([((f"after-{i}",), {}) for i in range(INNOCENTS // 2)])
    hostile_id = int(getattr(hostile, "id", hostile))  # a result, or a row's id
    return hostile_id, [int(result.id) for result in [*first, *last]]


def runs_of(job_ids: list[int]) -> Counter[int]:
    return Counter(int(job_id) for job_id in Execution.objects.values_list("job_id", flat=True))


def assert_innocents_ran_once(innocents: list[int]) -> None:
    jobs = Job.objects.filter(pk__in=innocents)
    assert sorted(jobs.values_list("status", flat=True)) == [JobStatus.SUCCESSFUL] * len(innocents)
    assert not [job.pk for job in jobs if job.errors or job.attempts != 1]
    runs = runs_of(innocents)
    assert [runs[job_id] for job_id in innocents] == [1] * len(innocents)


def claimed_beside(hostile: int, innocents: list[int]) -> int:
    """How many innocent jobs were claimed by the hostile job's (last) claim."""
    stamp = Job.objects.values_list("last_attempted_at", flat=True).get(pk=hostile)
    stamps = Job.objects.filter(pk__in=innocents).values_list("last_attempted_at", flat=True)
    return sum(1 for other in stamps if other == stamp)  # compared here: SQLite keeps text


def the_error(job_id: int) -> dict:
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED, (job.status, job.errors)
    return job.errors[-1]


# Output the database cannot store


@pytest.mark.parametrize(
    ("task", "error_class", "says"),
    [
        (tasks.returns_nul, "django_dbtasks.exceptions.ResultNotStorable", "U+0000 (NUL)"),
        (tasks.returns_surrogate, "django_dbtasks.exceptions.ResultNotStorable", "U+D800"),
        (tasks.returns_too_much, "django_dbtasks.exceptions.ResultNotStorable", "MAX_RESULT_BYTES"),
        (tasks.raises_nul, "builtins.ValueError", "bad\\x00value"),
    ],
    ids=["returns-nul", "returns-surrogate", "returns-over-the-limit", "raises-with-nul"],
)
def test_unstorable_output_fails_only_its_job(task, error_class, says):
    hostile, innocents = among_innocents(task.enqueue)
    finished = run_worker(**BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    assert not worker_tracebacks(finished.stderr), finished.stderr
    error = the_error(hostile)
    assert error["exception_class_path"] == error_class
    assert says in error["traceback"]
    assert_innocents_ran_once(innocents)
    assert claimed_beside(hostile, innocents) >= INNOCENTS // 2


@pytest.fixture
def database_refuses() -> Iterator[str]:
    """Make the job table refuse the return value "refuse-me", as the database
    itself refuses what it cannot hold (PostgreSQL: SQLSTATE 54000, "program limit
    exceeded", the class of jsonb's size limit, which psycopg reports as an
    OperationalError, the class of outages too)."""
    with connection.cursor() as cursor:
        if IS_POSTGRES:
            cursor.execute(
                "CREATE FUNCTION test_refuse() RETURNS trigger AS $$ BEGIN "
                "IF NEW.return_value = '\"refuse-me\"'::jsonb THEN "
                "RAISE EXCEPTION 'total size of jsonb exceeds the maximum (test)' "
                "USING ERRCODE = '54000'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER test_refuse BEFORE UPDATE ON {JOB} "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse()"
            )
            expected = "django.db.utils.OperationalError"
        else:
            cursor.execute(
                f"CREATE TRIGGER test_refuse BEFORE UPDATE ON {JOB} "
                "WHEN json_extract(NEW.return_value, '$') = 'refuse-me' "
                "BEGIN SELECT RAISE(ABORT, 'refused (test)'); END"
            )
            expected = "django.db.utils.IntegrityError"
    try:
        yield expected
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_refuse" + (f" ON {JOB}" if IS_POSTGRES else ""))
            if IS_POSTGRES:
                cursor.execute("DROP FUNCTION test_refuse()")


def test_an_outcome_the_database_refuses_fails_only_its_job(database_refuses):
    hostile, innocents = among_innocents(lambda: tasks.returns_refused.enqueue("refuse-me"))
    finished = run_worker(**BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    assert "database unavailable" not in finished.stderr  # a refusal is no outage
    assert "refused" in finished.stderr
    error = the_error(hostile)
    assert error["exception_class_path"] == database_refuses
    assert "The database refused to store this attempt's outcome" in error["traceback"]
    assert_innocents_ran_once(innocents)


def test_shutdown_finishes_even_when_its_last_write_is_refused(database_refuses, start_worker):
    from django_dbtasks.models import Worker

    result = tasks.sleep_then_return.enqueue(1.5, "refuse-me")
    worker = start_worker()
    # Once the body runs (a claimed job not yet started is rightly released by a stop):
    wait_until(lambda: Execution.objects.filter(job_id=result.id, label="started").exists())
    worker.signal(signal.SIGTERM)  # the outcome arrives during the stop, and is refused

    assert worker.wait(timeout=30) == 0, worker.output()
    error = the_error(int(result.id))
    assert error["exception_class_path"] == database_refuses
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    assert Worker.objects.get().stopped_at is not None
    assert "stopped processed=1" in worker.output()


# Arguments that enqueue refuses, and rows that did not come through enqueue


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_enqueue_refuses_deep_nesting_and_the_transaction_goes_on():
    with transaction.atomic():
        with pytest.raises(ArgumentNotSerializable, match="nested more than 100 levels deep"):
            tasks.takes_anything.enqueue(nested(800))
        kept = tasks.takes_anything.enqueue(nested(100))  # the limit itself is fine
    assert list(Job.objects.values_list("pk", flat=True)) == [int(kept.id)]


def insert_row_with_args(args_json: str) -> int:
    """A job row written without enqueue() (raw SQL, an older release, another tool)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JOB} (task_path, queue_name, priority, status, args, kwargs, "
            "run_after, enqueued_at, attempts, max_attempts, crashes, errors, worker_ids, "
            "claimed_by, progress_message) VALUES ('tests.testapp.tasks.takes_anything', "
            f"'default', 0, 'READY', %s{'::jsonb' if IS_POSTGRES else ''}, '{{}}', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 1, 0, '[]', '[]', '', '')",
            [args_json],
        )
    return Job.objects.order_by("-pk").values_list("pk", flat=True)[0]


@pytest.mark.parametrize(
    "depth",
    [
        800,
        pytest.param(
            5000,
            marks=pytest.mark.skipif(not IS_POSTGRES, reason="SQLite stores 1,000 levels at most"),
        ),
    ],
)
def test_a_row_nested_too_deep_for_python_fails_alone(depth):
    text = "[" * depth + "]" * depth
    hostile, innocents = among_innocents(lambda: insert_row_with_args(f"[{text}]"))
    finished = run_worker(**BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    job = Job.objects.defer("args").get(pk=hostile)  # Django's JSONField cannot load it either
    assert (job.status, job.started_at is not None) == (JobStatus.FAILED, True)
    [error] = job.errors
    assert error["exception_class_path"] == "django_dbtasks.exceptions.ArgumentNotSerializable"
    assert "so it was never run" in error["traceback"]
    assert not Execution.objects.filter(job_id=str(hostile)).exists()
    assert_innocents_ran_once(innocents)


def test_a_job_that_cannot_be_packed_for_a_pool_process_fails_alone():
    """Defence in depth behind the nesting limit: ``pack()`` fails only the job at fault."""
    import pickle

    from django_dbtasks.claimed import ClaimedJob
    from django_dbtasks.pool import pack

    def job(job_id: int, args: list) -> ClaimedJob:
        return ClaimedJob(job_id, "t", "default", 0, args, {}, 1, 1, "token", None, None, [])

    message, failed = pack([job(1, []), job(2, nested(100_000)), job(3, ["ok"])])
    assert [(bad.id, type(error)) for bad, error in failed] == [(2, RecursionError)]
    assert [item[0] for item in pickle.loads(message)] == [1, 3]


# What a task does to its own process


def test_a_task_that_forks_answers_once_and_the_copy_stays_silent():
    hostile, innocents = among_innocents(tasks.forks.enqueue)
    finished = run_worker(**BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    job = Job.objects.get(pk=hostile)
    assert job.status == JobStatus.SUCCESSFUL and job.attempts == 1
    assert isinstance(job.return_value, int) and job.return_value > 0  # the parent's answer
    assert_innocents_ran_once(innocents)


@pytest.mark.parametrize(
    ("task", "error_class"),
    [
        (tasks.raises_system_exit, "builtins.SystemExit"),
        (tasks.raises_keyboard_interrupt, "builtins.KeyboardInterrupt"),
        (tasks.raises_base_exception, "tests.testapp.tasks.Stop"),
        (tasks.raises_unpicklable, "tests.testapp.tasks.Unpicklable"),
    ],
    ids=["SystemExit", "KeyboardInterrupt", "BaseException", "unpicklable"],
)
def test_base_exceptions_fail_their_job_and_the_pool_process_lives_on(task, error_class):
    hostile, innocents = among_innocents(task.enqueue)
    finished = run_worker("--concurrency", "1", **BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    error = the_error(hostile)
    assert error["exception_class_path"] == error_class
    assert "WorkerCrashed" not in str(error)
    assert_innocents_ran_once(innocents)
    pool_processes = set(Execution.objects.values_list("pid", flat=True))
    assert len(pool_processes) == 1, "the pool process must not have died"


# A job that kills its worker


def finished_all(job_ids: list[int]) -> bool:
    return not Job.objects.filter(pk__in=job_ids).exclude(status__in=FINISHED).exists()


def run_restarting_workers(start_worker, job_ids: list[int], timeout: float = 120) -> int:
    """One worker at a time, restarted whenever it dies, until every job is finished.

    Returns how many times a worker died.
    """
    deaths = 0
    worker = start_worker("--concurrency", "2", **SHORT_LEASE)
    deadline = time.monotonic() + timeout
    while not finished_all(job_ids):
        assert time.monotonic() < deadline, list(
            Job.objects.filter(pk__in=job_ids)
            .exclude(status__in=FINISHED)
            .values_list("pk", "status", "crashes")
        )
        if worker.process.poll() is not None:
            assert worker.process.returncode == -signal.SIGKILL, worker.output()
            deaths += 1
            worker = start_worker("--concurrency", "2", **SHORT_LEASE)
        time.sleep(0.1)
    return deaths


@pytest.mark.slow
@pytest.mark.parametrize("task", [tasks.kills_its_worker, tasks.kills_its_group])
def test_only_the_job_that_kills_its_worker_is_poison(start_worker, task):
    hostile, innocents = among_innocents(task.enqueue)
    deaths = run_restarting_workers(start_worker, [hostile, *innocents])

    error = the_error(hostile)
    assert error["exception_class_path"] == "django_dbtasks.exceptions.PoisonJob"
    assert "the last 2 time(s) it was the only job that worker held" in error["traceback"]
    assert deaths == 3, "one death shared with the batch, then two while it ran alone"
    jobs = Job.objects.filter(pk__in=innocents)
    assert sorted(jobs.values_list("status", flat=True)) == [JobStatus.SUCCESSFUL] * INNOCENTS
    assert not [job.pk for job in jobs if job.errors or job.crashes or job.attempts != 1]
    runs = runs_of(innocents)
    assert all(runs[job_id] >= 1 for job_id in innocents)


# Rescue and recycling


def test_a_burst_worker_rescues_expired_leases_before_it_claims():
    result = tasks.record_run.enqueue("left-running")
    Job.objects.filter(pk=result.id).update(
        status=JobStatus.RUNNING,
        attempts=1,
        claimed_by="a-worker-that-died",
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() - dt.timedelta(minutes=5),
    )
    finished = run_worker(**BIG_BATCHES)

    assert finished.returncode == 0, finished.stderr
    assert f"job={result.id} task=tests.testapp.tasks.record_run outcome=RESCUED" in (
        finished.stderr
    )
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts, job.crashes) == (JobStatus.SUCCESSFUL, 1, 0)
    assert runs_of([job.pk])[job.pk] == 1


def test_pool_processes_are_recycled_after_max_tasks_per_child():
    results = tasks.pid_of_pool_process.enqueue_many([((), {})] * 40)
    finished = run_worker("--concurrency", "2", "--max-tasks-per-child", "5")

    assert finished.returncode == 0, finished.stderr
    jobs = Job.objects.filter(pk__in=[r.id for r in results])
    assert sorted(jobs.values_list("status", flat=True)) == [JobStatus.SUCCESSFUL] * 40
    assert not [job.pk for job in jobs if job.errors or job.attempts != 1]
    per_process = Counter(jobs.values_list("return_value", flat=True))
    assert max(per_process.values()) <= 5
    assert len(per_process) >= 8


def test_pool_processes_are_recycled_after_max_memory_per_child():
    results = tasks.pid_of_pool_process.enqueue_many([((), {})] * 10)
    # 1 KB: every process is over it after its first job, which still runs to its end.
    finished = run_worker("--concurrency", "2", "--max-memory-per-child", "1")

    assert finished.returncode == 0, finished.stderr
    jobs = Job.objects.filter(pk__in=[r.id for r in results])
    assert sorted(jobs.values_list("status", flat=True)) == [JobStatus.SUCCESSFUL] * 10
    assert len(set(jobs.values_list("return_value", flat=True))) == 10
    assert os.getpid() not in set(jobs.values_list("return_value", flat=True))


def test_recycling_options_refuse_nonsense():
    finished = run_worker("--max-tasks-per-child", "0")
    assert finished.returncode != 0
    assert "must be at least 1" in finished.stderr
