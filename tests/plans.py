"""PostgreSQL query plans for the tests: run ``EXPLAIN``, walk its nodes, list its scans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import connection


def explain(cursor: Any, sql: str, params: Any, options: str = "FORMAT JSON") -> dict:
    """Return the top plan node of ``EXPLAIN (options) sql`` run on ``cursor``."""
    cursor.execute(f"EXPLAIN ({options}) " + sql, params)
    return cursor.fetchone()[0][0]["Plan"]


def plan_of(sql: str, params: list | tuple) -> dict:
    """Return the plan PostgreSQL would use for ``sql`` on Django's connection."""
    with connection.cursor() as cursor:
        return explain(cursor, sql, params)


def nodes(plan: dict) -> Iterator[dict]:
    """Yield every node of ``plan``, the top one first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans(plan: dict) -> list[tuple[str, str | None]]:
    """Return the (node type, index name) of every scan in ``plan``."""
    return [
        (node["Node Type"], node.get("Index Name"))
        for node in nodes(plan)
        if "Scan" in node["Node Type"]
    ]
