"""Command-line numbers: durations (``90``, ``30s``, ``15m``, ``12h``, ``7d``, ``2w``),
seconds and bounded whole numbers; and durations written back (``short``).

Each reader is an argparse ``type``: it returns the value or raises
``argparse.ArgumentTypeError`` saying what was wrong and what is accepted, so
any text typed after an option ends in a usage error, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import re

from .conf import number, shown

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)

#: The longest duration: no job is that old, and a date that far back is past what
#: SQLite computes (year 0) long before PostgreSQL (4713 BC) refuses it.
MAX_DURATION = 36500 * 86400.0


def parse_duration(text: str) -> float:
    """Return seconds; raise ``argparse.ArgumentTypeError`` with an example when unreadable."""
    match = _PATTERN.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a duration; use a number of seconds or a number with a "
            "unit, for example 90, 30s, 15m, 12h, 7d or 2w"
        )
    value, unit = match.groups()
    seconds = float(value) * _UNITS[(unit or "s").lower()]
    if seconds > MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is too long: the longest duration is 36500d (100 years)"
        )
    return seconds


def seconds_at_most(text: str, maximum: float, beyond: str) -> float:
    """A finite number of seconds from 0 to ``maximum``; ``beyond`` says why no more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {shown(text)}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value:g}")
    if value > maximum:
        raise argparse.ArgumentTypeError(
            f"must be at most {number(maximum)} seconds, got {number(value)}: {beyond}"
        )
    return value


def whole_number(text: str, maximum: int, beyond: str) -> int:
    """A whole number from 1 to ``maximum``; ``beyond`` says why no more."""
    try:
        value = int(text)
    except ValueError:
        digits = text.strip().lstrip("+-").replace("_", "")
        if digits.isdecimal():  # int() refuses more than 4300 digits: far out of bounds
            if text.strip().startswith("-"):
                raise argparse.ArgumentTypeError(
                    f"must be at least 1, got a {len(digits)}-digit negative number"
                ) from None
            raise argparse.ArgumentTypeError(
                f"must be at most {maximum}, got a {len(digits)}-digit number: {beyond}"
            ) from None
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number(value)}")
    if value > maximum:
        raise argparse.ArgumentTypeError(
            f"must be at most {maximum}, got {number(value)}: {beyond}"
        )
    return value


def short(seconds: float | None) -> str:
    """Seconds as a terminal shows them, in the units ``parse_duration`` reads: ``850ms``,
    ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h`` (``-`` for none)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
