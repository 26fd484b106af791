"""Batch policy: how many jobs to claim now, and how many to hand a pool process at once.

Claims and completions cost a round trip and a commit each, whatever their
size, so fast jobs are claimed and written in batches. Slow jobs are not:
a job claimed ahead waits behind the one running, so the batch follows how
long jobs take (``Pace``).
"""

from __future__ import annotations

from typing import Protocol


class PoolRoom(Protocol):
    """What the policy reads of a pool (see ``pool.Pool``)."""

    size: int
    capacity: int

    def free_slots(self) -> int: ...
    def has_idle_child(self) -> bool: ...
    def holding(self) -> int: ...


class Pace:
    """How many jobs to claim ahead of the free pool processes.

    An exponential moving average of job durations turns the
    ``PREFETCH_SECONDS`` budget into a number of jobs: a stream of no-op jobs
    is claimed (and completed) a hundred per statement, while hour-long jobs
    are claimed one per free process and never wait behind each other.
    """

    def __init__(self, budget: float, max_batch: int) -> None:
        self.budget = budget
        self.max_batch = max_batch
        self.average: float | None = None

    def observe(self, duration: float) -> None:
        duration = max(duration, 1e-5)
        self.average = duration if self.average is None else 0.9 * self.average + 0.1 * duration

    def ahead(self) -> int:
        if self.average is None or not self.budget:
            return 0
        return min(self.max_batch, int(self.budget / self.average))

    def chunk_size(self) -> int:
        """Jobs handed to one pool process at a time: the one it runs, and those ahead."""
        return 1 + self.ahead()


def claim_size(pool: PoolRoom, max_batch: int, suspect_waiting: bool, unwritten: int) -> int:
    """How many jobs to claim now: room in the pool, in sizable batches.

    While a suspect may be waiting, nothing until the worker holds nothing
    (no job in the pool, no outcome unwritten), then that one job alone (see
    ``queries.claim``). Otherwise the room left, but only once it is worth a
    statement: with no pool process idle, the claim waits until at least
    half the pool's room is free, to claim in one bigger batch.
    """
    if suspect_waiting:
        return 0 if pool.holding() or unwritten else 1
    room = min(pool.free_slots(), max_batch)
    if room <= 0:
        return 0
    if not pool.has_idle_child() and room < pool.size * pool.capacity // 2:
        return 0
    return room
