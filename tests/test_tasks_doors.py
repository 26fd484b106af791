"""The doors of ``manage.py tasks`` and the health rules, under any input.

Every option value either works or is refused with a usage error naming the
option and saying what it takes, never a traceback. The rules of ``alerts``
are checked against their definitions on any snapshot.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtasks import alerts
from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.inspection import QueueSnapshot, Snapshot, WorkerSnapshot

pytestmark = pytest.mark.django_db

QUEUES = ["default", "emails", "low"]
BACKEND = "django_dbtasks.backend.DatabaseBackend"
anything = st.text(max_size=12) | st.sampled_from(["0", "-1", "nan", "inf", "1e400", "3", " 7 "])
doors = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run(*args: str) -> tuple[int | None, str]:
    """Run ``tasks ARGS`` in this process: (exit code or None, output), or raise CommandError."""
    out = io.StringIO()
    try:
        call_command("tasks", *args, stdout=out)
    except SystemExit as exited:
        return int(exited.code), out.getvalue()
    return None, out.getvalue()


@pytest.mark.parametrize(
    "args, says",
    [
        (["health", "--max-wait", "0"], "must be more than 0 seconds (leave it out: no limit)"),
        (["health", "--max-wait", "-5"], "must not be negative, got -5"),
        (["health", "--max-wait", "nan"], "must be a finite number of seconds"),
        (["health", "--max-wait", "9e9"], "must be at most 2592000 seconds"),
        (["health", "--max-wait", "soon"], "'soon' is not a number of seconds"),
        (["health", "--heartbeat-within", "0"], "must be more than 0 seconds, such as 30"),
        (["health", "--pid", "0"], "must be at least 1"),
        (["health", "--pid", "99999999"], "must be at most 4194304"),
        (["health", "--hostname", " "], "needs a host name; give --hostname alone"),
        (["status", "--queue", "a,b"], "repeat --queue: --queue a --queue b"),
        (["status", "--queue", "nope"], "Unknown queue 'nope': TASKS['default']['QUEUES'] has"),
        (["failed", "--since", "0"], "must be more than 0, such as 1h or 7d"),
        (["failed", "--since", "yesterday"], "'yesterday' is not a duration"),
        (["failed", "--since", "36501d"], "the longest duration is 36500d"),
        (["failed", "--limit", "0"], "must be at least 1, got 0"),
        (["failed", "--limit", "1001"], "must be at most 1000, got 1001"),
        (["lookup"], "invalid choice: 'lookup'"),
        ([], "the following arguments are required: SUBCOMMAND"),
    ],
)
def test_bad_input_is_refused_with_what_was_wrong(args, says):
    with pytest.raises(CommandError) as error:
        run(*args)
    assert says in str(error.value)


@given(st.sampled_from(["--max-wait", "--heartbeat-within", "--pid", "--hostname"]), anything)
@example("--max-wait", "1e400")
@example("--pid", "1" * 5000)
@doors
def test_any_health_option_value_is_checked_or_refused_clearly(option, value):
    try:
        code, out = run("health", option, value)
    except CommandError as error:
        assert str(error).startswith(f"Error: argument {option}: "), str(error)
        return
    assert code in (0, 1, 2) and out.split(" ")[0] in ("OK", "WARNING", "CRITICAL"), out


@given(st.sampled_from(["--since", "--limit"]), anything | st.sampled_from(["12h", "2w", "7d"]))
@example("--since", "1" * 5000)
@doors
def test_any_failed_option_value_is_checked_or_refused_clearly(option, value):
    try:
        code, out = run("failed", option, value, "--json")
    except CommandError as error:
        assert str(error).startswith(f"Error: argument {option}: "), str(error)
        return
    assert code is None and isinstance(json.loads(out)["groups"], list)


@given(st.lists(st.sampled_from(QUEUES) | st.text(max_size=8), min_size=1, max_size=3))
@example(["default", "<b>emails</b>"])
@doors
def test_any_queue_is_served_or_refused_naming_the_real_ones(names):
    args = [part for name in names for part in ("--queue", name)]
    for command in (["status"], ["health"], ["failed"]):
        try:
            code, out = run(*command, *args)
        except CommandError as error:
            message = str(error)
            assert not set(names) <= set(QUEUES)
            if message.startswith("Error: argument --queue"):  # "-x": read as an option
                continue
            assert message.startswith("Unknown queue") and "'default', 'emails', 'low'" in message
            continue
        assert set(names) <= set(QUEUES)
        assert code in (None, 0, 1, 2)


# The rules, on any snapshot

MOMENT = datetime(2026, 1, 1, tzinfo=UTC)
ages = st.floats(min_value=0, max_value=10_000, allow_nan=False)


@st.composite
def snapshots(draw) -> Snapshot:
    workers = [
        WorkerSnapshot(
            id=f"w{i}",
            alias="default",
            hostname=draw(st.sampled_from(["web-1", "web-2"])),
            pid=draw(st.integers(1, 5)),
            queues=draw(st.lists(st.sampled_from(QUEUES), unique=True, max_size=2)),
            concurrency=1,
            state=draw(st.sampled_from(["live", "dead"])),
            started_at=MOMENT,
            last_heartbeat_at=MOMENT,
            heartbeat_age=draw(ages),
        )
        for i in range(draw(st.integers(0, 4)))
    ]
    queues = []
    for name in QUEUES:
        due = draw(st.integers(0, 3))
        wait = draw(ages) if due else None
        queue = QueueSnapshot("default", name, ready=due, due=due, oldest_due_wait=wait)
        queue.workers = [w for w in workers if w.live and w.serves("default", name)]
        queues.append(queue)
    return Snapshot(queues=queues, workers=workers, liveness=30.0)


@given(snapshots(), st.sampled_from([0.0, 60.0, 300.0]))
@settings(max_examples=200, deadline=None, database=None)
def test_the_default_rules_find_exactly_what_they_describe(snapshot, limit):
    problems = alerts.default_problems(snapshot, {"default": limit})
    unserved = {p.queue for p in problems if p.check == "unserved"}
    waiting = {p.queue for p in problems if p.check == "wait"}
    died = {p.worker for p in problems if p.check == "died"}
    assert unserved == {q.name for q in snapshot.queues if q.due and not q.workers}
    assert waiting == {
        q.name for q in snapshot.queues if limit and q.due and q.oldest_due_wait > limit
    }
    assert died == {w.id for w in snapshot.workers if not w.live and w.heartbeat_age < 3600}
    expected = 2 if unserved else (1 if waiting or died else 0)
    assert alerts.exit_code(problems) == expected


@given(snapshots(), st.sampled_from(["web-1", "web-2", "web-3"]), st.none() | st.integers(1, 5))
@settings(max_examples=200, deadline=None, database=None)
def test_a_host_is_fine_when_one_of_its_workers_heartbeated_in_time(snapshot, host, pid):
    problems = alerts.stale_workers(snapshot, host, pid, within=60.0)
    fine = any(
        w.hostname == host and (pid is None or w.pid == pid) and w.heartbeat_age <= 60
        for w in snapshot.workers
    )
    assert (problems == []) == fine
    assert all(p.severity == alerts.CRITICAL for p in problems)


@pytest.mark.parametrize(
    "value, says",
    [
        (-1, "['ALERT_WAIT_SECONDS'] must not be negative."),
        (True, "['ALERT_WAIT_SECONDS'] must be float, got True."),
        ("5m", "['ALERT_WAIT_SECONDS'] must be float, got '5m'."),
        (1e9, "['ALERT_WAIT_SECONDS'] must be at most 2592000 s (30 days), got 1000000000"),
    ],
)
def test_alert_wait_seconds_is_refused_by_the_check_when_wrong(value, says):
    backend = DatabaseBackend(
        "default", {"BACKEND": BACKEND, "OPTIONS": {"ALERT_WAIT_SECONDS": value}}
    )
    [message] = backend.check()
    assert message.id == "django_dbtasks.E001" and says in message.msg


def test_alert_wait_seconds_of_zero_turns_the_wait_rule_off():
    backend = DatabaseBackend("default", {"BACKEND": BACKEND, "OPTIONS": {"ALERT_WAIT_SECONDS": 0}})
    assert backend.check() == [] and alerts.wait_limits([backend]) == {"default": 0.0}
