"""The django-dbtasks benchmark: our figures beside a raw-SQL ceiling measured in the same run.

    bash bench/run.sh                 # starts its own PostgreSQL, prints the table
    DATABASE_URL=postgres://... python bench/bench.py [--json PATH] [--quick]

Every figure is the median of ``--runs`` runs (default 3) with min-max. The
ceiling is a minimal psycopg loop on a minimal table with the same claim
pattern (one job per transaction, and 100 per transaction) and raw COPY /
multi-row INSERT for bulk enqueue. Workers run as real ``runtasks``
processes; a processing rate is jobs divided by the time from the first
job's start to the last job's finish, read from the job rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
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


class Bench:
    def __init__(self, url: str, runs: int, quick: bool) -> None:
        self.url = url
        self.runs = runs
        self.scale = 0.1 if quick else 1.0
        self.results: dict[str, dict[str, float]] = {}
        self.samples: dict[str, list[float]] = {}

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

    def pickup_latency(self) -> tuple[list[float], list[float]]:
        """Return p50 and p99 (ms) per run: from enqueue()'s commit to the task body start."""
        from django.db import connection

        from bench.benchapp.tasks import started_at

        p50s, p99s = [], []
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "bench.settings"}
        for _ in range(self.runs):
            self.reset_jobs()
            worker = subprocess.Popen(
                [sys.executable, "-m", "django", "runtasks", "-v", "0", "--concurrency", "1"],
                env=env,
            )
            try:
                time.sleep(2)  # started and idle
                samples = []
                for _ in range(200):
                    result = started_at.enqueue()  # autocommit: committed on return
                    committed = time.time()
                    result.wait(timeout=10, interval=0.002)
                    samples.append((result.return_value - committed) * 1000)
                    time.sleep(0.01)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
                connection.close()
            samples.sort()
            p50s.append(samples[len(samples) // 2])
            p99s.append(samples[int(len(samples) * 0.99) - 1])
        return p50s, p99s

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
    parser.add_argument("--quick", action="store_true", help="a tenth of the job counts")
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
    bench = Bench(os.environ["DATABASE_URL"], options.runs, options.quick)
    r = bench.results
    started = time.time()

    prepared = prepared_statements(connection)
    print(
        "connection: "
        + ("prepared statements on (prepare_threshold=5)" if prepared else "Django's default")
    )
    print("enqueue (jobs/s)")
    one_by_one = {
        "raw INSERT, one per transaction": bench.raw_insert_one_by_one,
        "our INSERT replayed by psycopg, one per txn": bench.our_statement_one_by_one,
        "enqueue(), one by one": bench.enqueue_one_by_one,
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
            "raw claim+complete, 1/txn, 2 proc": lambda: bench.raw_process(2, 1),
            "raw claim+complete, 100/txn, 2 proc": lambda: bench.raw_process(2, 100),
            "runtasks --concurrency 1, 2 proc": lambda: bench.process(2, 1),
        },
    )

    print("pickup latency, idle worker (ms)")
    p50s, p99s = bench.pickup_latency()
    bench.record("p50, enqueue() commit to task start", p50s, "ms")
    bench.record("p99, enqueue() commit to task start", p99s, "ms")

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
    ratios = {
        "enqueue() / raw INSERT": (
            ratio("enqueue(), one by one", "raw INSERT, one per transaction"),
            0.80,
        ),
        **(
            {
                "enqueue(), no prepared statements / raw INSERT": (
                    ratio(
                        "enqueue(), one by one, no prepared statements",
                        "raw INSERT, one per transaction",
                    ),
                    0.80,
                )
            }
            if prepared
            else {}
        ),
        f"enqueue_many() / {bulk_ceiling.split(',')[0]}": (
            ratio("enqueue_many(), 1,000 per call", bulk_ceiling),
            0.60,
        ),
        "1 proc / raw 100/txn 1 proc": (
            ratio("runtasks --concurrency 1, 1 proc", "raw claim+complete, 100/txn, 1 proc"),
            0.25,
        ),
        "2 proc / raw 100/txn 2 proc": (
            ratio("runtasks --concurrency 1, 2 proc", "raw claim+complete, 100/txn, 2 proc"),
            0.30,
        ),
        "large table / empty table (2 proc)": (
            r[f"runtasks 2 proc, {finished:,} finished in table"]["median"]
            / r["runtasks --concurrency 1, 2 proc"]["median"],
            0.80,
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
    for name, (value, target) in ratios.items():
        verdict = "ok" if value >= target else "BELOW TARGET"
        print(f"  {name:<44} {value:>10.2f}  (>= {target:.2f}) {verdict}")
    latency_ok = r["p50, enqueue() commit to task start"]["median"] <= 3 and (
        r["p99, enqueue() commit to task start"]["median"] <= 10
    )
    print(f"  {'pickup p50 <= 3 ms, p99 <= 10 ms':<44} {'ok' if latency_ok else 'BELOW TARGET'}")
    print(f"(total {time.time() - started:.0f} s)")

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "prepared_statements": prepared,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "results": r,
        "ratios": {name: value for name, (value, _) in ratios.items()},
    }
    Path(options.json).parent.mkdir(parents=True, exist_ok=True)
    Path(options.json).write_text(json.dumps(report, indent=2, default=str))
    print(f"JSON written to {options.json}")


if __name__ == "__main__":
    main()
