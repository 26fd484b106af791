"""Human durations for command-line options: ``90``, ``30s``, ``15m``, ``12h``, ``7d``, ``2w``."""

from __future__ import annotations

import argparse
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Return seconds; raise ``argparse.ArgumentTypeError`` with an example when unreadable."""
    match = _PATTERN.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use a number of seconds or a number with a unit, "
            "for example 90, 30s, 15m, 12h, 7d or 2w"
        )
    number, unit = match.groups()
    return float(number) * _UNITS[(unit or "s").lower()]
