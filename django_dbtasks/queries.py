"""Every SQL statement of the job and worker tables, each written once, named and explained.

Two dialects share the same statements: PostgreSQL (production) and SQLite
(the embedded default). Each statement is written whole, once per dialect,
as a module constant (``CLAIM_POSTGRES``, ``CLAIM_SQLITE``); the few holes in
braces are lists of values (see ``_in``), the rows of a batch, or the trace
context column of a job enqueued inside a trace, filled in by small cached
builders. Parameters are named (``%(lease)s``, so a literal
``%`` is ``%%``); a VALUES list, in which each value is used once, is bound
by position.

Every time comparison uses the database's clock (``now()`` /
``STRFTIME('now')``), never a worker's, because workers on several hosts
have skewed clocks. Every write about a claimed job carries its
``lease_token`` (fencing): a worker that froze past its lease, and whose job
was rescued and re-run by another, finds its late writes match no row.

Sections: claims and fencing, workers, enqueue, operators, statistics, tallies.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from .claimed import ClaimedJob
from .errors import latest_error_sql
from .models import Job, Tally, Worker
from .serialization import MAX_NESTING, deeper_than

JOB = Job._meta.db_table
WORKER = Worker._meta.db_table
TALLY = Tally._meta.db_table
#: SQLite's ``now()``: the same text format as the timestamps Django stores there.
SQLITE_NOW = "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
_json_string = json.encoder.encode_basestring  # a str as a quoted JSON string (in C)


# Spellings shared by both dialects


def _postgres(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor == "postgresql"


def _seconds(postgres: bool, value: float) -> Any:
    """A number of seconds as each dialect adds it to now (``make_interval`` / a modifier)."""
    return float(value) if postgres else f"{float(value):+.3f} seconds"


@functools.lru_cache(maxsize=256)
def _in(postgres: bool, column: str, name: str, count: int) -> str:
    """SQL for ``column`` being one of ``count`` values, bound by ``_in_params``.

    PostgreSQL takes the list as one array parameter, ``%(name)s``; SQLite
    has no arrays, so there each value is a parameter: ``%(name_0)s, ...``.
    """
    if postgres:
        return f"{column} = ANY(%({name})s)"
    return f"{column} IN ({', '.join(f'%({name}_{i})s' for i in range(count))})"


def _in_params(postgres: bool, name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of ``_in(postgres, column, name, len(values))``."""
    if postgres:
        return {name: list(values)}
    return {f"{name}_{i}": value for i, value in enumerate(values)}


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


DATABASE_NOW_POSTGRES = "SELECT clock_timestamp()"
DATABASE_NOW_SQLITE = f"SELECT {SQLITE_NOW}"


def database_now(connection: BaseDatabaseWrapper) -> datetime:
    """The database's clock, for code that must compare times the way SQL does.

    ``clock_timestamp()`` rather than ``now()``: the time of this call, even
    inside a transaction that began earlier.
    """
    sql = DATABASE_NOW_POSTGRES if _postgres(connection) else DATABASE_NOW_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {})
        value = _when(cursor.fetchone()[0])
    assert value is not None
    return value


# Reading claimed rows


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
        trace_context=_trace_context(row[12]),
        unrunnable=unrunnable,
        waited=None if row[13] is None else float(row[13]),
    )


#: Most characters a trace context may hold (W3C's ``traceparent`` is 55, its
#: ``tracestate`` at most about 600): a row that holds more was not written by enqueue().
MAX_TRACE_CONTEXT_CHARS = 4096


def _trace_context(value: Any) -> dict[str, str] | None:
    """A row's trace context as a propagator reads it, or None.

    None too for a value that is not a small JSON object of strings (a row written
    some other way): the job then runs in a trace of its own, and its claim, and
    the jobs claimed beside it, are not disturbed.
    """
    if value is None or (isinstance(value, str) and len(value) > MAX_TRACE_CONTEXT_CHARS):
        return None
    try:
        carrier = _json(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(carrier, dict):
        return None
    size = 0
    for key, text in carrier.items():
        if not isinstance(text, str):
            return None
        size += len(key) + len(text)
    return carrier if size <= MAX_TRACE_CONTEXT_CHARS else None


# Claims and fencing


#: What a claim does to each row it takes (both PostgreSQL claims).
_CLAIM_UPDATE_POSTGRES = f"""UPDATE {JOB} AS job SET
        status = 'RUNNING',
        attempts = attempts + 1,
        started_at = COALESCE(started_at, now()),
        last_attempted_at = now(),
        claimed_by = %(worker)s,
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        worker_ids = (CASE WHEN jsonb_typeof(worker_ids) = 'array' THEN worker_ids ELSE '[]' END)
            || jsonb_build_array(%(worker_json)s::jsonb),
        progress = NULL,
        progress_message = ''
    FROM candidates
    WHERE job.id = candidates.id
    RETURNING job.id, job.task_path, job.queue_name, job.priority, job.args, job.kwargs,
        job.attempts, job.max_attempts, job.lease_token, job.enqueued_at, job.started_at,
        job.worker_ids, job.trace_context,
        EXTRACT(EPOCH FROM (now() - job.run_after))::float8 AS waited"""

#: The claimed rows as one JSON document (both PostgreSQL claims). The JSON columns a
#: row's writer chose (arguments, trace context) stay text inside it, so that however
#: deep one of them nests, the document itself decodes, and only that job fails.
_CLAIMED_DOCUMENT_POSTGRES = """SELECT json_agg(json_build_array(
    id, task_path, queue_name, priority, args::text, kwargs::text, attempts, max_attempts,
    lease_token, enqueued_at, started_at, worker_ids, trace_context::text, waited
))::text FROM claimed"""

#: The queues a claim serves, as rows of ``queues(name)``: the worker's list...
QUEUES_LISTED_POSTGRES = "SELECT unnest(%(queue)s::text[])"

#: ...or (``QUEUES: []``) every queue that has a READY job, found by a loose
#: index scan: one index probe per queue name, however many jobs each holds.
QUEUES_ANY_POSTGRES = f"""(SELECT queue_name FROM {JOB}
        WHERE backend = %(backend)s AND status = 'READY' ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT queue_name FROM {JOB}
            WHERE backend = %(backend)s AND status = 'READY' AND queue_name > walk.name
            ORDER BY queue_name LIMIT 1)
    FROM queues_walk AS walk WHERE walk.name IS NOT NULL"""

#: Claim up to ``%(limit)s`` ready jobs: see ``claim``. ``{queues}`` is one of
#: the two statements above, filled in by ``_claim_sql``.
#:
#: ``lanes`` walks ``dbtasks_job_ready`` (``backend, queue_name, priority DESC,
#: run_after, id``) loosely: one probe per (queue, priority) that holds a READY
#: job. ``candidates`` then takes the priorities from the highest down; at each,
#: it reads every queue's due rows in order, ``run_after <= now()`` being a
#: range of the index there, so a scan ends at the first job not due yet. Rows
#: are locked as they are read (``SKIP LOCKED`` passes other workers' rows and
#: reads on), and the outer LIMIT stops at the priority that fills the batch.
CLAIM_POSTGRES = f"""WITH RECURSIVE queues_walk(name) AS (
    {{queues}}
), queues AS (
    SELECT name FROM queues_walk WHERE name IS NOT NULL
), lanes(queue_name, priority) AS (
    SELECT queues.name, (SELECT priority FROM {JOB}
            WHERE backend = %(backend)s AND status = 'READY' AND queue_name = queues.name
            ORDER BY priority DESC LIMIT 1)
    FROM queues
    UNION ALL
    SELECT lane.queue_name, (SELECT priority FROM {JOB}
            WHERE backend = %(backend)s AND status = 'READY' AND queue_name = lane.queue_name
                AND priority < lane.priority
            ORDER BY priority DESC LIMIT 1)
    FROM lanes AS lane WHERE lane.priority IS NOT NULL
), levels AS (
    SELECT DISTINCT priority FROM lanes WHERE priority IS NOT NULL ORDER BY priority DESC
), candidates AS MATERIALIZED (
    SELECT picked.id FROM levels CROSS JOIN LATERAL (
        SELECT due.id FROM queues CROSS JOIN LATERAL (
            SELECT id, run_after FROM {JOB}
            WHERE backend = %(backend)s AND status = 'READY' AND queue_name = queues.name
                AND priority = levels.priority AND run_after <= now() AND crashes = 0
            ORDER BY run_after, id
            LIMIT %(limit)s
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS due
        ORDER BY due.run_after, due.id
        LIMIT %(limit)s
    ) AS picked
    LIMIT %(limit)s
), claimed AS (
    {_CLAIM_UPDATE_POSTGRES}
)
{_CLAIMED_DOCUMENT_POSTGRES}"""

#: The claim of a worker serving one queue, first: the due jobs of the queue's
#: highest priority, with no loose scan to plan (see ``claim``). The second
#: column says whether lower priorities hold READY jobs: only then, and only if
#: the top one did not fill the batch, is ``CLAIM_POSTGRES`` run for the rest.
CLAIM_TOP_PRIORITY_POSTGRES = f"""WITH top AS MATERIALIZED (
    SELECT priority FROM {JOB}
    WHERE backend = %(backend)s AND status = 'READY' AND queue_name = %(queue_name)s
    ORDER BY priority DESC LIMIT 1
), candidates AS MATERIALIZED (
    SELECT id FROM {JOB}
    WHERE backend = %(backend)s AND status = 'READY' AND queue_name = %(queue_name)s
        AND priority = (SELECT priority FROM top) AND run_after <= now() AND crashes = 0
    ORDER BY run_after, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    {_CLAIM_UPDATE_POSTGRES}
)
SELECT ({_CLAIMED_DOCUMENT_POSTGRES}), (
    -- ordered, so that it is one probe of the ready index (an EXISTS may be planned
    -- as a sequential scan that expects to find a row at once)
    SELECT priority FROM {JOB}
    WHERE backend = %(backend)s AND status = 'READY' AND queue_name = %(queue_name)s
        AND priority < (SELECT priority FROM top)
    ORDER BY priority DESC LIMIT 1
) IS NOT NULL"""

#: Claim one suspect (``crashes > 0``): the small index ``dbtasks_job_suspect``
#: holds only them, in claim order, so a plain ordered scan is exact and cheap.
CLAIM_SUSPECT_POSTGRES = f"""WITH candidates AS MATERIALIZED (
    SELECT id FROM {JOB}
    WHERE status = 'READY' AND crashes > 0 AND run_after <= now() AND backend = %(backend)s
        AND {{queues}}
    ORDER BY priority DESC, run_after, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    {_CLAIM_UPDATE_POSTGRES}
)
{_CLAIMED_DOCUMENT_POSTGRES}"""

CLAIM_SQLITE = f"""UPDATE {JOB} SET
    status = 'RUNNING',
    attempts = attempts + 1,
    started_at = COALESCE(started_at, {SQLITE_NOW}),
    last_attempted_at = {SQLITE_NOW},
    claimed_by = %(worker)s,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(lease)s),
    worker_ids = json_insert(
        CASE WHEN json_type(worker_ids) = 'array' THEN worker_ids ELSE '[]' END,
        '$[#]',
        json(%(worker_json)s)
    ),
    progress = NULL,
    progress_message = ''
WHERE id IN (
    SELECT id FROM ({{lanes}}) ORDER BY priority DESC, run_after, id LIMIT %(limit)s
)
RETURNING id, task_path, queue_name, priority, args, kwargs, attempts, max_attempts,
    lease_token, enqueued_at, started_at, worker_ids, trace_context,
    (julianday('now') - julianday(run_after)) * 86400.0"""

#: One queue's part of the SQLite claim (``{{queue}}``: its name's condition).
#: Each queue is read on its own, in the ready index's order, so no queue's
#: backlog is read for another; the lanes are merged by ``CLAIM_SQLITE``.
CLAIM_LANE_SQLITE = f"""SELECT * FROM (SELECT id, priority, run_after FROM {JOB}
        WHERE backend = %(backend)s AND status = 'READY' AND {{queue}}
            AND run_after <= {SQLITE_NOW} AND {{crashes}}
        ORDER BY priority DESC, run_after, id LIMIT %(limit)s)"""


@functools.lru_cache(maxsize=64)
def _claim_sql(postgres: bool, queues: int, suspects: bool) -> str:
    """The claim of ``queues`` queues (0: every queue, ``QUEUES: []``), of suspects or not."""
    if postgres and suspects:
        listed = _in(postgres, "queue_name", "queue", queues) if queues else "1 = 1"
        return CLAIM_SUSPECT_POSTGRES.format(queues=listed)
    if postgres:
        return CLAIM_POSTGRES.format(
            queues=QUEUES_LISTED_POSTGRES if queues else QUEUES_ANY_POSTGRES
        )
    crashes = "crashes > 0" if suspects else "crashes = 0"
    names = [f"queue_name = %(queue_{i})s" for i in range(queues)] or ["1 = 1"]
    lanes = (CLAIM_LANE_SQLITE.format(queue=name, crashes=crashes) for name in names)
    return CLAIM_SQLITE.format(lanes=" UNION ALL ".join(lanes))


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
    other. The CTE reads the partial index ``dbtasks_job_ready`` per queue
    and per priority (see ``CLAIM_POSTGRES``): only rows it may return.
    SQLite: one ``UPDATE ... RETURNING`` statement takes the database's write
    lock before it reads, so concurrent worker processes on one file are
    serialised by SQLite itself.
    """
    postgres = _postgres(connection)
    params = {
        "backend": backend,
        "limit": limit,
        "worker": worker_id,
        "lease": _seconds(postgres, lease_seconds),
        "worker_json": json.dumps(worker_id),
        **_in_params(postgres, "queue", queues),
    }
    if postgres and len(queues) == 1 and not suspects:
        rows = _claim_top_priority_first(connection, {**params, "queue_name": queues[0]})
    else:
        rows = _claim_rows(connection, _claim_sql(postgres, len(queues), suspects), params)
    jobs = [_claimed(row) for row in rows]
    jobs.sort(key=lambda job: (-job.priority, job.id))
    return jobs


def _claim_rows(connection: BaseDatabaseWrapper, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run one claim statement; return its rows (and, for PostgreSQL, nothing else)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not _postgres(connection):
            return cursor.fetchall()
        # The claimed rows come back as one JSON document: one json.loads in C
        # instead of Python loaders for the timestamps, which were a quarter of the
        # claim's time in the worker. Arguments come inside it as text, decoded job
        # by job: one job's deep nesting cannot break the decoding of the others.
        document = cursor.fetchone()[0]
        return json.loads(document) if document else []


def _claim_top_priority_first(connection: BaseDatabaseWrapper, params: dict[str, Any]) -> list[Any]:
    """One queue's claim: its top priority first, the loose scan only if that falls short.

    Most queues hold one priority, and an idle worker's claim is on the pickup
    path, where planning ``CLAIM_POSTGRES`` (recursive, with laterals) costs
    about as much as running the claim: ``CLAIM_TOP_PRIORITY_POSTGRES`` is
    planned in half the time. When it fills the batch, or no lower priority
    holds a READY job, it is the whole claim. Otherwise ``CLAIM_POSTGRES``
    claims the rest. In autocommit the first statement's jobs are committed
    by then: if the second fails, they are returned all the same (they are
    this worker's to run, and the next turn meets the failure again), so no
    claimed job is left behind by a worker that does not know it holds it.
    """
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_TOP_PRIORITY_POSTGRES, params)
        document, lower = cursor.fetchone()
    rows = json.loads(document) if document else []
    if len(rows) >= params["limit"] or not lower:
        return rows
    rest = {**params, "limit": params["limit"] - len(rows)}
    try:
        return rows + _claim_rows(connection, _claim_sql(True, 1, False), rest)
    except DatabaseError:
        if connection.in_atomic_block or not rows:
            raise  # rolled back with the rest of the turn, or nothing was claimed
        return rows  # the outage guard hears of the failure at the next statement


#: Mark jobs SUCCESSFUL: see ``complete_many``. One JSON document of
#: ``{"id", "token", "value"}`` objects.
COMPLETE_POSTGRES = f"""UPDATE {JOB} AS job SET
    status = 'SUCCESSFUL',
    finished_at = now(),
    return_value = done.value,
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    crashes = 0
FROM jsonb_to_recordset(%(done)s::jsonb) AS done(id bigint, token uuid, value jsonb)
WHERE job.id = done.id AND job.lease_token = done.token AND job.status = 'RUNNING'
RETURNING job.id"""

#: ``{rows}``: one ``(%s, %s, %s)`` per completion: id, token, return value.
COMPLETE_SQLITE = f"""UPDATE {JOB} SET
    status = 'SUCCESSFUL',
    finished_at = {SQLITE_NOW},
    return_value = done.value,
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    crashes = 0
FROM (
    SELECT column1 AS id, column2 AS token, column3 AS value FROM (VALUES {{rows}})
) AS done
WHERE {JOB}.id = done.id AND {JOB}.lease_token = done.token AND {JOB}.status = 'RUNNING'
RETURNING {JOB}.id"""


@functools.lru_cache(maxsize=256)
def _values_sql(template: str, width: int, rows: int) -> str:
    """``template`` with its ``{rows}`` hole filled by ``rows`` VALUES rows of ``width``."""
    row = f"({', '.join(['%s'] * width)})"
    return template.format(rows=", ".join([row] * rows))


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
    sql: str
    params: Any
    if _postgres(connection):
        # One JSON document rather than three arrays: the return values are JSON
        # already, so it is joined as text, and PostgreSQL parses it in C instead
        # of psycopg quoting each array element in Python.
        sql = COMPLETE_POSTGRES
        params = {
            "done": "["
            + ",".join(
                f'{{"id":{int(job_id)},"token":{_json_string(token)},"value":{value}}}'
                for job_id, token, value in completions
            )
            + "]"
        }
    else:
        sql = _values_sql(COMPLETE_SQLITE, 3, len(completions))
        params = [item for completion in completions for item in completion]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


#: Record failed attempts: see ``fail_many``. One JSON document of ``{"id", "token",
#: "error", "retry_in"}`` objects; ``retry_in`` null fails the job for good.
FAIL_POSTGRES = f"""UPDATE {JOB} AS job SET
    status = CASE
        WHEN failed.retry_in IS NOT NULL AND job.attempts < job.max_attempts THEN 'READY'
        ELSE 'FAILED'
    END,
    run_after = CASE
        WHEN failed.retry_in IS NOT NULL AND job.attempts < job.max_attempts
        THEN now() + make_interval(secs => failed.retry_in)
        ELSE job.run_after
    END,
    finished_at = CASE
        WHEN failed.retry_in IS NOT NULL AND job.attempts < job.max_attempts THEN NULL
        ELSE now()
    END,
    errors = (CASE WHEN jsonb_typeof(job.errors) = 'array' THEN job.errors ELSE '[]' END)
        || jsonb_build_array(failed.error || jsonb_build_object(
            'started_at', job.last_attempted_at, 'finished_at', now(), 'worker_id', job.claimed_by
        )),
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    crashes = 0
FROM jsonb_to_recordset(%(failed)s::jsonb)
    AS failed(id bigint, token uuid, error jsonb, retry_in float8)
WHERE job.id = failed.id AND job.lease_token = failed.token AND job.status = 'RUNNING'
RETURNING job.id, job.status"""

#: ``{rows}``: one ``(%s, %s, %s, %s)`` per failure: id, token, error entry (JSON
#: text), and the retry delay as a time modifier (``'+2.000 seconds'``) or NULL.
FAIL_SQLITE = f"""UPDATE {JOB} SET
    status = CASE
        WHEN failed.retry_in IS NOT NULL AND {JOB}.attempts < {JOB}.max_attempts
        THEN 'READY'
        ELSE 'FAILED'
    END,
    run_after = CASE
        WHEN failed.retry_in IS NOT NULL AND {JOB}.attempts < {JOB}.max_attempts
        THEN STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', failed.retry_in)
        ELSE {JOB}.run_after
    END,
    finished_at = CASE
        WHEN failed.retry_in IS NOT NULL AND {JOB}.attempts < {JOB}.max_attempts THEN NULL
        ELSE {SQLITE_NOW}
    END,
    errors = json_insert(
        CASE WHEN json_type({JOB}.errors) = 'array' THEN {JOB}.errors ELSE '[]' END,
        '$[#]',
        json_set(
            json(failed.error), '$.started_at', {JOB}.last_attempted_at,
            '$.finished_at', {SQLITE_NOW}, '$.worker_id', {JOB}.claimed_by
        )
    ),
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    crashes = 0
FROM (
    SELECT column1 AS id, column2 AS token, column3 AS error, column4 AS retry_in
    FROM (VALUES {{rows}})
) AS failed
WHERE {JOB}.id = failed.id AND {JOB}.lease_token = failed.token
    AND {JOB}.status = 'RUNNING'
RETURNING {JOB}.id, {JOB}.status"""


def fail_many(
    connection: BaseDatabaseWrapper,
    failures: list[tuple[int, str, dict[str, Any], float | None]],
) -> dict[int, str]:
    """Record failed attempts in one statement; return ``{job_id: new_status}`` of those applied.

    ``failures`` holds ``(job_id, lease_token, error_entry, retry_in)``. A job
    goes back to READY after ``retry_in`` seconds while it has attempts left
    (the row's own ``attempts < max_attempts`` decides), else it is FAILED;
    ``retry_in=None`` fails it for good. Either way the entry is appended to
    its errors, with what the row knows of the attempt added: ``started_at``
    (its ``last_attempted_at``), ``finished_at`` (now) and ``worker_id`` (the
    claim's holder), so the job's page can show each attempt's times and
    worker after later attempts (or a retry from the admin) changed the row.
    Each row is only updated while its token still matches (this worker
    still holds the lease), like ``complete_many``.
    """
    if not failures:
        return {}
    sql: str
    params: Any
    if _postgres(connection):
        sql = FAIL_POSTGRES
        document = [
            {"id": int(job_id), "token": token, "error": error, "retry_in": retry_in}
            for job_id, token, error, retry_in in failures
        ]
        params = {"failed": json.dumps(document)}
    else:
        sql = _values_sql(FAIL_SQLITE, 4, len(failures))
        params = [
            item
            for job_id, token, error, retry_in in failures
            for item in (
                job_id,
                token,
                json.dumps(error),
                None if retry_in is None else _seconds(False, retry_in),
            )
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: str(row[1]) for row in cursor.fetchall()}


#: ``{keep}``: nothing, or the tokens not to release (see ``release``).
RELEASE_POSTGRES = f"""UPDATE {JOB} SET
    status = 'READY',
    attempts = attempts - 1,
    run_after = now(),
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL
WHERE claimed_by = %(worker)s AND status = 'RUNNING'{{keep}}"""

RELEASE_SQLITE = f"""UPDATE {JOB} SET
    status = 'READY',
    attempts = attempts - 1,
    run_after = {SQLITE_NOW},
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL
WHERE claimed_by = %(worker)s AND status = 'RUNNING'{{keep}}"""


@functools.lru_cache(maxsize=64)
def _release_sql(postgres: bool, keep: int) -> str:
    kept = f" AND NOT ({_in(postgres, 'lease_token', 'keep', keep)})" if keep else ""
    return (RELEASE_POSTGRES if postgres else RELEASE_SQLITE).format(keep=kept)


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
    postgres = _postgres(connection)
    params = {"worker": worker_id, **_in_params(postgres, "keep", keep_tokens)}
    with connection.cursor() as cursor:
        cursor.execute(_release_sql(postgres, len(keep_tokens)), params)
        return cursor.rowcount


#: ``{queues}``: as in the claim.
SUSPECT_WAITING_POSTGRES = f"""SELECT 1 FROM {JOB}
WHERE status = 'READY' AND crashes > 0 AND run_after <= now() AND backend = %(backend)s
    AND {{queues}}
LIMIT 1"""

SUSPECT_WAITING_SQLITE = f"""SELECT 1 FROM {JOB}
WHERE status = 'READY' AND crashes > 0 AND run_after <= {SQLITE_NOW} AND backend = %(backend)s
    AND {{queues}}
LIMIT 1"""


@functools.lru_cache(maxsize=64)
def _suspect_waiting_sql(postgres: bool, queues: int) -> str:
    return (SUSPECT_WAITING_POSTGRES if postgres else SUSPECT_WAITING_SQLITE).format(
        queues=_in(postgres, "queue_name", "queue", queues) if queues else "1 = 1"
    )


def suspect_waiting(
    connection: BaseDatabaseWrapper, queues: list[str], backend: str = "default"
) -> bool:
    """Whether a suspect (see ``claim``) is due in ``queues``: the worker then runs it alone.

    The partial index ``dbtasks_job_suspect`` holds only READY suspects, so
    this costs next to nothing however long the queue is.
    """
    postgres = _postgres(connection)
    params = {"backend": backend, **_in_params(postgres, "queue", queues)}
    with connection.cursor() as cursor:
        cursor.execute(_suspect_waiting_sql(postgres, len(queues)), params)
        return cursor.fetchone() is not None


#: Take back jobs whose lease expired: see ``rescue_expired``.
RESCUE_POSTGRES = f"""UPDATE {JOB} SET
    status = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s THEN 'FAILED' ELSE 'READY'
    END,
    finished_at = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s THEN now() ELSE NULL
    END,
    errors = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s
        THEN (CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE '[]' END)
            || jsonb_build_array(%(poison)s::jsonb || jsonb_build_object(
                'started_at', last_attempted_at, 'finished_at', now(), 'worker_id', claimed_by
            ))
        ELSE errors
    END,
    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
    crashes = crashes + 1,
    run_after = now(),
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL
WHERE status = 'RUNNING' AND lease_expires_at < now()
RETURNING id, task_path, status, backend, queue_name"""

RESCUE_SQLITE = f"""UPDATE {JOB} SET
    status = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s THEN 'FAILED' ELSE 'READY'
    END,
    finished_at = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s THEN {SQLITE_NOW} ELSE NULL
    END,
    errors = CASE
        WHEN crashes > 0 AND crashes + 1 >= %(max_crashes)s
        THEN json_insert(
            CASE WHEN json_type(errors) = 'array' THEN errors ELSE '[]' END,
            '$[#]',
            json_set(
                json(%(poison)s), '$.started_at', last_attempted_at,
                '$.finished_at', {SQLITE_NOW}, '$.worker_id', claimed_by
            )
        )
        ELSE errors
    END,
    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
    crashes = crashes + 1,
    run_after = {SQLITE_NOW},
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL
WHERE status = 'RUNNING' AND lease_expires_at < {SQLITE_NOW}
RETURNING id, task_path, status, backend, queue_name"""


def rescue_expired(
    connection: BaseDatabaseWrapper, max_crashes: int, poison_error: dict[str, Any]
) -> list[tuple[int, str, str, str, str]]:
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
    job is taken once. The poison entry gets the attempt's ``started_at``,
    the rescue as its ``finished_at`` (the death was earlier, within the
    lease) and the dead worker's ``worker_id``, as ``fail_many`` adds them.
    Returns ``(id, task_path, new_status, alias, queue)`` per rescued job.
    """
    sql = RESCUE_POSTGRES if _postgres(connection) else RESCUE_SQLITE
    params: dict[str, Any] = {"max_crashes": max_crashes, "poison": json.dumps(poison_error)}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], row[1], row[2], row[3], row[4]) for row in cursor.fetchall()]


SET_PROGRESS = f"""UPDATE {JOB} SET progress = %(percent)s, progress_message = %(message)s
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'RUNNING'"""


def set_progress(
    connection: BaseDatabaseWrapper, job_id: int, token: str, percent: int, message: str
) -> bool:
    """Record a running job's progress; applies only while ``token`` still holds the job."""
    params: dict[str, Any] = {"percent": percent, "message": message, "id": job_id, "token": token}
    with connection.cursor() as cursor:
        cursor.execute(SET_PROGRESS, params)
        return cursor.rowcount == 1


# Workers


REGISTER_WORKER_POSTGRES = f"""INSERT INTO {WORKER}
    (id, backend, hostname, pid, queues, concurrency, started_at, last_heartbeat_at)
VALUES (%(id)s, %(backend)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, now(), now())"""

REGISTER_WORKER_SQLITE = f"""INSERT INTO {WORKER}
    (id, backend, hostname, pid, queues, concurrency, started_at, last_heartbeat_at)
VALUES (
    %(id)s, %(backend)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s,
    {SQLITE_NOW}, {SQLITE_NOW}
)"""


def register_worker(
    connection: BaseDatabaseWrapper,
    worker_id: str,
    hostname: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    backend: str = "default",
) -> None:
    sql = REGISTER_WORKER_POSTGRES if _postgres(connection) else REGISTER_WORKER_SQLITE
    params: dict[str, Any] = {
        "id": worker_id,
        "backend": backend,
        "hostname": hostname,
        "pid": pid,
        "queues": json.dumps(queues),
        "concurrency": concurrency,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


HEARTBEAT_WORKER_POSTGRES = (
    f"UPDATE {WORKER} SET last_heartbeat_at = now(), stopped_at = NULL WHERE id = %(id)s"
)
HEARTBEAT_WORKER_SQLITE = (
    f"UPDATE {WORKER} SET last_heartbeat_at = {SQLITE_NOW}, stopped_at = NULL WHERE id = %(id)s"
)

#: ``{tokens}``: the leases the worker holds.
EXTEND_LEASES_POSTGRES = f"""UPDATE {JOB}
SET lease_expires_at = now() + make_interval(secs => %(lease)s)
WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND {{tokens}}"""

EXTEND_LEASES_SQLITE = f"""UPDATE {JOB}
SET lease_expires_at = STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(lease)s)
WHERE claimed_by = %(worker)s AND status = 'RUNNING' AND {{tokens}}"""


@functools.lru_cache(maxsize=256)
def _extend_leases_sql(postgres: bool, tokens: int) -> str:
    return (EXTEND_LEASES_POSTGRES if postgres else EXTEND_LEASES_SQLITE).format(
        tokens=_in(postgres, "lease_token", "token", tokens)
    )


def heartbeat(
    connection: BaseDatabaseWrapper, worker_id: str, tokens: list[str], lease_seconds: float
) -> int:
    """Prove this worker is alive and extend the leases it holds (by token)."""
    postgres = _postgres(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            HEARTBEAT_WORKER_POSTGRES if postgres else HEARTBEAT_WORKER_SQLITE, {"id": worker_id}
        )
        if not tokens:
            return 0
        params = {
            "lease": _seconds(postgres, lease_seconds),
            "worker": worker_id,
            **_in_params(postgres, "token", tokens),
        }
        cursor.execute(_extend_leases_sql(postgres, len(tokens)), params)
        return cursor.rowcount


MARK_WORKER_STOPPED_POSTGRES = f"UPDATE {WORKER} SET stopped_at = now() WHERE id = %(id)s"
MARK_WORKER_STOPPED_SQLITE = f"UPDATE {WORKER} SET stopped_at = {SQLITE_NOW} WHERE id = %(id)s"


def mark_worker_stopped(connection: BaseDatabaseWrapper, worker_id: str) -> None:
    sql = MARK_WORKER_STOPPED_POSTGRES if _postgres(connection) else MARK_WORKER_STOPPED_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"id": worker_id})


DELETE_DEAD_WORKERS_POSTGRES = (
    f"DELETE FROM {WORKER} WHERE last_heartbeat_at < now() + make_interval(secs => %(age)s)"
)
DELETE_DEAD_WORKERS_SQLITE = (
    f"DELETE FROM {WORKER} "
    f"WHERE last_heartbeat_at < STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(age)s)"
)


def delete_dead_workers(connection: BaseDatabaseWrapper, retention_seconds: float) -> int:
    """Forget workers whose last heartbeat is older than the retention period."""
    postgres = _postgres(connection)
    sql = DELETE_DEAD_WORKERS_POSTGRES if postgres else DELETE_DEAD_WORKERS_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"age": _seconds(postgres, -retention_seconds)})
        return cursor.rowcount


# Enqueue


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
        # Here, not at the top: psycopg must not be needed to import this module on
        # SQLite, where libpq may be missing (psycopg's C library).
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


#: Insert one READY job per row of ``{rows}`` (see ``_insert_sql``). ``{conflict}`` is
#: empty for a plain job (a plain job conflicts with nothing: an error stays an error),
#: or the ON CONFLICT clause of a unique job or of a schedule's fire time. The columns
#: not listed get their database default (``enqueued_at``, ``progress_message``) or
#: NULL; ``tests/test_job_insert.py`` holds what is written equal to the model's
#: defaults.
INSERT_POSTGRES = f"""INSERT INTO {JOB} (
    backend, task_path, queue_name, priority, max_attempts, run_after, args, kwargs,
    unique_key, schedule_id, scheduled_for,
    status, attempts, crashes, errors, worker_ids, claimed_by{{trace_column}}
) VALUES {{rows}}{{conflict}}
RETURNING id, enqueued_at"""

#: One row of ``INSERT_POSTGRES``; ``{i}`` numbers the call. A NULL ``run_after``
#: is the clock of ``enqueued_at``'s default (Django's ``Now()``): a job never
#: deferred has run_after == enqueued_at, which is how its result tells
#: ``run_after=None``.
INSERT_ROW_POSTGRES = """(
    %(backend)s, %(task_path)s, %(queue_name)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(run_after)s, statement_timestamp()), %(args_{i})s::jsonb, %(kwargs_{i})s::jsonb,
    %(unique_key)s, %(schedule_id)s, %(scheduled_for)s,
    'READY', 0, 0, '[]', '[]', ''{trace_value}
)"""

INSERT_SQLITE = f"""INSERT INTO {JOB} (
    backend, task_path, queue_name, priority, max_attempts, run_after, args, kwargs,
    unique_key, schedule_id, scheduled_for,
    status, attempts, crashes, errors, worker_ids, claimed_by{{trace_column}}
) VALUES {{rows}}{{conflict}}
RETURNING id, enqueued_at"""

INSERT_ROW_SQLITE = f"""(
    %(backend)s, %(task_path)s, %(queue_name)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(run_after)s, {SQLITE_NOW}), %(args_{{i}})s, %(kwargs_{{i}})s,
    %(unique_key)s, %(schedule_id)s, %(scheduled_for)s,
    'READY', 0, 0, '[]', '[]', ''{{trace_value}}
)"""

#: A unique job whose key has a READY or RUNNING job is not inserted: the partial
#: unique index ``dbtasks_job_unique_unfinished``, its condition word for word
#: (SQLite matches the index by it).
ON_CONFLICT_UNIQUE = """
ON CONFLICT (task_path, unique_key)
    WHERE status IN ('READY', 'RUNNING') AND unique_key IS NOT NULL
    DO NOTHING"""

#: A fire time that has its job already is not inserted again: the partial unique
#: index ``dbtasks_job_one_per_fire_time``. Only that conflict is skipped (SQLite's
#: ``INSERT OR IGNORE``, which ``bulk_create(ignore_conflicts=True)`` writes there,
#: would also drop a row that breaks a CHECK constraint, silently).
ON_CONFLICT_FIRE = """
ON CONFLICT (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL
    DO NOTHING"""


#: Plain jobs in bulk (``enqueue_many()``): one row per element of ``%(calls)s``, one
#: JSON document ``[[args, kwargs], ...]`` (``serialization.encode_calls``). One text
#: parameter binds far quicker than a VALUES list or two arrays of a thousand
#: elements, and Python encodes it in one call. Rows are inserted in the document's
#: order (``ORDER BY``), so their ids grow in that order; ``insert_batch`` matches
#: them to the calls by id. ``enqueued_at`` comes back as text, in UTC: Django's
#: loader of a timestamptz is Python, two microseconds a row, and the rows of one
#: statement share one time, which ``insert_batch`` parses once.
_INSERT_BATCH_POSTGRES = f"""INSERT INTO {JOB} (
    backend, task_path, queue_name, priority, max_attempts, run_after, args, kwargs,
    status, attempts, crashes, errors, worker_ids, claimed_by{{trace_column}}
)
SELECT
    %(backend)s, %(task_path)s, %(queue_name)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(run_after)s, statement_timestamp()), call.pair -> 0, call.pair -> 1,
    'READY', 0, 0, '[]', '[]', ''{{trace_value}}
FROM jsonb_array_elements(%(calls)s::jsonb) WITH ORDINALITY AS call(pair, n)
ORDER BY call.n
RETURNING id, (enqueued_at AT TIME ZONE 'UTC')::text"""

#: ``INSERT_BATCH_POSTGRES`` on SQLite. ``json_extract`` gives an array or object as
#: its JSON text, without the encoder's spaces (the values read back are the same).
_INSERT_BATCH_SQLITE = f"""INSERT INTO {JOB} (
    backend, task_path, queue_name, priority, max_attempts, run_after, args, kwargs,
    status, attempts, crashes, errors, worker_ids, claimed_by{{trace_column}}
)
SELECT
    %(backend)s, %(task_path)s, %(queue_name)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(run_after)s, {SQLITE_NOW}), call.args, call.kwargs,
    'READY', 0, 0, '[]', '[]', ''{{trace_value}}
FROM (
    SELECT json_extract(value, '$[0]') AS args, json_extract(value, '$[1]') AS kwargs, key
    FROM json_each(%(calls)s)
) AS call
ORDER BY call.key
RETURNING id, enqueued_at"""

#: The holes ``{trace_column}`` and ``{trace_value}`` of the INSERTs above. A job
#: enqueued inside a trace (see ``tracing.py``) stores its trace context, one
#: parameter that every row of the statement shares; any other job leaves the
#: holes empty, and its INSERT is the statement without them, byte for byte.
_UNTRACED = {"trace_column": "", "trace_value": ""}
_TRACED_POSTGRES = {"trace_column": ", trace_context", "trace_value": ", %(trace_context)s::jsonb"}
_TRACED_SQLITE = {"trace_column": ", trace_context", "trace_value": ", %(trace_context)s"}

INSERT_BATCH_POSTGRES = _INSERT_BATCH_POSTGRES.format(**_UNTRACED)
INSERT_BATCH_SQLITE = _INSERT_BATCH_SQLITE.format(**_UNTRACED)
INSERT_BATCH_TRACED_POSTGRES = _INSERT_BATCH_POSTGRES.format(**_TRACED_POSTGRES)
INSERT_BATCH_TRACED_SQLITE = _INSERT_BATCH_SQLITE.format(**_TRACED_SQLITE)


@functools.lru_cache(maxsize=64)
def _insert_sql(postgres: bool, rows: int, conflict: str, traced: bool = False) -> str:
    """The INSERT of ``rows`` calls, with the trace context column if ``traced``."""
    template, row = (
        (INSERT_POSTGRES, INSERT_ROW_POSTGRES) if postgres else (INSERT_SQLITE, INSERT_ROW_SQLITE)
    )
    holes = _UNTRACED if not traced else _TRACED_POSTGRES if postgres else _TRACED_SQLITE
    values = ", ".join(row.format(i=i, trace_value=holes["trace_value"]) for i in range(rows))
    return template.format(rows=values, conflict=conflict, trace_column=holes["trace_column"])


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
    unique_key: str | None = None,
    schedule_id: int | None = None,
    scheduled_for: datetime | None = None,
    trace_context: dict[str, str] | None = None,
) -> list[tuple[int, datetime | None]]:
    """Insert one READY job per ``(args_json, kwargs_json)`` in one statement.

    Every job row is inserted here: ``enqueue()`` and ``enqueue_many()``,
    unique jobs and a schedule's fires. Returns ``(id, enqueued_at)`` per row
    inserted, in order. This is ``enqueue()``'s hot path, so it is one
    precompiled statement rather than the ORM's ``save()``. ``run_after`` None
    means now, on the database's clock. Runs in the caller's transaction.

    A unique job (``unique_key``) or a fire (``schedule_id``, with
    ``scheduled_for`` None for a fire outside the schedule's times) is one
    call, and is skipped when its partial unique index already has a row:
    the list is then empty. The database decides, so racing inserts of the
    same key or fire time insert one row. ``trace_context`` (every row's) is
    stored only when given, by the statement that has its column.
    """
    if not calls:
        return []
    postgres = _postgres(connection)
    if unique_key is not None and schedule_id is not None:
        raise ValueError("A job is unique or a schedule's fire, not both.")
    conflict = ""
    if unique_key is not None or schedule_id is not None:
        if len(calls) != 1:
            raise ValueError("A unique job or a schedule's fire is inserted alone: one call.")
        conflict = ON_CONFLICT_UNIQUE if unique_key is not None else ON_CONFLICT_FIRE
    adapt = connection.ops.adapt_datetimefield_value
    params: dict[str, Any] = {
        "backend": backend,
        "task_path": task_path,
        "queue_name": queue_name,
        "priority": priority,
        "max_attempts": max_attempts,
        "run_after": None if run_after is None else adapt(run_after),
        "unique_key": unique_key,
        "schedule_id": schedule_id,
        "scheduled_for": None if scheduled_for is None else adapt(scheduled_for),
    }
    traced = trace_context is not None
    if traced:
        params["trace_context"] = json.dumps(trace_context)
    sql = _insert_sql(postgres, len(calls), conflict, traced)
    for i, (args, kwargs) in enumerate(calls):
        params[f"args_{i}"] = args
        params[f"kwargs_{i}"] = kwargs
    with insert_cursor(connection) as cursor:
        cursor.execute(sql, params)
        return [(row[0], _when(row[1])) for row in cursor.fetchall()]


def insert_batch(
    connection: BaseDatabaseWrapper,
    *,
    backend: str,
    task_path: str,
    queue_name: str,
    priority: int,
    max_attempts: int,
    run_after: datetime | None,
    calls: str,
    trace_context: dict[str, str] | None = None,
) -> list[tuple[int, datetime | None]]:
    """Insert one READY job per element of ``calls``, a JSON ``[[args, kwargs], ...]``.

    ``enqueue_many()``'s INSERT, in one statement: the jobs of ``insert_jobs``
    without a unique key or a fire (a plain job conflicts with nothing), their
    arguments in one parameter. Returns ``(id, enqueued_at)`` per call, in
    the document's order. Runs in the caller's transaction. ``trace_context``
    as in ``insert_jobs``.
    """
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "backend": backend,
        "task_path": task_path,
        "queue_name": queue_name,
        "priority": priority,
        "max_attempts": max_attempts,
        "run_after": None if run_after is None else adapt(run_after),
        "calls": calls,
    }
    postgres = _postgres(connection)
    if trace_context is None:
        sql = INSERT_BATCH_POSTGRES if postgres else INSERT_BATCH_SQLITE
    else:
        sql = INSERT_BATCH_TRACED_POSTGRES if postgres else INSERT_BATCH_TRACED_SQLITE
        params["trace_context"] = json.dumps(trace_context)
    with insert_cursor(connection) as cursor:
        cursor.execute(sql, params)
        return _inserted(cursor.fetchall())


def _inserted(rows: list[Any]) -> list[tuple[int, datetime | None]]:
    """``(id, enqueued_at)`` of the rows of a batch, in id order (the document's order,
    whatever order RETURNING gave), each distinct time (text) parsed once."""
    rows.sort()
    inserted, text, when = [], None, None
    for job_id, value in rows:
        if value != text:
            text, when = value, _when(value)
        inserted.append((job_id, when))
    return inserted


# Operators


#: ``{ids}``: the jobs to retry; ``{key}``: the rows with or without a unique key.
RETRY_POSTGRES = f"""UPDATE {JOB} SET
    status = 'READY',
    attempts = 0,
    crashes = 0,
    run_after = now(),
    started_at = NULL,
    last_attempted_at = NULL,
    finished_at = NULL,
    return_value = NULL,
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    progress = NULL,
    progress_message = ''
WHERE {{ids}} AND status IN ('FAILED', 'CANCELLED') AND {{key}}
RETURNING id"""

RETRY_SQLITE = f"""UPDATE {JOB} SET
    status = 'READY',
    attempts = 0,
    crashes = 0,
    run_after = {SQLITE_NOW},
    started_at = NULL,
    last_attempted_at = NULL,
    finished_at = NULL,
    return_value = NULL,
    claimed_by = '',
    lease_token = NULL,
    lease_expires_at = NULL,
    progress = NULL,
    progress_message = ''
WHERE {{ids}} AND status IN ('FAILED', 'CANCELLED') AND {{key}}
RETURNING id"""


@functools.lru_cache(maxsize=64)
def _retry_sql(postgres: bool, ids: int, unique: bool) -> str:
    return (RETRY_POSTGRES if postgres else RETRY_SQLITE).format(
        ids=_in(postgres, "id", "id", ids),
        key="unique_key IS NOT NULL" if unique else "unique_key IS NULL",
    )


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
    postgres = _postgres(connection)
    params = _in_params(postgres, "id", [int(i) for i in job_ids])
    with connection.cursor() as cursor:
        cursor.execute(_retry_sql(postgres, len(job_ids), unique), params)
        return [row[0] for row in cursor.fetchall()]


#: ``{ids}``: the jobs to cancel. ``%(backend)s`` NULL is any alias's jobs.
CANCEL_POSTGRES = f"""UPDATE {JOB} SET
    status = 'CANCELLED',
    finished_at = now(),
    errors = (CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE '[]' END)
        || jsonb_build_array(%(error)s::jsonb || jsonb_build_object('finished_at', now()))
WHERE {{ids}} AND status = 'READY' AND (%(backend)s::text IS NULL OR backend = %(backend)s)
RETURNING id, backend, queue_name, task_path"""

CANCEL_SQLITE = f"""UPDATE {JOB} SET
    status = 'CANCELLED',
    finished_at = {SQLITE_NOW},
    errors = json_insert(
        CASE WHEN json_type(errors) = 'array' THEN errors ELSE '[]' END,
        '$[#]',
        json_set(json(%(error)s), '$.finished_at', {SQLITE_NOW})
    )
WHERE {{ids}} AND status = 'READY' AND (%(backend)s IS NULL OR backend = %(backend)s)
RETURNING id, backend, queue_name, task_path"""


@functools.lru_cache(maxsize=64)
def _cancel_sql(postgres: bool, ids: int) -> str:
    return (CANCEL_POSTGRES if postgres else CANCEL_SQLITE).format(
        ids=_in(postgres, "id", "id", ids)
    )


def cancel_many(
    connection: BaseDatabaseWrapper,
    job_ids: list[int],
    error: dict[str, Any],
    backend: str | None = None,
) -> list[int]:
    """Cancel the READY jobs among ``job_ids`` in one statement; return the ids cancelled.

    ``backend`` limits it to that alias's jobs (``result.cancel()``: another
    alias's job is not ours, even on the same database); None is any alias
    (the admin). The status condition is checked on the row as it is
    updated: a job a worker claimed in the meantime is RUNNING by the time
    this statement sees it, and is not touched. The error entry gets the
    time of the cancellation as its ``finished_at``. The cancelled jobs are
    added to the metrics' tallies in the same transaction.
    """
    if not job_ids:
        return []
    postgres = _postgres(connection)
    params = {
        "error": json.dumps(error),
        "backend": backend,
        **_in_params(postgres, "id", [int(i) for i in job_ids]),
    }
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(_cancel_sql(postgres, len(job_ids)), params)
        rows = cursor.fetchall()
        counted = Counter((alias, queue, task) for _, alias, queue, task in rows)
        add_tallies(
            connection,
            sorted(((*key, "outcome", "cancelled"), float(n)) for key, n in counted.items()),
        )
    return [row[0] for row in rows]


#: ``{statuses}``: the finished statuses to delete.
PRUNE_POSTGRES = f"""DELETE FROM {JOB} WHERE id IN (
    SELECT id FROM {JOB}
    WHERE {{statuses}} AND finished_at < now() + make_interval(secs => %(age)s)
    LIMIT %(limit)s
)"""

PRUNE_SQLITE = f"""DELETE FROM {JOB} WHERE id IN (
    SELECT id FROM {JOB}
    WHERE {{statuses}} AND finished_at < STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(age)s)
    LIMIT %(limit)s
)"""


@functools.lru_cache(maxsize=64)
def _prune_sql(postgres: bool, statuses: int) -> str:
    return (PRUNE_POSTGRES if postgres else PRUNE_SQLITE).format(
        statuses=_in(postgres, "status", "status", statuses)
    )


def prune(
    connection: BaseDatabaseWrapper, statuses: list[str], older_than: float, batch_size: int
) -> int:
    """Delete one batch of finished jobs older than ``older_than`` seconds.

    One small DELETE per call, so each holds its row locks briefly and
    autovacuum keeps up; the caller loops until a batch comes back short.
    The subquery walks the ``(status, finished_at)`` index.
    """
    postgres = _postgres(connection)
    params = {
        "age": _seconds(postgres, -older_than),
        "limit": batch_size,
        **_in_params(postgres, "status", statuses),
    }
    with connection.cursor() as cursor:
        cursor.execute(_prune_sql(postgres, len(statuses)), params)
        return cursor.rowcount


# Statistics (``inspection``: the admin's overview, ``manage.py tasks``, the metrics)


#: Per ``(alias, queue)`` and status: how many jobs, how many are due (READY), and the
#: oldest due one's wait in seconds; see ``queue_counts``. ``%(settled)s`` false leaves
#: out the FAILED and CANCELLED rows (PostgreSQL skips that arm without reading it).
QUEUE_COUNTS_POSTGRES = f"""SELECT backend, queue_name, 'READY', COUNT(*),
    COUNT(*) FILTER (WHERE run_after <= now()),
    EXTRACT(EPOCH FROM (now() - MIN(run_after) FILTER (WHERE run_after <= now())))::float
FROM {JOB} WHERE status = 'READY' GROUP BY backend, queue_name
UNION ALL
SELECT backend, queue_name, 'RUNNING', COUNT(*), 0, NULL
FROM {JOB} WHERE status = 'RUNNING' GROUP BY backend, queue_name
UNION ALL
SELECT backend, queue_name, status, COUNT(*), 0, NULL
FROM {JOB} WHERE status IN ('FAILED', 'CANCELLED') AND %(settled)s
GROUP BY backend, queue_name, status"""

QUEUE_COUNTS_SQLITE = f"""SELECT backend, queue_name, 'READY', COUNT(*),
    SUM(CASE WHEN run_after <= {SQLITE_NOW} THEN 1 ELSE 0 END),
    (julianday('now') - julianday(MIN(CASE WHEN run_after <= {SQLITE_NOW} THEN run_after END)))
        * 86400.0
FROM {JOB} WHERE status = 'READY' GROUP BY backend, queue_name
UNION ALL
SELECT backend, queue_name, 'RUNNING', COUNT(*), 0, NULL
FROM {JOB} WHERE status = 'RUNNING' GROUP BY backend, queue_name
UNION ALL
SELECT backend, queue_name, status, COUNT(*), 0, NULL
FROM {JOB} WHERE status IN ('FAILED', 'CANCELLED') AND %(settled)s
GROUP BY backend, queue_name, status"""


def queue_counts(
    connection: BaseDatabaseWrapper, settled: bool = True
) -> list[tuple[tuple[str, str], str, int, int, float | None]]:
    """Per ``(alias, queue)`` and status: ``(key, status, jobs, due, oldest due wait)``.

    READY rows give all three numbers (``due``: ``run_after`` has passed), RUNNING,
    FAILED and CANCELLED rows their count; ``settled=False`` leaves the last two
    out (the metrics scrape: their history is the counters' business). One
    statement, each arm bounded by a partial index (``dbtasks_job_ready``,
    ``dbtasks_job_running_lease``, ``dbtasks_job_failed``): the cost follows
    what waits, runs and failed, never the finished history.
    """
    sql = QUEUE_COUNTS_POSTGRES if _postgres(connection) else QUEUE_COUNTS_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"settled": settled})
        return [
            (
                (row[0], row[1]),
                row[2],
                int(row[3]),
                int(row[4] or 0),
                None if row[5] is None else float(row[5]),
            )
            for row in cursor.fetchall()
        ]


FINISHED_PER_MINUTE_POSTGRES = f"""SELECT
    backend, queue_name, status, FLOOR(EXTRACT(EPOCH FROM (now() - finished_at)) / 60) AS ago,
    COUNT(*)
FROM {JOB}
WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
    AND finished_at >= now() + make_interval(secs => %(age)s)
GROUP BY backend, queue_name, status, ago"""

FINISHED_PER_MINUTE_SQLITE = f"""SELECT
    backend, queue_name, status,
    CAST((julianday('now') - julianday(finished_at)) * 1440 AS INTEGER) AS ago,
    COUNT(*)
FROM {JOB}
WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
    AND finished_at >= STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(age)s)
GROUP BY backend, queue_name, status, ago"""


def finished_per_minute(
    connection: BaseDatabaseWrapper, minutes: int
) -> list[tuple[tuple[str, str], str, int, int]]:
    """Jobs finished lately: ``((alias, queue), status, minutes_ago, count)`` rows.

    A range condition on ``finished_at`` with the finished statuses, so the
    partial index ``dbtasks_job_finished`` is used: the cost follows the
    jobs of the window, not the millions of older rows. ``minutes_ago`` is 0
    for the current minute.
    """
    postgres = _postgres(connection)
    sql = FINISHED_PER_MINUTE_POSTGRES if postgres else FINISHED_PER_MINUTE_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"age": _seconds(postgres, -60 * minutes)})
        return [((row[0], row[1]), row[2], int(row[3]), int(row[4])) for row in cursor.fetchall()]


#: The finished jobs of a window, newest first and at most ``%(most)s``: the range on
#: ``finished_at`` with the finished statuses, spelled as the partial index
#: ``dbtasks_job_finished`` is (SQLite uses a partial index only for its very condition),
#: reads that index backwards. A cancelled job never ran: it has no run time.
_RECENT_POSTGRES = f"""SELECT backend, task_path, status, finished_at,
        CASE WHEN status <> 'CANCELLED'
            THEN EXTRACT(EPOCH FROM (finished_at - last_attempted_at))::float8
        END AS seconds
    FROM {JOB}
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
        AND finished_at >= now() + make_interval(secs => %(age)s)
    ORDER BY finished_at DESC
    LIMIT %(most)s"""

TASK_STATS_POSTGRES = f"""WITH recent AS ({_RECENT_POSTGRES})
SELECT backend, task_path,
    COUNT(*) FILTER (WHERE status = 'SUCCESSFUL'),
    COUNT(*) FILTER (WHERE status = 'FAILED'),
    percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds),
    EXTRACT(EPOCH FROM (now() - MIN(finished_at)))
FROM recent
GROUP BY backend, task_path
HAVING COUNT(*) FILTER (WHERE status <> 'CANCELLED') > 0"""

_RECENT_SQLITE = f"""SELECT backend, task_path, status, finished_at,
        CASE WHEN status <> 'CANCELLED'
            THEN (julianday(finished_at) - julianday(last_attempted_at)) * 86400.0
        END AS seconds
    FROM {JOB}
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
        AND finished_at >= STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(age)s)
    ORDER BY finished_at DESC
    LIMIT %(most)s"""


def _percentile_cont_sqlite(fraction: str) -> str:
    """PostgreSQL's ``percentile_cont``, over ``ranked``: the value at rank ``f * (n - 1)``,
    interpolated between the two values around it (SQLite has no percentile function)."""
    rank = f"({fraction} * (timed - 1))"
    low = f"CAST({rank} AS INTEGER)"
    return (
        f"SUM(CASE WHEN below = {low} THEN seconds * (1 - ({rank} - {low}))"
        f" WHEN below = {low} + 1 THEN seconds * ({rank} - {low}) ELSE 0 END)"
    )


TASK_STATS_SQLITE = f"""WITH recent AS MATERIALIZED ({_RECENT_SQLITE}),
ranked AS (
    SELECT backend, task_path, seconds,
        ROW_NUMBER() OVER (PARTITION BY backend, task_path ORDER BY seconds) - 1 AS below,
        COUNT(*) OVER (PARTITION BY backend, task_path) AS timed
    FROM recent WHERE seconds IS NOT NULL
),
percentiles AS (
    SELECT backend, task_path,
        {_percentile_cont_sqlite("0.5")} AS p50,
        {_percentile_cont_sqlite("0.95")} AS p95
    FROM ranked GROUP BY backend, task_path
)
SELECT recent.backend, recent.task_path,
    SUM(CASE WHEN status = 'SUCCESSFUL' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END),
    MIN(percentiles.p50),
    MIN(percentiles.p95),
    (julianday('now') - julianday(MIN(finished_at))) * 86400.0
FROM recent LEFT JOIN percentiles
    ON percentiles.backend = recent.backend AND percentiles.task_path = recent.task_path
GROUP BY recent.backend, recent.task_path
HAVING SUM(CASE WHEN status <> 'CANCELLED' THEN 1 ELSE 0 END) > 0"""


def task_stats(
    connection: BaseDatabaseWrapper, minutes: int, most: int
) -> list[tuple[tuple[str, str], int, int, float | None, float | None, float]]:
    """Per ``(alias, task_path)`` over the last ``minutes``: jobs that succeeded, that failed,
    the median and 95th percentile of their run time (s), and the oldest one's age (s).

    One statement, bounded twice: by the window (a range on ``finished_at``,
    through ``dbtasks_job_finished``) and by ``most``, the newest finished
    jobs it reads at most, so a busy hour costs no more than ``most`` rows.
    When the window holds more, the figures are those of the newest ``most``
    jobs, and the ages say how far back they go. The run time is the last
    attempt's (``last_attempted_at`` to ``finished_at``): retry delays are
    not run time. Both dialects compute ``percentile_cont``, linear
    interpolation between the two nearest ranks (SQLite's by window
    functions), so they give the same figures. Cancelled jobs never ran: they
    are read (the index holds them) but counted nowhere, and a task with
    only cancelled jobs has no row.
    """
    postgres = _postgres(connection)
    sql = TASK_STATS_POSTGRES if postgres else TASK_STATS_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"age": _seconds(postgres, -60 * minutes), "most": most})
        return [
            (
                (row[0], row[1]),
                int(row[2]),
                int(row[3]),
                None if row[4] is None else float(row[4]),
                None if row[5] is None else float(row[5]),
                float(row[6] or 0),
            )
            for row in cursor.fetchall()
        ]


#: Jobs FAILED since ``%(age)s`` ago, grouped by task and the exception class of their
#: last error, largest groups first: see ``recent_failures``. ``{queues}``: all, or a list.
RECENT_FAILURES_POSTGRES = f"""WITH failed AS (
    SELECT id, task_path, finished_at,
        CASE WHEN jsonb_typeof(errors) = 'array' AND jsonb_array_length(errors) > 0
            THEN errors -> -1 ->> 'exception_class_path' END AS exception
    FROM {JOB}
    WHERE status = 'FAILED' AND finished_at >= now() + make_interval(secs => %(age)s)
        AND backend = %(backend)s AND {{queues}}
), groups AS (
    SELECT task_path, exception, COUNT(*) AS jobs, MAX(finished_at) AS latest_at,
        MAX(id) AS latest_id
    FROM failed GROUP BY task_path, exception
    ORDER BY jobs DESC, latest_id DESC LIMIT %(limit)s
)
SELECT groups.task_path, groups.exception, groups.jobs, groups.latest_at, groups.latest_id,
    CASE WHEN jsonb_typeof(job.errors) = 'array' THEN job.errors -> -1 ->> 'message' END
FROM groups JOIN {JOB} AS job ON job.id = groups.latest_id
ORDER BY groups.jobs DESC, groups.latest_id DESC"""

RECENT_FAILURES_SQLITE = f"""WITH failed AS (
    SELECT id, task_path, finished_at,
        CASE WHEN json_valid(errors) AND json_type(errors) = 'array'
            AND json_array_length(errors) > 0
            THEN json_extract(errors, '$[#-1].exception_class_path') END AS exception
    FROM {JOB}
    WHERE status = 'FAILED'
        AND finished_at >= STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %(age)s)
        AND backend = %(backend)s AND {{queues}}
), groups AS (
    SELECT task_path, exception, COUNT(*) AS jobs, MAX(finished_at) AS latest_at,
        MAX(id) AS latest_id
    FROM failed GROUP BY task_path, exception
    ORDER BY jobs DESC, latest_id DESC LIMIT %(limit)s
)
SELECT groups.task_path, groups.exception, groups.jobs, groups.latest_at, groups.latest_id,
    CASE WHEN json_valid(job.errors) AND json_type(job.errors) = 'array'
        THEN json_extract(job.errors, '$[#-1].message') END
FROM groups JOIN {JOB} AS job ON job.id = groups.latest_id
ORDER BY groups.jobs DESC, groups.latest_id DESC"""


@functools.lru_cache(maxsize=64)
def _recent_failures_sql(postgres: bool, queues: int) -> str:
    listed = _in(postgres, "queue_name", "queue", queues) if queues else "1 = 1"
    return (RECENT_FAILURES_POSTGRES if postgres else RECENT_FAILURES_SQLITE).format(queues=listed)


def recent_failures(
    connection: BaseDatabaseWrapper,
    backend: str,
    seconds: float,
    limit: int,
    queues: Sequence[str] = (),
) -> list[tuple[str, str | None, int, datetime | None, int, Any]]:
    """Jobs failed for good in the last ``seconds``, by task and exception class.

    Rows of ``(task_path, exception_class_path, jobs, latest finished_at,
    latest job id, latest message)``, the largest group first; the exception
    is that of each job's last error (None: the row holds none). Reads FAILED
    rows of the window only, through ``dbtasks_job_finished`` (or
    ``dbtasks_job_failed``), then one row per group for its latest message.
    """
    postgres = _postgres(connection)
    params = {
        "age": _seconds(postgres, -seconds),
        "backend": backend,
        "limit": limit,
        **_in_params(postgres, "queue", list(queues)),
    }
    with connection.cursor() as cursor:
        cursor.execute(_recent_failures_sql(postgres, len(queues)), params)
        return [
            (row[0], row[1], int(row[2]), _when(row[3]), int(row[4]), row[5])
            for row in cursor.fetchall()
        ]


# Tallies (``tallies``, ``metrics``): running totals that only grow


#: Add to running totals: ``{rows}`` VALUES rows of (alias, queue, task, metric, key,
#: amount). The same statement in both dialects (SQLite has had upserts since 3.24).
ADD_TALLIES = f"""INSERT INTO {TALLY} (backend, queue_name, task_path, metric, key, value)
VALUES {{rows}}
ON CONFLICT (backend, queue_name, task_path, metric, key)
DO UPDATE SET value = {TALLY}.value + excluded.value"""

#: Most rows one upsert adds: 6 values each, within SQLite's 32766 per statement.
TALLY_ROWS_PER_STATEMENT = 1000


def add_tallies(
    connection: BaseDatabaseWrapper, rows: Sequence[tuple[Sequence[str], float]]
) -> int:
    """Add each ``((alias, queue, task, metric, key), amount)`` to its total; return the rows.

    Callers sort the rows, so that two workers adding to the same totals lock
    them in the same order and never deadlock. Nothing to add sends nothing.
    """
    with connection.cursor() as cursor:
        for start in range(0, len(rows), TALLY_ROWS_PER_STATEMENT):
            chunk = rows[start : start + TALLY_ROWS_PER_STATEMENT]
            params: list[Any] = [value for key, amount in chunk for value in (*key, amount)]
            cursor.execute(_values_sql(ADD_TALLIES, 6, len(chunk)), params)
    return len(rows)


READ_TALLIES = f"""SELECT backend, queue_name, task_path, metric, key, value FROM {TALLY}"""


def read_tallies(connection: BaseDatabaseWrapper) -> list[tuple[str, str, str, str, str, float]]:
    """Every running total (one row per alias, queue, task and outcome or bucket: few)."""
    with connection.cursor() as cursor:
        cursor.execute(READ_TALLIES, {})
        return [(*row[:5], float(row[5])) for row in cursor.fetchall()]


#: The latest error's class, spelled as the index ``dbtasks_job_latest_error`` is built.
_LATEST_CLASS_POSTGRES = latest_error_sql("postgresql", "exception_class_path")
_LATEST_CLASS_SQLITE = latest_error_sql("sqlite", "exception_class_path")

#: A loose index scan: each step is one probe of the index for the next class up, so
#: the cost is one lookup per class listed, however many rows have that class.
LATEST_ERROR_CLASSES_POSTGRES = f"""WITH RECURSIVE classes(name, listed) AS (
    (SELECT {_LATEST_CLASS_POSTGRES}, 1 FROM {JOB}
     WHERE {_LATEST_CLASS_POSTGRES} IS NOT NULL
     ORDER BY 1 LIMIT 1)
    UNION ALL
    SELECT (
        SELECT {_LATEST_CLASS_POSTGRES} FROM {JOB}
        WHERE {_LATEST_CLASS_POSTGRES} > classes.name
        ORDER BY 1 LIMIT 1
    ), listed + 1
    FROM classes WHERE classes.name IS NOT NULL AND listed < %(limit)s
)
SELECT name FROM classes WHERE name IS NOT NULL"""

LATEST_ERROR_CLASSES_SQLITE = f"""WITH RECURSIVE classes(name, listed) AS (
    SELECT MIN({_LATEST_CLASS_SQLITE}), 1 FROM {JOB}
    WHERE {_LATEST_CLASS_SQLITE} IS NOT NULL
    UNION ALL
    SELECT (
        SELECT MIN({_LATEST_CLASS_SQLITE}) FROM {JOB}
        WHERE {_LATEST_CLASS_SQLITE} > classes.name
    ), listed + 1
    FROM classes WHERE classes.name IS NOT NULL AND listed < %(limit)s
)
SELECT name FROM classes WHERE name IS NOT NULL"""


def latest_error_classes(connection: BaseDatabaseWrapper, limit: int) -> list[str]:
    """The distinct exception classes of jobs' latest errors, sorted, at most ``limit``.

    The admin's error filter offers them. ``SELECT DISTINCT`` would read
    every row that has an error; this walks the index
    ``dbtasks_job_latest_error`` from one class to the next instead.
    """
    postgres = _postgres(connection)
    sql = LATEST_ERROR_CLASSES_POSTGRES if postgres else LATEST_ERROR_CLASSES_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, {"limit": limit})
        return [str(row[0]) for row in cursor.fetchall()]


# Testing (``django_dbtasks.testing``): a test's transaction stops PostgreSQL's clock
#
# Django's ``TestCase`` (and pytest-django's ``db``) runs each test inside one
# transaction, and PostgreSQL's ``now()``, which every claim compares ``run_after``
# with, is the time that transaction began. A job enqueued during the test (its
# ``run_after`` is the INSERT's ``statement_timestamp()``), or due since the test
# began, is never due by that clock. So, in a transaction only, the test helper
# moves such rows' ``run_after`` back to ``now()`` just for its claim, and puts
# each back afterwards; and a retry's delay (``now() + retry_in``, counted from the
# frozen clock) is counted from the wall clock instead. SQLite's clock never stops.

#: ``{queues}``: as in the claim. Returns each moved row's id and its own ``run_after``.
ANTEDATE_DUE_POSTGRES = f"""WITH due AS (
    SELECT id, run_after FROM {JOB}
    WHERE status = 'READY' AND backend = %(backend)s AND {{queues}}
        AND run_after > now() AND run_after <= clock_timestamp()
    FOR UPDATE
)
UPDATE {JOB} AS job SET run_after = now() FROM due WHERE job.id = due.id
RETURNING job.id, due.run_after"""

#: Only rows whose ``run_after`` is still the antedated one: a retry has its own since.
RESTORE_RUN_AFTER_POSTGRES = f"""UPDATE {JOB} AS job SET run_after = moved.run_after
FROM unnest(%(ids)s::bigint[], %(run_afters)s::timestamptz[]) AS moved(id, run_after)
WHERE job.id = moved.id AND job.run_after = now()"""

REBASE_RETRIES_POSTGRES = f"""UPDATE {JOB} SET run_after = run_after + (clock_timestamp() - now())
WHERE id = ANY(%(ids)s) AND status = 'READY'"""

RETRY_NOW_POSTGRES = f"""UPDATE {JOB} SET run_after = now()
WHERE id = ANY(%(ids)s) AND status = 'READY'"""

RETRY_NOW_SQLITE = f"""UPDATE {JOB} SET run_after = {SQLITE_NOW}
WHERE id IN ({{ids}}) AND status = 'READY'"""


def clock_stopped(connection: BaseDatabaseWrapper) -> bool:
    """Whether the claim's clock (``now()``) stands still: PostgreSQL, inside a transaction."""
    return _postgres(connection) and connection.in_atomic_block


def antedate_due(
    connection: BaseDatabaseWrapper, backend: str, queues: list[str]
) -> list[tuple[int, datetime]]:
    """Move rows due by the wall clock back to ``now()``; return ``(id, run_after)`` of each."""
    if not clock_stopped(connection):
        return []
    sql = ANTEDATE_DUE_POSTGRES.format(
        queues=_in(True, "queue_name", "queue", len(queues)) if queues else "1 = 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"backend": backend, **_in_params(True, "queue", queues)})
        return [(row[0], row[1]) for row in cursor.fetchall()]


def restore_run_after(connection: BaseDatabaseWrapper, moved: list[tuple[int, datetime]]) -> None:
    """Put back the ``run_after`` that ``antedate_due`` moved, where nothing changed it since."""
    if not moved:
        return
    params: dict[str, Any] = {
        "ids": [job_id for job_id, _ in moved],
        "run_afters": [when for _, when in moved],
    }
    with connection.cursor() as cursor:
        cursor.execute(RESTORE_RUN_AFTER_POSTGRES, params)


def rebase_retries(connection: BaseDatabaseWrapper, job_ids: list[int]) -> None:
    """Count the delay of retries just written from the wall clock, not the stopped one."""
    if not job_ids or not clock_stopped(connection):
        return
    with connection.cursor() as cursor:
        cursor.execute(REBASE_RETRIES_POSTGRES, {"ids": job_ids})


def retry_now(connection: BaseDatabaseWrapper, job_ids: list[int]) -> None:
    """Make retries due at once, whatever their delay (the claim's clock decides "now")."""
    if not job_ids:
        return
    postgres = _postgres(connection)
    if postgres:
        sql: str = RETRY_NOW_POSTGRES
    else:
        sql = RETRY_NOW_SQLITE.format(ids=", ".join(["%s"] * len(job_ids)))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"ids": job_ids} if postgres else list(job_ids))
