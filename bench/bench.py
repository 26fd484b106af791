"""The django-dbtasks benchmark: our figures beside a raw-SQL ceiling measured in the same run.

    bash bench/run.sh                 # starts its own PostgreSQL, prints the table
    DATABASE_URL=postgres://... python bench/bench.py [--json PATH] [--quick]

Every figure is the median of ``--runs`` runs (default 3) with min-max. The
ceiling is a minimal psycopg loop on a minimal table with the same claim
pattern (one job per transaction, and 100 per transaction) and raw COPY /
multi-row INSERT for bulk enqueue. Workers run as real ``runtasks``
processes; a processing rate is jobs divided by the time from the first
job's start to the last job's finish, read from the job rows.

Pickup latency (1,000 samples per run, 200 with ``--quick``: p50, p99, p99.9,
max) is measured for an idle ``runtasks`` worker and, in the same run, for
the LISTEN/NOTIFY ceiling: a bare psycopg listener process waiting on its
socket, woken by a commit that INSERTs a raw row and NOTIFYs, which then
claims the row. pgqueuer, the fastest Python peer, is measured in the same
runs through its own API (bench/pgqueuer_peer.py, in a virtualenv of its own
that bench/run.sh makes); without it the benchmark says why and goes on.

``--scrape`` reads the Prometheus metrics (``django_dbtasks.metrics``, the
``metrics`` extra) once a second in a thread during every processing run, as
a scraper would, and reports how long each scrape took: run it with and
without to see what a scraped deployment costs the workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

RAW_SCHEMA = """
DROP TABLE IF EXISTS raw_jobs;
CREATE TABLE raw_jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL DEFAULT 'default',
    priority int NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'ready',
    run_after timestamptz NOT NULL DEFAULT now(),
    args jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX raw_jobs_ready ON raw_jobs (priority DESC, run_after, id) WHERE status = 'ready';
"""
RAW_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM raw_jobs WHERE status = 'ready' AND run_after <= now() AND queue = 'default'
    ORDER BY priority DESC, run_after, id LIMIT %s FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE raw_jobs SET status = 'running' FROM c WHERE raw_jobs.id = c.id RETURNING raw_jobs.id
"""
RAW_COMPLETE = "UPDATE raw_jobs SET status = 'done' WHERE id = ANY(%s)"
RAW_CHANNEL = "raw_jobs"


class Bench:
    def __init__(self, url: str, runs: int, quick: bool, scrape: bool = False) -> None:
        self.url = url
        self.runs = runs
        self.scale = 0.1 if quick else 1.0
        self.results: dict[str, dict[str, float]] = {}
        self.samples: dict[str, list[float]] = {}
        #: ``--scrape``: the metrics are read once a second while workers process jobs.
        self.scraper = Scraper() if scrape else None

    # Helpers

    def n(self, count: int) -> int:
        return max(100, int(count * self.scale))

    def record(self, name: str, samples: list[float], unit: str) -> dict[str, float]:
        self.samples[name] = samples
        entry = {
            "median": statistics.median(samples),
            "min": min(samples),
            "max": max(samples),
            "runs": len(samples),
        }
        self.results[name] = {**entry, "unit": unit}  # type: ignore[dict-item]
        print(f"  {name:<44} {fmt(entry)} {unit}", flush=True)
        return entry

    def repeat(self, name: str, unit: str, measure: Callable[[], float]) -> dict[str, float]:
        return self.record(name, [measure() for _ in range(self.runs)], unit)

    def interleaved(self, unit: str, measures: dict[str, Callable[[], float]]) -> None:
        """Measure each figure once per run, in turn, so that a ceiling and our
        figure share each run's conditions: on a shared machine the speed drifts
        over minutes, and a ratio of two figures measured minutes apart
        measures the drift too. Ratios are then taken run by run."""
        samples: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(self.runs):
            for name, measure in measures.items():
                samples[name].append(measure())
        for name, values in samples.items():
            self.record(name, values, unit)

    def ratio(self, ours: str, ceiling: str) -> float:
        """The median over runs of our figure divided by the ceiling of the same run."""
        pairs = zip(self.samples[ours], self.samples[ceiling], strict=True)
        return statistics.median(mine / theirs for mine, theirs in pairs)

    def sql(self, statement: str, params: object = None) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def reset_jobs(self) -> None:
        self.sql("TRUNCATE django_dbtasks_job, django_dbtasks_worker")

    # Enqueue

    def enqueue_one_by_one(self) -> float:
        from bench.benchapp.tasks import noop

        self.reset_jobs()
        count = self.n(2000)
        started = time.perf_counter()
        for _ in range(count):
            noop.enqueue()
        return count / (time.perf_counter() - started)

    def enqueue_many(self) -> float:
        from bench.benchapp.tasks import noop

        self.reset_jobs()
        count = self.n(20000)
        started = time.perf_counter()
        for _ in range(count // 1000):
            noop.enqueue_many([((), {})] * 1000)
        return count / (time.perf_counter() - started)

    def enqueue_one_by_one_unprepared(self) -> float:
        """``enqueue()`` on a connection with Django's default: no prepared statements."""
        from django.db import connection

        options = connection.settings_dict["OPTIONS"]
        saved = options.pop("prepare_threshold", None)
        connection.close()
        try:
            return self.enqueue_one_by_one()
        finally:
            connection.close()
            if saved is not None:
                options["prepare_threshold"] = saved

    def raw_insert_one_by_one(self) -> float:
        self.sql(RAW_SCHEMA)
        count = self.n(2000)
        with psycopg.connect(self.url, autocommit=True) as conn:
            started = time.perf_counter()
            for _ in range(count):
                conn.execute("INSERT INTO raw_jobs (args) VALUES ('[]')")
            return count / (time.perf_counter() - started)

    def raw_copy(self) -> float:
        self.sql(RAW_SCHEMA)
        count = self.n(20000)
        with psycopg.connect(self.url) as conn:
            started = time.perf_counter()
            for _ in range(count // 1000):
                with conn.cursor().copy("COPY raw_jobs (args) FROM STDIN") as copy:
                    for _ in range(1000):
                        copy.write_row(["[]"])
                conn.commit()
            return count / (time.perf_counter() - started)

    def raw_multirow_insert(self) -> float:
        self.sql(RAW_SCHEMA)
        count = self.n(20000)
        values = ", ".join(["('[]')"] * 1000)
        with psycopg.connect(self.url) as conn:
            started = time.perf_counter()
            for _ in range(count // 1000):
                conn.execute(f"INSERT INTO raw_jobs (args) VALUES {values}")
                conn.commit()
            return count / (time.perf_counter() - started)

    def our_statement(self, enqueue: Callable[[], object], statements: int, rows: int) -> float:
        """Replay the exact INSERT ``enqueue`` sends, through a bare psycopg connection.

        Same SQL, same parameters, same binding (prepared or not) as Django's
        connection, none of the Python around it (no TaskResult, no signal):
        what is left between this figure and ours is our Python, and between
        it and the raw INSERT is the wider job row, its indexes and trigger.
        """
        from django.db import connection

        captured: list[tuple[str, object]] = []

        def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            captured.append((sql, params))
            return execute(sql, params, many, context)

        self.reset_jobs()
        with connection.execute_wrapper(capture):
            enqueue()
        [(sql, params)] = [(q, p) for q, p in captured if q.lstrip().startswith("INSERT")]
        prepared = prepared_statements(connection)
        with psycopg.connect(
            self.url,
            autocommit=True,
            cursor_factory=psycopg.Cursor if prepared else psycopg.ClientCursor,
            prepare_threshold=5 if prepared else None,
        ) as conn:
            started = time.perf_counter()
            for _ in range(statements):
                conn.execute(sql, params)  # type: ignore[arg-type]
            return statements * rows / (time.perf_counter() - started)

    def our_statement_one_by_one(self) -> float:
        from bench.benchapp.tasks import noop

        return self.our_statement(noop.enqueue, self.n(2000), 1)

    def our_statement_bulk(self) -> float:
        from bench.benchapp.tasks import noop

        return self.our_statement(
            lambda: noop.enqueue_many([((), {})] * 1000), self.n(20000) // 1000, 1000
        )

    # Processing

    def prefill(self, count: int) -> None:
        from bench.benchapp.tasks import noop

        self.reset_jobs()
        for start in range(0, count, 5000):
            noop.enqueue_many([((), {})] * min(5000, count - start))
        self.sql("VACUUM ANALYZE django_dbtasks_job")

    def drain(self, processes: int, concurrency: int, expected: int) -> float:
        """Run worker processes in burst mode until no job is ready; return jobs/s.

        Only the jobs READY at the start count (the table may hold finished
        history): jobs divided by the time from the first one's start to the
        last one's finish.
        """
        with psycopg.connect(self.url) as conn:
            first_ready = conn.execute(
                "SELECT min(id) FROM django_dbtasks_job WHERE status = 'READY'"
            ).fetchone()[0]  # type: ignore[index]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "bench.settings"}
        command = [sys.executable, "-m", "django", "runtasks", "--burst", "-v", "0"]
        workers = [
            subprocess.Popen([*command, "--concurrency", str(concurrency)], env=env)
            for _ in range(processes)
        ]
        with self.scraper or contextlib.nullcontext():
            for worker in workers:
                if worker.wait(timeout=900) != 0:
                    raise RuntimeError("a benchmark worker failed")
        with psycopg.connect(self.url) as conn:
            done, first, last = conn.execute(
                "SELECT count(*), min(started_at), max(finished_at) FROM django_dbtasks_job "
                "WHERE status = 'SUCCESSFUL' AND id >= %s",
                [first_ready],
            ).fetchone()  # type: ignore[misc]
        if done != expected:
            raise RuntimeError(f"expected {expected} successful jobs, found {done}")
        return float(done / (last - first).total_seconds())

    def process(self, processes: int, concurrency: int) -> float:
        count = self.n(20000)
        self.prefill(count)
        return self.drain(processes, concurrency, count)

    # The raw claim ceiling

    def raw_process(self, processes: int, per_transaction: int) -> float:
        count = self.n(20000 if per_transaction > 1 else 3000)
        self.sql(RAW_SCHEMA)
        self.sql("INSERT INTO raw_jobs (args) SELECT '[]' FROM generate_series(1, %s)", [count])
        self.sql("VACUUM ANALYZE raw_jobs")
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            started = time.perf_counter()
            done = sum(pool.starmap(raw_worker, [(self.url, per_transaction)] * processes))
            elapsed = time.perf_counter() - started
        assert done == count, (done, count)
        return count / elapsed

    # Latency

    def pickup_ours(self, count: int) -> list[float]:
        """ms from enqueue()'s commit to the task body's start, idle ``runtasks`` worker.

        The task writes its start time to a FIFO the benchmark blocks on, as the
        raw listener and pgqueuer's consumer write theirs to a pipe: no query
        of ours runs while a job is picked up. Only then does the benchmark wait
        for the job to finish, so that each job finds the worker idle.
        """
        from django.db import connection

        from bench.benchapp.tasks import started_at

        self.reset_jobs()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "starts")
            os.mkfifo(path)
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            # A writer held open, so the FIFO never reads as closed between jobs.
            keeper = os.open(path, os.O_WRONLY)
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DBTASKS_BENCH_STARTS": path,
            }
            worker = subprocess.Popen(
                [sys.executable, "-m", "django", "runtasks", "-v", "0", "--concurrency", "1"],
                env=env,
            )
            try:
                time.sleep(2)  # started and idle
                samples = []
                for _ in range(count):
                    result = started_at.enqueue()  # autocommit: committed on return
                    committed = time.time()
                    if not select.select([reader], [], [], 10)[0]:
                        raise RuntimeError("the benchmark task did not start within 10 s")
                    # One short write per job: it arrives whole.
                    started = float(os.read(reader, 64))
                    samples.append((started - committed) * 1000)
                    result.wait(timeout=10, interval=0.002)
                    time.sleep(0.01)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
                connection.close()
                os.close(keeper)
                os.close(reader)
        return samples

    def pickup_raw(self, count: int) -> tuple[list[float], list[float]]:
        """The LISTEN/NOTIFY ceiling: ms from a commit that INSERTs a row and NOTIFYs
        to a bare listener's wake-up, and to that listener's claim of the row.

        The listener is a process of its own, waiting on its connection's socket;
        it claims with the raw claim (one job, its own transaction) and sends
        both times back through a pipe, so the sender reads no table.
        """
        self.sql(RAW_SCHEMA)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        listener = context.Process(target=raw_listener, args=(self.url, theirs), daemon=True)
        listener.start()
        woken, claimed = [], []
        try:
            if not ours.poll(30) or ours.recv() != "listening":
                raise RuntimeError("the raw listener did not start")
            time.sleep(2)  # idle, as the worker is given
            with psycopg.connect(self.url) as conn:
                for _ in range(count):
                    conn.execute("INSERT INTO raw_jobs (args) VALUES ('[]')")
                    conn.execute(f"NOTIFY {RAW_CHANNEL}")
                    conn.commit()
                    committed = time.time()
                    woke, got = ours.recv()
                    woken.append((woke - committed) * 1000)
                    claimed.append((got - committed) * 1000)
                    time.sleep(0.01)
        finally:
            listener.terminate()
            listener.join(timeout=30)
        return woken, claimed

    def pickup_latency(self, peer: Pgqueuer) -> dict[str, list[dict[str, float]]]:
        """Per run, each system's percentiles, measured in turn (same run, same conditions)."""
        count = 200 if self.scale < 1 else 1000
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(self.runs):
            woken, claimed = self.pickup_raw(count)
            measured = {
                "raw NOTIFY commit to wake-up": woken,
                "raw NOTIFY commit to claimed row": claimed,
                "enqueue() commit to task start": self.pickup_ours(count),
            }
            if peer.available:
                measured["pgqueuer commit to job start"] = peer.run("latency", count)["samples"]
            for name, samples in measured.items():
                runs.setdefault(name, []).append(percentiles(samples))
        return runs

    # Scale

    def fill_large_table(self, finished: int, ready: int) -> None:
        self.reset_jobs()
        common = (
            "task_path, queue_name, priority, args, kwargs, attempts, max_attempts, crashes, "
            "errors, worker_ids, claimed_by"
        )
        path = "'bench.benchapp.tasks.noop', 'default', 0, '[]', '{}'"
        self.sql(
            f"INSERT INTO django_dbtasks_job ({common}, status, enqueued_at, run_after, "
            f"started_at, finished_at, return_value) SELECT {path}, 1, 1, 0, '[]', '[]', '', "
            "'SUCCESSFUL', now(), now(), now() - interval '1 hour', now() - interval '1 hour', "
            "'null' FROM generate_series(1, %s)",
            [finished],
        )
        self.add_ready(ready)

    def add_ready(self, ready: int) -> None:
        from bench.benchapp.tasks import noop

        for start in range(0, ready, 5000):
            noop.enqueue_many([((), {})] * min(5000, ready - start))
        self.sql("VACUUM ANALYZE django_dbtasks_job")

    def claim_time_ms(self) -> float:
        """Median ms of one claim of 100 (rolled back), over 30 tries."""
        from django.db import connection, transaction

        from django_dbtasks import queries

        times = []
        for _ in range(30):
            with transaction.atomic():
                started = time.perf_counter()
                queries.claim(connection, ["default"], 100, "bench", 30.0)
                times.append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
        connection.close()
        return statistics.median(times)

    def worker_memory(self, jobs: int) -> tuple[float, float]:
        """RSS (MB) of one worker (main process + pool child) after 10% and all of ``jobs``."""
        self.prefill(jobs)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "bench.settings"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "runtasks", "--burst", "-v", "0", "-c", "1"],
            env=env,
        )
        early = late = 0.0
        with psycopg.connect(self.url, autocommit=True) as conn:
            while worker.poll() is None:
                done = conn.execute(
                    "SELECT count(*) FROM django_dbtasks_job WHERE status = 'SUCCESSFUL'"
                ).fetchone()[0]  # type: ignore[index]
                rss = process_tree_rss_mb(worker.pid)
                if not early and done >= jobs // 10:
                    early = rss
                if rss:
                    late = max(late, rss) if done >= jobs * 0.9 else late
                time.sleep(0.2)
        return early, late


class Scraper:
    """While a processing run lasts, read the Prometheus metrics once a second, as a
    scraper would: ``django_dbtasks.metrics``' collector, its SQL on this database."""

    def __init__(self) -> None:
        self.milliseconds: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._scrape, name="scraper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _scrape(self) -> None:
        from django.db import connection
        from prometheus_client import generate_latest

        from django_dbtasks import metrics

        try:
            while not self._stop.wait(1.0):
                started = time.perf_counter()
                if b"dbtasks_jobs_ready" not in generate_latest(metrics.REGISTRY):
                    raise RuntimeError("the metrics came back without the ready gauge")
                self.milliseconds.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()  # the thread's own connection


def prepared_statements(connection: Any) -> bool:
    """Whether the connection's settings turn psycopg's prepared statements on."""
    return connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None


def raw_worker(url: str, per_transaction: int) -> int:
    done = 0
    with psycopg.connect(url) as conn:
        while True:
            ids = [row[0] for row in conn.execute(RAW_CLAIM, [per_transaction]).fetchall()]
            if not ids:
                conn.commit()
                return done
            conn.execute(RAW_COMPLETE, [ids])
            conn.commit()
            done += len(ids)


def raw_listener(url: str, pipe: Connection) -> None:
    """LISTEN on a bare connection; at each wake-up claim what is ready, send the times."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {RAW_CHANNEL}")
        pipe.send("listening")
        pgconn = conn.pgconn
        while True:
            select.select([conn.fileno()], [], [])
            pgconn.consume_input()
            if pgconn.notifies() is None:
                continue
            woke = time.time()
            while pgconn.notifies() is not None:
                pass
            while conn.execute(RAW_CLAIM, [1]).fetchall():
                pipe.send((woke, time.time()))


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 and max of ``samples`` (nearest rank)."""
    ordered = sorted(samples)

    def rank(fraction: float) -> float:
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p99": rank(0.99), "p99.9": rank(0.999), "max": ordered[-1]}


class Pgqueuer:
    """pgqueuer, measured beside us through bench/pgqueuer_peer.py.

    The script runs in the virtualenv bench/run.sh makes for pgqueuer (or the
    interpreter named by DBTASKS_BENCH_PGQUEUER_PYTHON). When it cannot run,
    ``missing`` says why and the benchmark goes on without pgqueuer's rows.
    """

    def __init__(self, url: str, jobs: int) -> None:
        self.url = url
        self.jobs = jobs
        self.python = os.environ.get(
            "DBTASKS_BENCH_PGQUEUER_PYTHON", str(ROOT / ".venv" / "pgqueuer" / "bin" / "python")
        )
        self.version = ""
        self.missing = ""
        if not Path(self.python).exists():
            self.missing = f"no {self.python} (bash bench/run.sh installs pgqueuer there)"
            return
        try:
            self.version = self.run("version")["version"]
            self.run("install")
        except RuntimeError as error:
            self.missing = str(error)

    @property
    def available(self) -> bool:
        return not self.missing

    def rate(self, command: str, *numbers: int) -> float:
        return float(self.run(command, *numbers)["rate"])

    def drain(self, processes: int, batch: int) -> float:
        """jobs/s of ``processes`` consumers, each dequeuing ``batch`` jobs at a time."""
        return self.rate("drain", self.jobs, processes, batch)

    def run(self, command: str, *numbers: int) -> dict[str, Any]:
        done = subprocess.run(
            [self.python, str(ROOT / "bench" / "pgqueuer_peer.py"), self.url, command]
            + [str(number) for number in numbers],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise RuntimeError(f"pgqueuer_peer.py {command}: {lines[-1]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (0 if it is gone)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
        for each in pids:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return total / 1024


def fmt(entry: dict[str, float]) -> str:
    def num(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"

    return f"{num(entry['median']):>10} ({num(entry['min'])}-{num(entry['max'])})"


def prepare_database(url: str) -> str:
    """Create a fresh ``dbtasks_bench`` database next to the one in ``url``; return its URL."""
    base = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS dbtasks_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE dbtasks_bench")
    return f"{base}/dbtasks_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description="django-dbtasks benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / ".artifacts" / "bench.json"))
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the job counts, 200 latency samples"
    )
    parser.add_argument(
        "--scrape",
        action="store_true",
        help="read the Prometheus metrics (django_dbtasks.metrics) once a second during "
        "every processing run, as a scraper would; needs the metrics extra",
    )
    parser.add_argument(
        "--no-prepare",
        action="store_true",
        help="Django's default connection settings: no prepared statements",
    )
    options = parser.parse_args()
    # Read by bench/settings.py, here and in every worker process started below.
    os.environ["DBTASKS_BENCH_PREPARE"] = "0" if options.no_prepare else "1"
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL server (bench/run.sh starts one)")
    os.environ["DATABASE_URL"] = prepare_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    bench = Bench(os.environ["DATABASE_URL"], options.runs, options.quick, options.scrape)
    r = bench.results
    started = time.time()

    prepared = prepared_statements(connection)
    print(
        "connection: "
        + ("prepared statements on (prepare_threshold=5)" if prepared else "Django's default")
    )
    peer = Pgqueuer(bench.url, bench.n(20000))
    if peer.available:
        print(f"pgqueuer {peer.version}: its own API, schema installed by its pgq command")
    else:
        print(f"pgqueuer: not installed ({peer.missing})")

    def beside(measures: dict[str, Callable[[], float]]) -> dict[str, Callable[[], float]]:
        return measures if peer.available else {}

    print("enqueue (jobs/s)")
    one_by_one = {
        "raw INSERT, one per transaction": bench.raw_insert_one_by_one,
        "our INSERT replayed by psycopg, one per txn": bench.our_statement_one_by_one,
        "enqueue(), one by one": bench.enqueue_one_by_one,
        **beside(
            {"pgqueuer enqueue(), one by one": lambda: peer.rate("enqueue-one", bench.n(2000))}
        ),
    }
    if prepared:
        one_by_one["enqueue(), one by one, no prepared statements"] = (
            bench.enqueue_one_by_one_unprepared
        )
    bench.interleaved("jobs/s", one_by_one)
    bench.interleaved(
        "jobs/s",
        {
            "raw COPY, 1,000 per transaction": bench.raw_copy,
            "raw multi-row INSERT, 1,000 per transaction": bench.raw_multirow_insert,
            "our INSERT replayed by psycopg, 1,000/stmt": bench.our_statement_bulk,
            "enqueue_many(), 1,000 per call": bench.enqueue_many,
            **beside(
                {
                    "pgqueuer enqueue(), 1,000 per call": lambda: peer.rate(
                        "enqueue-bulk", bench.n(20000)
                    )
                }
            ),
        },
    )

    print("processing no-op jobs (jobs/s)")
    bench.interleaved(
        "jobs/s",
        {
            "raw claim+complete, 1/txn, 1 proc": lambda: bench.raw_process(1, 1),
            "raw claim+complete, 100/txn, 1 proc": lambda: bench.raw_process(1, 100),
            "runtasks --concurrency 1, 1 proc": lambda: bench.process(1, 1),
            "runtasks --concurrency 2, 1 proc": lambda: bench.process(1, 2),
            "runtasks --concurrency 4, 1 proc": lambda: bench.process(1, 4),
            **beside(
                {
                    "pgqueuer --batch-size 10 (default), 1 proc": lambda: peer.drain(1, 10),
                    "pgqueuer --batch-size 100, 1 proc": lambda: peer.drain(1, 100),
                }
            ),
            "raw claim+complete, 1/txn, 2 proc": lambda: bench.raw_process(2, 1),
            "raw claim+complete, 100/txn, 2 proc": lambda: bench.raw_process(2, 100),
            "runtasks --concurrency 1, 2 proc": lambda: bench.process(2, 1),
            **beside(
                {
                    "pgqueuer --batch-size 10 (default), 2 proc": lambda: peer.drain(2, 10),
                    "pgqueuer --batch-size 100, 2 proc": lambda: peer.drain(2, 100),
                }
            ),
        },
    )

    samples = 200 if options.quick else 1000
    print(f"pickup latency, idle worker, {samples:,} samples per run (ms)")
    latency = bench.pickup_latency(peer)
    for system, runs in latency.items():
        for stat in ("p50", "p99", "p99.9", "max"):
            bench.record(f"{stat}, {system}", [run[stat] for run in runs], "ms")

    print("scale")
    bench.prefill(100)
    bench.record("claim of 100, empty table", [bench.claim_time_ms()], "ms")
    finished, ready = bench.n(1_000_000), bench.n(100_000)
    bench.fill_large_table(finished, ready)
    large = f"claim of 100, {finished:,} finished + {ready:,} ready"
    bench.record(large, [bench.claim_time_ms()], "ms")
    rates = []
    for run in range(bench.runs):
        if run:
            bench.add_ready(ready)
        rates.append(bench.drain(2, 1, ready))
    bench.record(f"runtasks 2 proc, {finished:,} finished in table", rates, "jobs/s")
    connection.close()

    if bench.scraper is not None and bench.scraper.milliseconds:
        print("metrics scrapes during the processing runs (ms each)")
        bench.record("metrics scrape, once a second", bench.scraper.milliseconds, "ms")

    print("memory")
    memory_jobs = bench.n(100_000)
    early, late = bench.worker_memory(memory_jobs)
    bench.record(f"worker RSS after {memory_jobs // 10:,} jobs", [early], "MB")
    bench.record(f"worker RSS after {memory_jobs:,} jobs", [late], "MB")

    ratio = bench.ratio

    bulk_ceiling = max(
        ["raw COPY, 1,000 per transaction", "raw multi-row INSERT, 1,000 per transaction"],
        key=lambda name: r[name]["median"],
    )
    pickup = "enqueue() commit to task start"
    raw_pickup = "raw NOTIFY commit to claimed row"
    # name: (value, target, whether the value must be at least the target (else at most)).
    ratios: dict[str, tuple[float, float, bool]] = {
        "enqueue() / raw INSERT": (
            ratio("enqueue(), one by one", "raw INSERT, one per transaction"),
            0.80,
            True,
        ),
        **(
            {
                "enqueue(), no prepared statements / raw INSERT": (
                    ratio(
                        "enqueue(), one by one, no prepared statements",
                        "raw INSERT, one per transaction",
                    ),
                    0.60,
                    True,
                )
            }
            if prepared
            else {}
        ),
        f"enqueue_many() / {bulk_ceiling.split(',')[0]}": (
            ratio("enqueue_many(), 1,000 per call", bulk_ceiling),
            0.60,
            True,
        ),
        "enqueue_many() / raw multi-row INSERT": (
            ratio("enqueue_many(), 1,000 per call", "raw multi-row INSERT, 1,000 per transaction"),
            0.40,
            True,
        ),
        "1 proc / raw 100/txn 1 proc": (
            ratio("runtasks --concurrency 1, 1 proc", "raw claim+complete, 100/txn, 1 proc"),
            0.35,
            True,
        ),
        "2 proc / raw 100/txn 2 proc": (
            ratio("runtasks --concurrency 1, 2 proc", "raw claim+complete, 100/txn, 2 proc"),
            0.40,
            True,
        ),
        "--concurrency 4 / --concurrency 1 (1 proc)": (
            ratio("runtasks --concurrency 4, 1 proc", "runtasks --concurrency 1, 1 proc"),
            1.0,
            True,
        ),
        "large table / empty table (2 proc)": (
            r[f"runtasks 2 proc, {finished:,} finished in table"]["median"]
            / r["runtasks --concurrency 1, 2 proc"]["median"],
            0.80,
            True,
        ),
        "pickup p99 / raw LISTEN/NOTIFY p99": (
            ratio(f"p99, {pickup}", f"p99, {raw_pickup}"),
            3.0,
            False,
        ),
    }
    print("where the enqueue time goes (our statement alone / raw; ours / our statement alone)")
    for label, ours, alone, raw in (
        (
            "enqueue()",
            "enqueue(), one by one",
            "our INSERT replayed by psycopg, one per txn",
            "raw INSERT, one per transaction",
        ),
        (
            "enqueue_many()",
            "enqueue_many(), 1,000 per call",
            "our INSERT replayed by psycopg, 1,000/stmt",
            bulk_ceiling,
        ),
    ):
        print(
            f"  {label:<44} {ratio(alone, raw):>10.2f}  {ratio(ours, alone):>6.2f}"
            "  (job row vs minimal row; our Python)"
        )
    print("ratios to the ceiling (target)")
    print_targets(ratios)
    latency_ok = r[f"p50, {pickup}"]["median"] <= 3 and r[f"p99, {pickup}"]["median"] <= 10
    print(f"  {'pickup p50 <= 3 ms, p99 <= 10 ms':<44} {'ok' if latency_ok else 'BELOW TARGET'}")
    worst = r[f"max, {pickup}"]["max"]
    print(
        f"  {'no pickup sample over 50 ms':<44} {worst:>10.2f}  (<= 50.00 ms)"
        f" {'ok' if worst <= 50 else 'BELOW TARGET'}"
    )
    peer_ratios: dict[str, tuple[float, float, bool]] = {}
    if peer.available:
        # Processing against pgqueuer dequeuing 100 at a time, as our worker claims
        # (MAX_BATCH): the like-for-like setting, and its faster one.
        print("beside pgqueuer (ours / pgqueuer, target)")
        peer_ratios = {
            "enqueue() / pgqueuer one by one": (
                ratio("enqueue(), one by one", "pgqueuer enqueue(), one by one"),
                1.2,
                True,
            ),
            "enqueue_many() / pgqueuer 1,000 per call": (
                ratio("enqueue_many(), 1,000 per call", "pgqueuer enqueue(), 1,000 per call"),
                1.2,
                True,
            ),
            "runtasks -c 1, 1 proc / pgqueuer batch 100": (
                ratio("runtasks --concurrency 1, 1 proc", "pgqueuer --batch-size 100, 1 proc"),
                2.5,
                True,
            ),
            "runtasks -c 1, 2 proc / pgqueuer batch 100": (
                ratio("runtasks --concurrency 1, 2 proc", "pgqueuer --batch-size 100, 2 proc"),
                2.5,
                True,
            ),
        }
        print_targets(peer_ratios)
        theirs = "pgqueuer commit to job start"
        for stat in ("p50", "p99"):
            name = f"pickup {stat}: pgqueuer / ours"
            value = ratio(f"{stat}, {theirs}", f"{stat}, {pickup}")
            peer_ratios[name] = (value, 0.0, True)
            print(f"  {name:<44} {value:>10.2f}  (above 1: ours starts the job sooner)")
    print(f"(total {time.time() - started:.0f} s)")

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "prepared_statements": prepared,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "pgqueuer": peer.version or f"not installed ({peer.missing})",
        "latency_samples_per_run": samples,
        "results": r,
        "ratios": {name: value for name, (value, _, _) in {**ratios, **peer_ratios}.items()},
    }
    Path(options.json).parent.mkdir(parents=True, exist_ok=True)
    Path(options.json).write_text(json.dumps(report, indent=2, default=str))
    print(f"JSON written to {options.json}")


def print_targets(ratios: dict[str, tuple[float, float, bool]]) -> None:
    for name, (value, target, at_least) in ratios.items():
        ok = value >= target if at_least else value <= target
        bound = f"{'>=' if at_least else '<='} {target:.2f}"
        print(f"  {name:<44} {value:>10.2f}  ({bound}) {'ok' if ok else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
