"""Property-based tests of the two doors a job's data passes: enqueue and the result.

Hypothesis draws JSON-like values with any text (NUL, lone surrogates, every
plane) and any nesting, and checks against the real database that each door
either stores exactly what it was given, or refuses it with our error, for
the documented reasons only, leaving the caller's transaction usable.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtasks.exceptions import ArgumentNotSerializable, ResultNotStorable
from django_dbtasks.execution import MAX_TRACEBACK_CHARS, storable_text
from django_dbtasks.models import Job
from django_dbtasks.serialization import MAX_NESTING, dumps_return_value, find_unstorable

from .conftest import IS_POSTGRES
from .testapp import tasks

#: Any code point, surrogates included (Hypothesis leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=30,
)


def deeply(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


#: Mostly ordinary values, some wrapped near and past the nesting limit.
arguments = json_values | st.builds(
    deeply, json_values, st.integers(MAX_NESTING - 3, MAX_NESTING + 3)
)

db_examples = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def database_accepts_json(text: str) -> bool:
    """Whether the job table's JSON type takes this text (jsonb, or SQLite's JSON)."""
    sql = "SELECT %s::jsonb" if IS_POSTGRES else "SELECT json(%s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [text])
    return True


@pytest.mark.django_db
@db_examples
@given(value=arguments)
@example(value="a\x00b")
@example(value="x\ud800y")
@example(value={"key \x00": 1})
@example(value="emoji \U0001f600 and a backslash-u \\u0000 are fine")
@example(value=deeply([], MAX_NESTING - 1))
@example(value=deeply([], MAX_NESTING))
def test_enqueue_stores_exactly_what_it_accepts_and_refuses_only_the_unstorable(value):
    with transaction.atomic():  # a savepoint, rolled back after each example
        try:
            check_enqueue(value)
        finally:
            transaction.set_rollback(True)


def check_enqueue(value: Any) -> None:
    try:
        result = tasks.takes_anything.enqueue(value, key=value)
    except ArgumentNotSerializable as error:
        assert find_unstorable(value) is not None, "refused a storable value"
        assert "Cannot enqueue tests.testapp.tasks.takes_anything" in str(error)
        assert not Job.objects.exists(), "a refused enqueue wrote a row"
        return
    assert find_unstorable(value) is None, "accepted what the database cannot keep"
    stored = Job.objects.get(pk=result.id)  # the caller's transaction is usable
    assert (stored.args, stored.kwargs) == ([value], {"key": value})


@pytest.mark.django_db
@db_examples
@given(value=arguments, limit=st.sampled_from([64, 1024 * 1024]))
def test_a_return_value_is_storable_or_refused_with_the_reason(value, limit):
    try:
        encoded = dumps_return_value(value, limit)
    except ResultNotStorable as error:
        found = find_unstorable(value)
        too_big = len(json.dumps(value)) > limit if found is None else False
        assert found is not None or too_big, str(error)
        return
    assert len(encoded) <= limit
    assert json.loads(encoded) == value
    assert database_accepts_json(encoded)


@pytest.mark.django_db
@db_examples
@given(text=st.text(st.characters(exclude_categories=())), limit=st.integers(40, 400))
def test_error_text_is_always_storable_and_bounded(text, limit):
    kept = storable_text(text, limit)
    kept.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in kept
    assert len(kept) <= limit + 40  # the cut's own marker
    assert database_accepts_json(json.dumps({"traceback": kept}))
    if len(text) <= limit and "\x00" not in text and find_unstorable(text) is None:
        assert kept == text, "text that needed nothing was changed"


def test_a_traceback_is_cut_in_the_middle_keeping_both_ends():
    text = "head " + "x" * (3 * MAX_TRACEBACK_CHARS) + " tail"
    kept = storable_text(text, MAX_TRACEBACK_CHARS)
    assert kept.startswith("head ") and kept.endswith(" tail")
    assert "characters cut" in kept and len(kept) < MAX_TRACEBACK_CHARS + 100
