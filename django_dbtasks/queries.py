"""Every SQL statement the worker runs, each written once, named and explained.

Two dialects share the same statements: PostgreSQL (production) and SQLite
(the embedded default). Every time comparison uses the database's clock
(``now()`` / ``STRFTIME('now')``), never a worker's, because workers on
several hosts have skewed clocks. Every write about a claimed job carries its
``lease_token`` (fencing): a worker that froze past its lease, and whose job
was rescued and re-run by another, finds its late writes match no row.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from .claimed import ClaimedJob
from .models import Job, Worker
from .serialization import MAX_NESTING, deeper_than

JOB = Job._meta.db_table
WORKER = Worker._meta.db_table
NOW = {"postgresql": "now()", "sqlite": "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"}
_json_string = json.encoder.encode_basestring  # a str as a quoted JSON string (in C)


class Dialect:
    """The few spellings that differ between PostgreSQL and SQLite."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.postgres = connection.vendor == "postgresql"
        self.now = NOW["postgresql" if self.postgres else "sqlite"]

    def now_plus(self) -> str:
        """SQL for the database's now plus a parameter of seconds."""
        if self.postgres:
            return "(now() + make_interval(secs => %s))"
        return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s)"

    def seconds(self, value: float) -> Any:
        """The parameter ``now_plus()`` expects for ``value`` seconds."""
        return float(value) if self.postgres else f"{float(value):+.3f} seconds"

    def append_json(self, column: str) -> str:
        """SQL appending one JSON value (given as a text parameter) to a JSON array.

        A column that is not an array (a row written by SQL or a buggy release)
        starts a new one, so the history we write is never lost in it.
        """
        if self.postgres:
            array = f"CASE WHEN jsonb_typeof({column}) = 'array' THEN {column} ELSE '[]' END"
            return f"({array}) || jsonb_build_array(%s::jsonb)"
        array = f"CASE WHEN json_type({column}) = 'array' THEN {column} ELSE '[]' END"
        return f"json_insert({array}, '$[#]', json(%s))"

    def new_token(self) -> str:
        if self.postgres:
            return "gen_random_uuid()"
        return "lower(hex(randomblob(16)))"

    def in_queues(self, queues: list[str]) -> tuple[str, list[Any]]:
        """SQL selecting jobs of ``queues``; an empty list is every queue (``QUEUES: []``)."""
        if not queues:
            return "1 = 1", []
        return self.in_list("queue_name", queues)

    def in_list(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        if self.postgres:
            return f"{column} = ANY(%s)", [list(values)]
        return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


@contextmanager
def insert_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """The cursor of ``enqueue()``'s INSERT, which may be a prepared statement.

    Django binds parameters on the client, so PostgreSQL parses and plans each
    statement every time, and it turns psycopg's prepared statements off (the
    ``prepare_threshold`` connection option), because a connection pooler in
    transaction mode may not support them. When the project turns them back on
    (``"prepare_threshold": N`` in the database's ``OPTIONS``), the INSERT binds
    its parameters on the server instead, so psycopg prepares it once per
    connection: about a tenth more ``enqueue()`` calls per second here. Otherwise, and
    on SQLite, this is Django's own cursor. Either way Django wraps it: query
    logging, ``execute_wrapper()`` hooks and error translation work as usual.

    Only the INSERT: its plan is the same whatever its parameters. The claim's
    best plan depends on its LIMIT, and PostgreSQL's generic plan for it (used
    after five executions of a prepared statement when it looks no costlier)
    can hash-join the whole table, so the claim is planned each time.
    """
    options = connection.settings_dict.get("OPTIONS") or {}
    if connection.vendor == "postgresql" and options.get("prepare_threshold") is not None:
        import psycopg

        # What connection.cursor() does, with a server-binding cursor class.
        connection.close_if_health_check_failed()  # type: ignore[attr-defined]
        connection.ensure_connection()
        with connection.wrap_database_errors:
            raw = psycopg.Cursor(connection.connection)
            cursor = connection._prepare_cursor(raw)  # type: ignore[attr-defined]
    else:
        cursor = connection.cursor()
    with cursor:
        yield cursor


def lock_for_writing(connection: BaseDatabaseWrapper) -> None:
    """SQLite: take the write lock first, in a transaction that reads before it writes.

    SQLite starts a transaction as a reader. If another process writes before
    this transaction's first write, that write fails at once with "database is
    locked", whatever the timeout (its snapshot is stale: waiting cannot help).
    A write as the transaction's first statement (this one changes nothing)
    waits for the lock, up to the timeout, instead. PostgreSQL needs nothing.
    """
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {WORKER} SET id = id WHERE 0")


def _json(value: Any) -> Any:
    """A JSON column's value: SQLite and Django's loaders give text, a JSON document
    (the PostgreSQL claim) gives it decoded already."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)  # in C; PostgreSQL's JSON and SQLite
        except (TypeError, ValueError):
            parsed = parse_datetime(str(value))
    if parsed is not None and is_naive(parsed):
        parsed = make_aware(parsed, timezone=UTC)
    return parsed


def _token(value: Any) -> str:
    # PostgreSQL returns it as text (see ``claim``), SQLite stores text: no UUID objects
    # on the hot path; each write hands the same text back.
    return str(value)


CLAIM_COLUMNS = (
    "id, task_path, queue_name, priority, {args}, {kwargs}, attempts, max_attempts, "
    "lease_token, enqueued_at, started_at, worker_ids"
)


def _arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any], str]:
    """A row's args and kwargs, decoded, and why they cannot be run ("" if they can).

    Rows written by ``enqueue()`` are never nested deeper than ``MAX_NESTING``;
    a row written some other way is held to the same limit here, before its
    depth can break pickling for a pool process or Django's own TaskResult:
    that job fails, and the claim of the jobs beside it does not.
    """
    try:
        decoded = _json(args), _json(kwargs)
    except (ValueError, RecursionError) as error:
        return [], {}, f"{type(error).__name__}: {error}"
    if not isinstance(decoded[0], list) or not isinstance(decoded[1], dict):
        return (
            [],
            {},
            (
                f"a malformed row: args must be a JSON array and kwargs a JSON object, "
                f"not {_json_kind(decoded[0])} and {_json_kind(decoded[1])}"
            ),
        )
    for text, value in zip((args, kwargs), decoded, strict=True):
        # Each level of nesting costs a bracket: most rows are cleared by their length.
        if (
            isinstance(text, str)
            and len(text) > MAX_NESTING
            and text.count("[") + text.count("{") > MAX_NESTING
        ):
            if deeper_than(value, MAX_NESTING):
                return [], {}, f"nested more than {MAX_NESTING} levels deep"
    return decoded[0], decoded[1], ""


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _claimed(row: Any) -> ClaimedJob:
    """One claimed row as a ``ClaimedJob`` (see ``_arguments`` for rows it cannot run)."""
    args, kwargs, unrunnable = _arguments(row[4], row[5])
    try:
        worker_ids = _json(row[11])
    except ValueError:
        worker_ids = None
    if not isinstance(worker_ids, list):
        unrunnable = unrunnable or f"a malformed row: worker_ids is {_json_kind(worker_ids)}"
        worker_ids = []
    return ClaimedJob(
        id=row[0],
        task_path=row[1],
        queue_name=row[2],
        priority=row[3],
        args=args,
        kwargs=kwargs,
        attempts=row[6],
        max_attempts=row[7],
        lease_token=_token(row[8]),
        enqueued_at=_when(row[9]),
        started_at=_when(row[10]),
        worker_ids=worker_ids,
        unrunnable=unrunnable,
    )


def claim(
    connection: BaseDatabaseWrapper,
    queues: list[str],
    limit: int,
    worker_id: str,
    lease_seconds: float,
    suspects: bool = False,
    backend: str = "default",
) -> list[ClaimedJob]:
    """Claim up to ``limit`` ready jobs, highest priority first, then oldest.

    Suspects (jobs whose worker died while holding them: ``crashes > 0``) are
    never claimed beside others: ``suspects=True`` claims only them, and the
    worker runs such a job alone, so that if it kills its worker again, no
    other job is there to be blamed with it.

    PostgreSQL: candidates are picked and locked with ``FOR NO KEY UPDATE
    SKIP LOCKED`` in a ``MATERIALIZED`` CTE (so the planner cannot turn the
    LIMIT into a nested loop that locks more rows), and marked RUNNING by the
    same statement, so two workers never claim one job and never wait on each
    other. The CTE walks the partial index ``dbtasks_job_ready`` in order.
    SQLite: one ``UPDATE ... RETURNING`` statement takes the database's write
    lock before it reads, so concurrent worker processes on one file are
    serialised by SQLite itself.
    """
    d = Dialect(connection)
    queue_sql, queue_params = d.in_queues(queues)
    crashes = "crashes > 0" if suspects else "crashes = 0"
    candidates = (
        f"SELECT id FROM {JOB} WHERE status = 'READY' AND run_after <= {d.now} "
        f"AND backend = %s AND {queue_sql} AND {crashes} "
        f"ORDER BY priority DESC, run_after, id LIMIT %s"
    )
    assignments = (
        f"status = 'RUNNING', attempts = attempts + 1, "
        f"started_at = COALESCE(started_at, {d.now}), last_attempted_at = {d.now}, "
        f"claimed_by = %s, lease_token = {d.new_token()}, "
        f"lease_expires_at = {d.now_plus()}, "
        f"worker_ids = {d.append_json('worker_ids')}, progress = NULL, progress_message = ''"
    )
    assign_params = [worker_id, d.seconds(lease_seconds), json.dumps(worker_id)]
    if d.postgres:
        # The claimed rows come back as one JSON document: one json.loads in C instead
        # of Python loaders for the timestamps, which were a quarter of the claim's
        # time in the worker. Arguments come inside it as text, decoded job by job:
        # one job's deep nesting cannot break the decoding of the others.
        columns = CLAIM_COLUMNS.format(args="args::text", kwargs="kwargs::text")
        sql = (
            f"WITH candidates AS MATERIALIZED ({candidates} FOR NO KEY UPDATE SKIP LOCKED), "
            f"claimed AS (UPDATE {JOB} AS job SET {assignments} FROM candidates "
            f"WHERE job.id = candidates.id RETURNING job.*) "
            f"SELECT json_agg(json_build_array({columns}))::text FROM claimed"
        )
        params = [backend, *queue_params, limit, *assign_params]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            (document,) = cursor.fetchone()
        rows = json.loads(document) if document else []
    else:
        columns = CLAIM_COLUMNS.format(args="args", kwargs="kwargs")
        sql = f"UPDATE {JOB} SET {assignments} WHERE id IN ({candidates}) RETURNING {columns}"
        params = [*assign_params, backend, *queue_params, limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    jobs = [_claimed(row) for row in rows]
    jobs.sort(key=lambda job: (-job.priority, job.id))
    return jobs


def complete_many(
    connection: BaseDatabaseWrapper, completions: list[tuple[int, str, str]]
) -> set[int]:
    """Mark jobs SUCCESSFUL in one statement; return the ids that were applied.

    ``completions`` holds ``(job_id, lease_token, return_value_json)``. Each
    row is only updated while its token still matches (this worker still
    holds the lease), so a batch never overwrites a job that was rescued.
    """
    if not completions:
        return set()
    d = Dialect(connection)
    assignments = (
        f"status = 'SUCCESSFUL', finished_at = {d.now}, claimed_by = '', "
        f"lease_token = NULL, lease_expires_at = NULL, crashes = 0"
    )
    if d.postgres:
        # One JSON document rather than three arrays: the return values are JSON
        # already, so it is joined as text, and PostgreSQL parses it in C instead
        # of psycopg quoting each array element in Python.
        sql = (
            f"UPDATE {JOB} AS job SET {assignments}, return_value = done.value "
            f"FROM jsonb_to_recordset(%s::jsonb) AS done(id bigint, token uuid, value jsonb) "
            f"WHERE job.id = done.id AND job.lease_token = done.token "
            f"AND job.status = 'RUNNING' RETURNING job.id"
        )
        params: list[Any] = [
            "["
            + ",".join(
                f'{{"id":{int(job_id)},"token":{_json_string(token)},"value":{value}}}'
                for job_id, token, value in completions
            )
            + "]"
        ]
    else:
        rows = ", ".join(["(%s, %s, %s)"] * len(completions))
        sql = (
            f"UPDATE {JOB} SET {assignments}, return_value = done.value FROM "
            f"(SELECT column1 AS id, column2 AS token, column3 AS value FROM (VALUES {rows})) "
            f"AS done WHERE {JOB}.id = done.id AND {JOB}.lease_token = done.token "
            f"AND {JOB}.status = 'RUNNING' RETURNING {JOB}.id"
        )
        params = [item for job_id, token, value in completions for item in (job_id, token, value)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def fail_attempt(
    connection: BaseDatabaseWrapper,
    job_id: int,
    token: str,
    error: dict[str, Any],
    retry_in: float | None,
) -> str | None:
    """Record a failed attempt; return the job's new status, or None if not applied.

    The job goes back to READY after ``retry_in`` seconds while it has
    attempts left (the row's own ``attempts < max_attempts`` decides), else it
    is FAILED; ``retry_in=None`` fails it for good. Applies only while this
    worker still holds the job's lease.
    """
    d = Dialect(connection)
    retry = "(attempts < max_attempts AND %s)"
    sql = (
        f"UPDATE {JOB} SET "
        f"status = CASE WHEN {retry} THEN 'READY' ELSE 'FAILED' END, "
        f"run_after = CASE WHEN {retry} THEN {d.now_plus()} ELSE run_after END, "
        f"finished_at = CASE WHEN {retry} THEN NULL ELSE {d.now} END, "
        f"errors = {d.append_json('errors')}, "
        f"claimed_by = '', lease_token = NULL, lease_expires_at = NULL, crashes = 0 "
        f"WHERE id = %s AND lease_token = %s AND status = 'RUNNING' RETURNING status"
    )
    can_retry = retry_in is not None
    params = [
        can_retry,
        can_retry,
        d.seconds(retry_in or 0),
        can_retry,
        json.dumps(error),
        job_id,
        token,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def release(
    connection: BaseDatabaseWrapper, worker_id: str, keep_tokens: list[str] | tuple = ()
) -> int:
    """Put this worker's RUNNING jobs back to READY, their attempt not counted.

    Every job claimed by ``worker_id`` is released except those whose token is
    in ``keep_tokens``. On shutdown nothing is kept: the jobs run again on
    another worker, as if never claimed. At each heartbeat the worker keeps
    the jobs it is running, so this releases only claims it lost track of
    (a claim that committed while the connection dropped before the reply).
    """
    d = Dialect(connection)
    keep_sql, keep_params = "", list[Any]()
    if keep_tokens:
        in_sql, keep_params = d.in_list("lease_token", list(keep_tokens))
        keep_sql = f" AND NOT ({in_sql})"
    sql = (
        f"UPDATE {JOB} SET status = 'READY', attempts = attempts - 1, run_after = {d.now}, "
        f"claimed_by = '', lease_token = NULL, lease_expires_at = NULL "
        f"WHERE claimed_by = %s AND status = 'RUNNING'{keep_sql}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [worker_id, *keep_params])
        return cursor.rowcount


def suspect_waiting(
    connection: BaseDatabaseWrapper, queues: list[str], backend: str = "default"
) -> bool:
    """Whether a suspect (see ``claim``) is due in ``queues``: the worker then runs it alone.

    The partial index ``dbtasks_job_suspect`` holds only READY suspects, so
    this costs next to nothing however long the queue is.
    """
    d = Dialect(connection)
    queue_sql, queue_params = d.in_queues(queues)
    sql = (
        f"SELECT 1 FROM {JOB} WHERE status = 'READY' AND crashes > 0 "
        f"AND run_after <= {d.now} AND backend = %s AND {queue_sql} LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [backend, *queue_params])
        return cursor.fetchone() is not None


def rescue_expired(
    connection: BaseDatabaseWrapper, max_crashes: int, poison_error: dict[str, Any]
) -> list[tuple[int, str, str]]:
    """Take back RUNNING jobs whose lease expired: their worker died or froze.

    A worker's death is not the job's failure, so the attempt is given back
    and the job is READY again, with one more crash mark. Which of the jobs a
    dead worker held was running cannot be known after its death, so every
    one of them becomes a suspect (``crashes`` 1), which is then claimed and
    run alone (see ``claim``). A job already a suspect was alone in its
    worker: its death is certain to be its own, and once it has
    ``max_crashes`` of them in a row it is FAILED as poison. So a job that
    kills its worker is failed after ``max(max_crashes, 2)`` deaths, and the
    jobs claimed beside it run again, cleared. Safe when several workers
    rescue at once: the WHERE clause is re-checked on the locked row, so each
    job is taken once. Returns ``(id, task_path, new_status)`` per rescued job.
    """
    d = Dialect(connection)
    poisoned = "crashes > 0 AND crashes + 1 >= %s"
    sql = (
        f"UPDATE {JOB} SET "
        f"status = CASE WHEN {poisoned} THEN 'FAILED' ELSE 'READY' END, "
        f"finished_at = CASE WHEN {poisoned} THEN {d.now} ELSE NULL END, "
        f"errors = CASE WHEN {poisoned} THEN {d.append_json('errors')} ELSE errors END, "
        f"attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
        f"crashes = crashes + 1, run_after = {d.now}, "
        f"claimed_by = '', lease_token = NULL, lease_expires_at = NULL "
        f"WHERE status = 'RUNNING' AND lease_expires_at < {d.now} "
        f"RETURNING id, task_path, status"
    )
    params: list[Any] = [max_crashes, max_crashes, max_crashes, json.dumps(poison_error)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], row[1], row[2]) for row in cursor.fetchall()]


def register_worker(
    connection: BaseDatabaseWrapper,
    worker_id: str,
    hostname: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    backend: str = "default",
) -> None:
    d = Dialect(connection)
    sql = (
        f"INSERT INTO {WORKER} (id, backend, hostname, pid, queues, concurrency, started_at, "
        f"last_heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, {d.now}, {d.now})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [worker_id, backend, hostname, pid, json.dumps(queues), concurrency])


def heartbeat(
    connection: BaseDatabaseWrapper, worker_id: str, tokens: list[str], lease_seconds: float
) -> int:
    """Prove this worker is alive and extend the leases it holds (by token)."""
    d = Dialect(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {WORKER} SET last_heartbeat_at = {d.now}, stopped_at = NULL WHERE id = %s",
            [worker_id],
        )
        if not tokens:
            return 0
        in_sql, in_params = d.in_list("lease_token", list(tokens))
        cursor.execute(
            f"UPDATE {JOB} SET lease_expires_at = {d.now_plus()} "
            f"WHERE claimed_by = %s AND status = 'RUNNING' AND {in_sql}",
            [d.seconds(lease_seconds), worker_id, *in_params],
        )
        return cursor.rowcount


def mark_worker_stopped(connection: BaseDatabaseWrapper, worker_id: str) -> None:
    d = Dialect(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {WORKER} SET stopped_at = {d.now} WHERE id = %s", [worker_id])


def delete_dead_workers(connection: BaseDatabaseWrapper, retention_seconds: float) -> int:
    """Forget workers whose last heartbeat is older than the retention period."""
    d = Dialect(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {WORKER} WHERE last_heartbeat_at < {d.now_plus()}",
            [d.seconds(-retention_seconds)],
        )
        return cursor.rowcount


def cancel(
    connection: BaseDatabaseWrapper, job_id: int, error: dict[str, Any], backend: str = "default"
) -> bool:
    """Cancel a job of ``backend`` that has not started (it is READY); return whether it was."""
    d = Dialect(connection)
    sql = (
        f"UPDATE {JOB} SET status = 'CANCELLED', finished_at = {d.now}, "
        f"errors = {d.append_json('errors')} WHERE id = %s AND backend = %s AND status = 'READY'"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(error), job_id, backend])
        return cursor.rowcount == 1


def set_progress(
    connection: BaseDatabaseWrapper, job_id: int, token: str, percent: int, message: str
) -> bool:
    """Record a running job's progress; applies only while ``token`` still holds the job."""
    sql = (
        f"UPDATE {JOB} SET progress = %s, progress_message = %s "
        f"WHERE id = %s AND lease_token = %s AND status = 'RUNNING'"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [percent, message, job_id, token])
        return cursor.rowcount == 1


def prune(
    connection: BaseDatabaseWrapper, statuses: list[str], older_than: float, batch_size: int
) -> int:
    """Delete one batch of finished jobs older than ``older_than`` seconds.

    One small DELETE per call, so each holds its row locks briefly and
    autovacuum keeps up; the caller loops until a batch comes back short.
    The subquery walks the ``(status, finished_at)`` index.
    """
    d = Dialect(connection)
    status_sql, status_params = d.in_list("status", statuses)
    sql = (
        f"DELETE FROM {JOB} WHERE id IN (SELECT id FROM {JOB} WHERE {status_sql} "
        f"AND finished_at < {d.now_plus()} LIMIT %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*status_params, d.seconds(-older_than), batch_size])
        return cursor.rowcount


@functools.lru_cache(maxsize=64)
def _insert_sql(postgres: bool, rows: int) -> str:
    """The INSERT of ``insert_jobs``: ``rows`` VALUES rows, or (``rows=0``) one row per
    element of two array parameters, which binds far quicker than 7 parameters a row."""
    columns = (
        "backend, task_path, queue_name, priority, max_attempts, run_after, args, kwargs, "
        "status, attempts, crashes, errors, worker_ids, claimed_by"
    )
    fixed = "'READY', 0, 0, '[]', '[]', ''"
    # The clock of ``enqueued_at``'s default (Django's Now()): a job never deferred has
    # run_after == enqueued_at, which is how its result tells ``run_after=None``.
    clock = "statement_timestamp()" if postgres else NOW["sqlite"]
    if rows == 0:
        return (
            f"INSERT INTO {JOB} ({columns}) SELECT %s, %s, %s, %s, %s, COALESCE(%s, {clock}), "
            f"call.args, call.kwargs, {fixed} "
            f"FROM unnest(%s::jsonb[], %s::jsonb[]) AS call(args, kwargs) "
            f"RETURNING id, enqueued_at"
        )
    cast = "::jsonb" if postgres else ""
    row = f"(%s, %s, %s, %s, %s, COALESCE(%s, {clock}), %s{cast}, %s{cast}, {fixed})"
    return (
        f"INSERT INTO {JOB} ({columns}) VALUES {', '.join([row] * rows)} RETURNING id, enqueued_at"
    )


def insert_jobs(
    connection: BaseDatabaseWrapper,
    *,
    backend: str,
    task_path: str,
    queue_name: str,
    priority: int,
    max_attempts: int,
    run_after: datetime | None,
    calls: list[tuple[str, str]],
) -> list[tuple[int, datetime | None]]:
    """Insert one READY job per ``(args_json, kwargs_json)`` in one statement.

    Returns ``(id, enqueued_at)`` per call, in order. This is ``enqueue()``'s
    hot path, so it is one precompiled statement rather than the ORM's
    ``save()``; the column defaults mirror the model's. ``run_after`` NULL
    means now, on the database's clock. Runs in the caller's transaction.
    """
    postgres = connection.vendor == "postgresql"
    when = None if run_after is None else connection.ops.adapt_datetimefield_value(run_after)
    per_job = (backend, task_path, queue_name, priority, max_attempts, when)
    if postgres and len(calls) > 1:
        sql = _insert_sql(postgres, rows=0)
        params: list[Any] = [
            *per_job,
            [args for args, _ in calls],
            [kwargs for _, kwargs in calls],
        ]
    else:
        sql = _insert_sql(postgres, rows=len(calls))
        params = [value for args, kwargs in calls for value in (*per_job, args, kwargs)]
    with insert_cursor(connection) as cursor:
        cursor.execute(sql, params)
        return [(row[0], _when(row[1])) for row in cursor.fetchall()]


def insert_fire(connection: BaseDatabaseWrapper, job: Job) -> int | None:
    """Insert the job of one schedule's fire time, unless that fire time has one already.

    Returns the new id, or None when another scheduler enqueued it first: the
    partial unique index ``dbtasks_job_one_per_fire_time`` decides, and only
    that conflict is skipped (SQLite's ``INSERT OR IGNORE``, which
    ``bulk_create(ignore_conflicts=True)`` writes there, would also drop a row
    that breaks a CHECK constraint, silently).
    """
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    sql = (
        f"INSERT INTO {JOB} (backend, task_path, queue_name, priority, max_attempts, args, "
        f"kwargs, schedule_id, scheduled_for, status, attempts, crashes, errors, worker_ids, "
        f"claimed_by) VALUES (%s, %s, %s, %s, %s, %s{cast}, %s{cast}, %s, %s, "
        f"'READY', 0, 0, '[]', '[]', '') "
        f"ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING "
        f"RETURNING id"
    )
    params: list[Any] = [
        job.backend,
        job.task_path,
        job.queue_name,
        job.priority,
        job.max_attempts,
        json.dumps(job.args),
        json.dumps(job.kwargs),
        job.schedule_id,
        connection.ops.adapt_datetimefield_value(job.scheduled_for),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def database_now(connection: BaseDatabaseWrapper) -> datetime:
    """The database's clock, for code that must compare times the way SQL does.

    ``clock_timestamp()`` rather than ``now()``: the time of this call, even
    inside a transaction that began earlier.
    """
    d = Dialect(connection)
    clock = "clock_timestamp()" if d.postgres else d.now.replace("%%", "%")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {clock}")
        value = _when(cursor.fetchone()[0])
    assert value is not None
    return value


# The admin: operator actions and the overview's statistics.


def retry(connection: BaseDatabaseWrapper, job_ids: list[int], unique: bool) -> list[int]:
    """Put FAILED or CANCELLED jobs back to READY, to run now; return the ids that changed.

    A retry is a fresh start: ``attempts`` and ``crashes`` go back to 0 (the
    task's ``max_attempts`` applies again), the run times and any return
    value are cleared, and the job is due at once. ``errors`` and
    ``worker_ids`` are kept: the history of earlier attempts stays readable.
    The status condition is checked on the row as it is updated, so a job a
    worker (or another operator) changed in the meantime is left alone.
    ``unique`` selects the rows that have a ``unique_key`` (the caller
    retries those one by one: see ``JobAdmin``), else the rows without one.
    """
    if not job_ids:
        return []
    d = Dialect(connection)
    id_sql, id_params = d.in_list("id", [int(i) for i in job_ids])
    key = "unique_key IS NOT NULL" if unique else "unique_key IS NULL"
    sql = (
        f"UPDATE {JOB} SET status = 'READY', attempts = 0, crashes = 0, run_after = {d.now}, "
        f"started_at = NULL, last_attempted_at = NULL, finished_at = NULL, "
        f"return_value = NULL, claimed_by = '', lease_token = NULL, lease_expires_at = NULL, "
        f"progress = NULL, progress_message = '' "
        f"WHERE {id_sql} AND status IN ('FAILED', 'CANCELLED') AND {key} RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, id_params)
        return [row[0] for row in cursor.fetchall()]


def cancel_many(
    connection: BaseDatabaseWrapper, job_ids: list[int], error: dict[str, Any]
) -> list[int]:
    """Cancel the READY jobs among ``job_ids`` in one statement; return the ids cancelled.

    Like ``cancel()``: a job a worker claimed in the meantime is RUNNING by
    the time this statement sees it, and is not touched.
    """
    if not job_ids:
        return []
    d = Dialect(connection)
    id_sql, id_params = d.in_list("id", [int(i) for i in job_ids])
    sql = (
        f"UPDATE {JOB} SET status = 'CANCELLED', finished_at = {d.now}, "
        f"errors = {d.append_json('errors')} WHERE {id_sql} AND status = 'READY' RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(error), *id_params])
        return [row[0] for row in cursor.fetchall()]


def ready_stats(
    connection: BaseDatabaseWrapper,
) -> list[tuple[tuple[str, str], int, int, float | None]]:
    """Per ``(alias, queue)``: READY jobs, how many are due, the oldest due one's wait (s).

    Reads only READY rows (the partial index ``dbtasks_job_ready`` holds
    exactly those), so its cost follows the backlog, not the table's history.
    """
    d = Dialect(connection)
    if d.postgres:
        wait = f"EXTRACT(EPOCH FROM ({d.now} - MIN(run_after) FILTER (WHERE run_after <= {d.now})))"
    else:
        wait = (
            "(julianday('now') - julianday(MIN(CASE WHEN run_after <= "
            f"{d.now} THEN run_after END))) * 86400.0"
        )
    sql = (
        f"SELECT backend, queue_name, COUNT(*), "
        f"SUM(CASE WHEN run_after <= {d.now} THEN 1 ELSE 0 END), "
        f"{wait} FROM {JOB} WHERE status = 'READY' GROUP BY backend, queue_name"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [])
        return [
            (
                (row[0], row[1]),
                int(row[2]),
                int(row[3] or 0),
                None if row[4] is None else float(row[4]),
            )
            for row in cursor.fetchall()
        ]


def running_counts(connection: BaseDatabaseWrapper) -> dict[tuple[str, str], int]:
    """RUNNING jobs per ``(alias, queue)`` (the partial index ``dbtasks_job_running_lease``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT backend, queue_name, COUNT(*) FROM {JOB} WHERE status = 'RUNNING' "
            f"GROUP BY backend, queue_name"
        )
        return {(row[0], row[1]): int(row[2]) for row in cursor.fetchall()}


def finished_per_minute(
    connection: BaseDatabaseWrapper, minutes: int
) -> list[tuple[tuple[str, str], str, int, int]]:
    """Jobs finished lately: ``((alias, queue), status, minutes_ago, count)`` rows.

    A range condition on ``finished_at`` with the finished statuses, so the
    partial index ``dbtasks_job_finished`` is used: the cost follows the
    jobs of the window, not the millions of older rows. ``minutes_ago`` is 0
    for the current minute.
    """
    d = Dialect(connection)
    if d.postgres:
        ago = f"FLOOR(EXTRACT(EPOCH FROM ({d.now} - finished_at)) / 60)"
    else:
        ago = "CAST((julianday('now') - julianday(finished_at)) * 1440 AS INTEGER)"
    sql = (
        f"SELECT backend, queue_name, status, {ago} AS ago, COUNT(*) FROM {JOB} "
        f"WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED') "
        f"AND finished_at >= {d.now_plus()} GROUP BY backend, queue_name, status, ago"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [d.seconds(-60 * minutes)])
        return [((row[0], row[1]), row[2], int(row[3]), int(row[4])) for row in cursor.fetchall()]


def failed_and_cancelled_counts(
    connection: BaseDatabaseWrapper,
) -> dict[tuple[tuple[str, str], str], int]:
    """FAILED and CANCELLED jobs of all time, per ``((alias, queue), status)``.

    These are the rows an operator acts on, and few: the partial index
    ``dbtasks_job_failed`` holds exactly them, so this stays cheap however
    many successful jobs the table keeps.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT backend, queue_name, status, COUNT(*) FROM {JOB} "
            f"WHERE status IN ('FAILED', 'CANCELLED') GROUP BY backend, queue_name, status"
        )
        return {((row[0], row[1]), row[2]): int(row[3]) for row in cursor.fetchall()}
