"""What a worker counts between two heartbeats, for the metrics: outcomes, run and wait times.

A worker adds here, in memory, each outcome it writes (successful, retried,
failed), each job it rescues (rescued, poison), each attempt's run time and
each claimed job's wait (from due to claimed); ``Maintenance`` writes the lot
with the heartbeat, one upsert into the ``Tally`` table (``queries.add_tallies``),
and puts them back if the database was down. So the counters hold for workers
on any number of hosts, never go down when old jobs are pruned, and cost the
hot path a few list and dict increments per job. What a SIGKILL'd worker counted since its
last heartbeat (at most ``HEARTBEAT_INTERVAL`` of work) is lost with it.
No SQL here, no Prometheus: ``metrics`` reads the table.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

#: Upper bounds of the histogram buckets, in seconds: from a no-op job to an hour's.
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    math.inf,
)
#: How a bucket's bound is stored (``Tally.key``); ``float()`` reads each back.
BUCKET_KEYS = tuple("+Inf" if bound == math.inf else repr(bound) for bound in BUCKETS)

#: The outcomes counted, as the ``outcome`` label shows them.
SUCCESSFUL, RETRIED, FAILED = "successful", "retried", "failed"
CANCELLED, RESCUED, POISON = "cancelled", "rescued", "poison"
OUTCOMES = (SUCCESSFUL, RETRIED, FAILED, CANCELLED, RESCUED, POISON)

#: The ``Tally.metric`` of each kind of row.
OUTCOME, RUN_SECONDS, WAIT_SECONDS = "outcome", "run_seconds", "wait_seconds"

#: One row of the table: (alias, queue, task, metric, key) and the amount to add.
Key = tuple[str, str, str, str, str]


def ending(succeeded: bool, status: str) -> str:
    """What a written outcome did to its job, given the status it wrote."""
    if succeeded:
        return SUCCESSFUL
    return RETRIED if status == "READY" else FAILED


def bucket_key(seconds: float) -> str:
    """The key of the smallest bucket that holds ``seconds``."""
    return BUCKET_KEYS[bisect.bisect_left(BUCKETS, max(0.0, seconds))]


class Tallies:
    """The amounts counted since the last write, by row of the ``Tally`` table.

    Outcomes go straight into ``pending``. Observations (run and wait times)
    go into one list of bucket counts per histogram, ``[count per bucket...,
    sum]``: an index and two additions per job instead of two rows' keys
    built and hashed, since the worker's main process counts every job.
    ``take()`` turns them into rows.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.pending: defaultdict[Key, float] = defaultdict(float)
        #: (metric, queue, task) -> counts per bucket of ``BUCKETS``, then the sum.
        self.histograms: dict[tuple[str, str, str], list[float]] = {}

    def outcome(self, queue: str, task: str, outcome: str, alias: str | None = None) -> None:
        self.pending[(alias or self.alias, queue, task, OUTCOME, outcome)] += 1

    def ran(self, queue: str, task: str, seconds: float) -> None:
        """One attempt's run time, into the task's histogram."""
        self._observe(RUN_SECONDS, queue, task, seconds)

    def waited(self, queue: str, seconds: float | None) -> None:
        """How long a claimed job was due before its claim, into the queue's histogram."""
        if seconds is not None and math.isfinite(seconds):
            self._observe(WAIT_SECONDS, queue, "", seconds)

    def _observe(self, metric: str, queue: str, task: str, seconds: float) -> None:
        counts = self.histograms.get((metric, queue, task))
        if counts is None:
            counts = self.histograms[(metric, queue, task)] = [0.0] * (len(BUCKETS) + 1)
        if seconds > 0.0:
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            counts[-1] += seconds
        else:
            counts[0] += 1

    def take(self) -> list[tuple[Key, float]]:
        """Everything counted, sorted (so that concurrent upserts lock rows in one order)."""
        for (metric, queue, task), counts in self.histograms.items():
            for key, count in zip(BUCKET_KEYS, counts, strict=False):
                if count:
                    self.pending[(self.alias, queue, task, metric, key)] += count
            self.pending[(self.alias, queue, task, metric, "sum")] += counts[-1]
        self.histograms.clear()
        rows = sorted(self.pending.items())
        self.pending.clear()
        return rows

    def put_back(self, rows: list[tuple[Key, float]]) -> None:
        """Rows a write could not store: counted again at the next one."""
        for key, amount in rows:
            self.pending[key] += amount
