"""SIGTERM and SIGINT: a graceful stop, then a forced one; and the wake-up pipe.

The worker sleeps in one ``select()`` over its pool's pipes. A signal must
end that sleep at once, so its handler only records the request and the
kernel writes a byte to the wake-up pipe (``signal.set_wakeup_fd``), which is
one of the descriptors the worker waits on. The first signal asks for a
graceful stop (no new job is started; running ones get the grace period);
a second one forces the exit.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Owns the stop request (graceful, forced, its deadline) and the wake-up pipe.

    ``on_first`` and ``on_second`` run inside the handler, with the signal's
    name: on the first the loop stops its pool from starting queued jobs,
    and each says so in the log.
    """

    def __init__(
        self,
        grace_period: float,
        on_first: Callable[[str], None],
        on_second: Callable[[str], None],
    ) -> None:
        self.grace_period = grace_period
        self.on_first = on_first
        self.on_second = on_second
        self.requested = False
        self.forced = False
        self.grace_deadline: float | None = None
        self.wakeup_fd = -1
        self._wakeup_w = -1
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGTERM and SIGINT, and open the wake-up pipe they write to."""
        self.wakeup_fd, self._wakeup_w = os.pipe()
        for fd in (self.wakeup_fd, self._wakeup_w):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the signals back to their previous handlers and close the pipe."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._wakeup_w != -1:
            signal.set_wakeup_fd(-1)
            os.close(self.wakeup_fd)
            os.close(self._wakeup_w)
            self.wakeup_fd = self._wakeup_w = -1

    def drain(self) -> None:
        """Empty the wake-up pipe (the signal itself was handled already)."""
        try:
            while os.read(self.wakeup_fd, 512):
                pass
        except BlockingIOError:
            pass

    def grace_over(self, now: float) -> bool:
        return self.grace_deadline is not None and now >= self.grace_deadline

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            self.forced = True
            self.on_second(name)
            return
        self.requested = True
        self.grace_deadline = time.monotonic() + self.grace_period
        self.on_first(name)
