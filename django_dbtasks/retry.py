"""How long a failed attempt waits before the next one."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

RetryDelay = float | int | Callable[[int], float]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base * factor**(attempt-1)``, capped.

    Jitter takes up to ``jitter`` (a fraction) off each delay at random, so
    jobs that failed together (a flaky service went down) do not all retry
    in the same instant. Delays never shrink from one attempt to the next.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0 or not 0 <= self.jitter < 1:
            raise ValueError(
                "Backoff needs base >= 0, factor >= 1, max_delay >= 0 and 0 <= jitter < 1; "
                f"got {self!r}."
            )

    def __call__(self, attempt: int) -> float:
        delay = min(self.max_delay, self.base * self.factor ** max(attempt - 1, 0))
        return delay * (1 - self.jitter * random.random())


def delay_for(policy: RetryDelay, attempt: int) -> float:
    """Return the seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if callable(policy):
        return max(0.0, float(policy(attempt)))
    return max(0.0, float(policy))
