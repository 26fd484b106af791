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


def uses_index(plan: dict, index: str) -> bool:
    """Whether any node of ``plan`` reads ``index``."""
    return any(node.get("Index Name") == index for node in nodes(plan))


def index_rows_read(plan: dict, index: str) -> float:
    """Entries of ``index`` an ``EXPLAIN ANALYZE`` plan read, over every loop.

    PostgreSQL reports a node's rows, and the rows its filter removed, per loop
    (averaged): both are multiplied back by the loops.
    """
    return sum(
        (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        for node in nodes(plan)
        if node.get("Index Name") == index
    )


def index_blocks_read(plan: dict, index: str) -> int:
    """Buffers (pages) of ``index`` and the table its scans touched, ``BUFFERS`` plans.

    This counts what ``index_rows_read`` cannot: entries an index condition
    rejected inside the scan (``run_after <= now()`` on a column after a range)
    are read but reported nowhere else. Buffer counts are totals over loops.
    """
    return sum(
        node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
        for node in nodes(plan)
        if node.get("Index Name") == index
    )
