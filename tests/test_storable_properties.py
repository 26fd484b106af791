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

from django_dbtasks.errors import MAX_TRACEBACK_CHARS, storable_text
from django_dbtasks.exceptions import ArgumentNotSerializable, ResultNotStorable
from django_dbtasks.models import Job
from django_dbtasks.serialization import MAX_NESTING, dumps_return_value, find_unstorable

from .conftest import IS_POSTGRES
from .testapp import tasks

#: Any code point, surrogates included (Hypothesis leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
huge_integers = st.integers(4290, 4310).map(lambda digits: 10**digits - 1)  # around the limit
#: PostgreSQL's jsonb keeps numbers as exact decimals, so a float of 1e16 or more
#: without a fraction comes back as an int of the same value: a documented limit,
#: tested apart (test_a_large_float_comes_back_as_an_equal_int_on_postgresql).
floats = st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda x: x != x or abs(x) < 1e16 or abs(x) == float("inf")
)
scalars = st.none() | st.booleans() | st.integers() | huge_integers | floats | any_text
odd_keys = st.integers() | st.none() | st.booleans() | st.tuples(st.integers())
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(any_text, inner, max_size=4)
        | st.dictionaries(any_text | odd_keys, inner, max_size=3)
    ),
    max_leaves=30,
)


def fits_json_as_sent(value: Any) -> bool:
    """The oracle, written apart from the code under test: what JSON keeps as it is.

    Text keys only, text the database can store, finite floats, integers
    Python can write as text, and at most MAX_NESTING levels of lists and dicts.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return False
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) >= 10**4300:  # Python writes at most 4,300 digits
                return False
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return False
        elif isinstance(item, dict | list):
            if depth >= MAX_NESTING:
                return False
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    return False
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            return False
    return True


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
        assert not fits_json_as_sent(value), "refused a value JSON keeps as sent"
        assert "Cannot enqueue tests.testapp.tasks.takes_anything" in str(error)
        assert not Job.objects.exists(), "a refused enqueue wrote a row"
        return
    assert fits_json_as_sent(value), "accepted what would not arrive as sent"
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
    except TypeError as error:  # as Django's backends record a non-JSON result
        assert not json_can_encode(value), str(error)
        assert "The task returned" in str(error)
        return
    assert len(encoded) <= limit
    assert json.loads(encoded) == with_text_keys(value)  # documented: keys become text
    assert database_accepts_json(encoded)


def json_can_encode(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def with_text_keys(value: Any) -> Any:
    """What JSON makes of a value: keys as text (1 -> "1", None -> "null"), tuples as lists."""
    if isinstance(value, dict):
        return {
            (key if isinstance(key, str) else json.dumps(key)): with_text_keys(child)
            for key, child in value.items()
        }
    if isinstance(value, list | tuple):
        return [with_text_keys(child) for child in value]
    return value


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


@pytest.mark.django_db
@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite keeps the text of a number as it is")
def test_a_large_float_comes_back_as_an_equal_int_on_postgresql():
    result = tasks.takes_anything.enqueue(1.5e17, 0.25)
    args = Job.objects.get(pk=result.id).args
    assert args == [150000000000000000, 0.25] and isinstance(args[0], int)


def test_a_traceback_is_cut_in_the_middle_keeping_both_ends():
    text = "head " + "x" * (3 * MAX_TRACEBACK_CHARS) + " tail"
    kept = storable_text(text, MAX_TRACEBACK_CHARS)
    assert kept.startswith("head ") and kept.endswith(" tail")
    assert "characters cut" in kept and len(kept) < MAX_TRACEBACK_CHARS + 100
