"""pgqueuer, the fastest Python peer, driven through its own API for bench/bench.py.

    python bench/pgqueuer_peer.py URL COMMAND [COUNT] [PROCESSES]

A benchmark-only tool: pgqueuer and asyncpg are installed by bench/run.sh in a
virtualenv of their own (``.venv/pgqueuer``), never as a dependency of
django-dbtasks. This script imports neither Django nor django_dbtasks, so it runs
in that virtualenv; bench.py runs it as a subprocess and reads the one JSON line
each command prints. Every figure is timed here, around pgqueuer's calls only
(no interpreter start-up):

- ``version``: the installed pgqueuer version;
- ``install``: drop pgqueuer's schema if present and install it again, with its
  own ``pgq`` command line (``uninstall``, then ``install``);
- ``enqueue-one COUNT``: ``Queries.enqueue()`` of one job per call (autocommit,
  so one job per transaction, as ``enqueue()``), jobs/s;
- ``enqueue-bulk COUNT``: ``Queries.enqueue()`` of 1,000 jobs per call, jobs/s;
- ``drain COUNT PROCESSES BATCH``: COUNT jobs enqueued in bulk, then
  PROCESSES consumer processes (``consume drain BATCH``) empty the queue;
  jobs/s from the first pick to the last success, read from pgqueuer's log
  table;
- ``latency COUNT``: one idle consumer (``consume continuous``), then COUNT
  jobs enqueued one at a time; each sample is ms from ``enqueue()``'s return
  (committed) to the entrypoint's start, as the consumer prints it;
- ``consume MODE BATCH``: one consumer process, what ``pgq run --mode MODE
  --batch-size BATCH`` starts (its supervisor and ``QueueManager.run()``, on
  uvloop as its command line picks when installed); the latency consumer
  has pgqueuer's default batch of 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

ENTRYPOINT = "noop"
# QueueManager.run()'s dequeue batch (``pgq run --batch-size``) when none is given:
# its default, which its own benchmark uses.
DEFAULT_BATCH = 10


def run(coroutine: Any) -> Any:
    """Run on uvloop when it is installed, as pgqueuer's own command line does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


async def queries(url: str) -> Any:
    import asyncpg
    from pgqueuer import Queries

    return Queries.from_asyncpg_connection(await asyncpg.connect(url))


def pgq(url: str, *arguments: str) -> None:
    """Run pgqueuer's own command line against the database at ``url``."""
    subprocess.run(
        [sys.executable, "-m", "pgqueuer", "--pg-dsn", url, *arguments],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def install(url: str) -> None:
    try:
        pgq(url, "uninstall")
    except subprocess.CalledProcessError:
        pass  # nothing installed yet
    pgq(url, "install")


async def clear(url: str) -> Any:
    """A connection's Queries, after emptying the queue and pgqueuer's log tables."""
    q = await queries(url)
    await q.clear_queue()
    await q.clear_statistics_log()
    await q.clear_queue_log()
    return q


async def enqueue_one(url: str, count: int) -> float:
    q = await clear(url)
    started = time.perf_counter()
    for _ in range(count):
        await q.enqueue(ENTRYPOINT, None, 0)
    return count / (time.perf_counter() - started)


async def enqueue_bulk(url: str, count: int) -> float:
    q = await clear(url)
    started = time.perf_counter()
    for _ in range(count // 1000):
        await q.enqueue([ENTRYPOINT] * 1000, [None] * 1000, [0] * 1000)
    return count / (time.perf_counter() - started)


def start_consumer(url: str, mode: str, batch: int) -> subprocess.Popen[str]:
    """One consumer process: ``consume``, below."""
    return subprocess.Popen(
        [sys.executable, __file__, url, "consume", mode, str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_PGQ_URL": url, "BENCH_PGQ_MODE": mode},
    )


def consume(mode: str, batch: int) -> None:
    """Run ``factory``'s QueueManager as ``pgq run`` does, through ``pgqueuer.run()``.

    ``pgq run`` itself fails at start in pgqueuer 1.6.0 with typer 0.29 (its
    ``--log-level`` reaches the logger as a string); ``pgqueuer.run()`` is the
    documented way to run the same supervisor without the command line.
    """
    import pgqueuer
    from pgqueuer.types import QueueExecutionMode

    run(pgqueuer.run(factory, batch_size=batch, mode=QueueExecutionMode(mode)))


async def drain(url: str, count: int, processes: int, batch: int) -> float:
    q = await clear(url)
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        await q.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
    await q.driver.execute("VACUUM ANALYZE pgqueuer")
    consumers = [start_consumer(url, "drain", batch) for _ in range(processes)]
    for consumer in consumers:
        if consumer.wait(timeout=900) != 0:
            raise RuntimeError("a pgqueuer consumer failed")
    # pgqueuer logs each pick and each outcome with the time of its transaction,
    # as our job rows keep started_at and finished_at: the same clock, read alike.
    [row] = await q.driver.fetch(
        "SELECT count(*) FILTER (WHERE status = 'successful') AS done,"
        " min(created) FILTER (WHERE status = 'picked') AS first,"
        " max(created) FILTER (WHERE status = 'successful') AS last FROM pgqueuer_log"
    )
    if row["done"] != count:
        raise RuntimeError(f"expected {count} successful pgqueuer jobs, found {row['done']}")
    return count / (row["last"] - row["first"]).total_seconds()


async def latency(url: str, count: int) -> list[float]:
    q = await clear(url)
    consumer = start_consumer(url, "continuous", DEFAULT_BATCH)
    assert consumer.stdout is not None
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError("the pgqueuer consumer did not start")
        await asyncio.sleep(2)  # started and idle, as our worker is given
        samples = []
        for _ in range(count):
            await q.enqueue(ENTRYPOINT, None, 0)  # autocommit: committed on return
            committed = time.time()
            started = float(await asyncio.to_thread(consumer.stdout.readline))
            samples.append((started - committed) * 1000)
            await asyncio.sleep(0.01)
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    return samples


@contextlib.asynccontextmanager
async def factory() -> AsyncIterator[Any]:
    """A PgQueuer with one no-op entrypoint, on an asyncpg connection.

    When not draining, it prints "ready", then each job's start time (where a
    latency sample ends).
    """
    import asyncpg
    from pgqueuer import Job, PgQueuer

    timing = os.environ["BENCH_PGQ_MODE"] != "drain"
    connection = await asyncpg.connect(os.environ["BENCH_PGQ_URL"])
    manager = PgQueuer.from_asyncpg_connection(connection)

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        if timing:
            print(time.time(), flush=True)

    if timing:
        print("ready", flush=True)
    try:
        yield manager
    finally:
        await connection.close()


def main() -> None:
    url, command, *rest = sys.argv[1:]
    numbers = [int(value) for value in rest if value.isdigit()]
    if command == "version":
        emit({"version": metadata.version("pgqueuer")})
    elif command == "install":
        install(url)
        emit({"installed": True})
    elif command == "enqueue-one":
        emit({"rate": run(enqueue_one(url, *numbers))})
    elif command == "enqueue-bulk":
        emit({"rate": run(enqueue_bulk(url, *numbers))})
    elif command == "drain":
        emit({"rate": run(drain(url, *numbers))})
    elif command == "latency":
        emit({"samples": run(latency(url, *numbers))})
    elif command == "consume":
        consume(rest[0], int(rest[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
