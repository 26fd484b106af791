"""Cron expressions: validation, next fire times, DST rules. The only croniter import.

Supported: standard 5 fields (``minute hour day-of-month month day-of-week``),
an optional 6th field of seconds in croniter's form (``* * * * * */2``: every
2 seconds), and the aliases ``@yearly``/``@annually``, ``@monthly``,
``@weekly``, ``@daily``/``@midnight`` and ``@hourly`` (in any case: ``@YEARLY``
is ``@yearly``). Refused: croniter's random ``R`` and hashed ``H`` fields (fire
times that change from one reading to the next), and an expression that does
not fire within ``HORIZON_YEARS`` (``0 0 30 2 *``). Every function here reads
the expression through ``normalize()``, so validation, fire times and the
description agree on what it means.

Fire times are computed in the schedule's timezone, then stored in UTC.
Daylight saving time, as documented in docs/scheduling.md:

- spring forward: a wall-clock time that does not exist that day (02:30 in
  Europe/Berlin on the last Sunday of March) fires once, at the first instant
  after the gap (03:00 local);
- fall back: a wall-clock time that happens twice fires once, at its first
  occurrence, when the expression names its hours (``30 2 * * *``); an
  expression whose hour field is a wildcard (``*/15 * * * *``, ``@hourly``)
  follows real time and fires in both occurrences, at the right UTC instants.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor
from cron_descriptor import Options as DescriptorOptions
from croniter import croniter

EXAMPLES = "'0 3 * * *' (03:00 daily), '*/15 * * * *', '* * * * * */2' (every 2 s) or '@daily'"

#: An expression must fire within this many years from now, in its schedule's
#: timezone, to be accepted. Every 5- or 6-field expression that fires at all fires
#: at least once in any 40 years (the rarest is a weekday falling on 29 February,
#: ``0 0 * 2 1#5``), so this refuses exactly the expressions that never fire.
HORIZON_YEARS = 50

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: How croniter splits fields (ASCII whitespace only), so both read the same fields.
_FIELD = re.compile(r"\S+", re.ASCII)
#: croniter's random (``R``, ``R(0-29)``, ``R/15``) and hashed (``H``...) field forms.
_RANDOM_OR_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.ASCII | re.IGNORECASE)


class InvalidCron(ValueError):
    """A cron expression or timezone that cannot be used, with what to write instead."""


def normalize(expression: str) -> str:
    """The expression as it is read: fields one space apart, an alias (any case) as its fields."""
    text = " ".join(_FIELD.findall(expression or ""))
    return _ALIASES.get(text.lower(), text)


def _readable(expression: str) -> str:
    """The normalized expression, or ``InvalidCron`` if croniter cannot read it as we do."""
    text = normalize(expression)
    fields = text.split(" ")
    random = [field for field in fields if _RANDOM_OR_HASHED.match(field)]
    if random and random[0][0] in "rR":
        raise InvalidCron(
            f"{expression!r} uses {random[0]!r}, croniter's random value R, which picks a "
            "new time each time the expression is read (in each worker, at each restart), "
            "so its fire times would change: write the value you want instead (such as 17 "
            f"for minute 17); for example {EXAMPLES}."
        )
    if random:
        raise InvalidCron(
            f"{expression!r} uses {random[0]!r}, a hashed value H, which schedules do not "
            f"support: write the value you want instead; for example {EXAMPLES}."
        )
    try:
        ok = len(fields) in (5, 6) and croniter.is_valid(text)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        ok = False  # croniter raises only its own errors today; any other is a refusal too
    if not ok:
        raise InvalidCron(
            f"{expression!r} is not a valid cron expression: use 5 fields (minute hour "
            f"day-of-month month day-of-week), an optional 6th for seconds, or an alias; "
            f"for example {EXAMPLES}."
        )
    return text


def _never_fires(expression: str) -> InvalidCron:
    return InvalidCron(
        f"{expression!r} never fires: no date matches it within the next {HORIZON_YEARS} "
        "years (as '0 0 30 2 *' asks for the 30th of February); check the day-of-month, "
        f"month and day-of-week fields; for example {EXAMPLES}."
    )


def _iterator(text: str, start: datetime) -> croniter:
    return croniter(text, start, max_years_between_matches=HORIZON_YEARS)


def validate(expression: str, timezone: str = "UTC", now: datetime | None = None) -> None:
    """Raise ``InvalidCron``, with an example, unless the expression reads and fires.

    "Fires" means at least once within ``HORIZON_YEARS`` after ``now`` (default:
    the current time) in ``timezone``.
    """
    text = _readable(expression)
    start = (now or datetime.now(UTC)).astimezone(zone(timezone))
    try:
        _iterator(text, start).get_next(datetime)
    except (ValueError, OverflowError):  # croniter's CroniterBadDateError is a ValueError
        raise _never_fires(expression) from None


def zone(name: str) -> ZoneInfo:
    """Return the IANA timezone, or raise ``InvalidCron`` naming a valid one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        # ValueError: not a normalized key, not a TZif file; OSError: a name too
        # long for the file system, or a directory of zones such as 'Europe'.
        raise InvalidCron(
            f"{name!r} is not a known IANA timezone; use a name like 'UTC', "
            "'Europe/Berlin' or 'America/New_York'."
        ) from None


def _hour_is_wildcard(text: str) -> bool:
    """Whether the hour field of a normalized expression is a wildcard (``*``, ``*/2``)."""
    return "*" in text.split(" ")[1]


def _is_repeated_wall_time(moment: datetime) -> bool:
    """Whether ``moment`` is the second occurrence of an ambiguous local time (fall back)."""
    first = moment.replace(fold=0)
    second = moment.replace(fold=1)
    return first.utcoffset() != second.utcoffset() and moment.utcoffset() == second.utcoffset()


def fire_times(
    expression: str, timezone: str, after: datetime, until: datetime | None = None, limit: int = 5
) -> list[datetime]:
    """Fire times after ``after`` (and not after ``until``), in UTC, at most ``limit``."""
    validate(expression, timezone)
    text = normalize(expression)
    iterator = _iterator(text, after.astimezone(zone(timezone)))
    skip_repeats = not _hour_is_wildcard(text)
    times: list[datetime] = []
    while len(times) < limit:
        try:
            moment = iterator.get_next(datetime)
        except (ValueError, OverflowError):  # nothing left within the horizon of ``after``
            if times or until is not None:
                break
            raise _never_fires(expression) from None
        if until is not None and moment > until:
            break
        if skip_repeats and _is_repeated_wall_time(moment):
            continue
        times.append(moment.astimezone(UTC))
    return times


def next_fire_time(expression: str, timezone: str, after: datetime) -> datetime:
    return fire_times(expression, timezone, after, limit=1)[0]


def recent_fire_times(
    expression: str, timezone: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The last ``limit`` fire times in ``(after, until]``, oldest first, in UTC.

    Walks backwards from ``until``, so a schedule that missed a day of
    every-second fire times costs ``limit`` steps, not 86,400.
    """
    validate(expression, timezone)
    text = normalize(expression)
    iterator = _iterator(text, until.astimezone(zone(timezone)) + timedelta(microseconds=1))
    skip_repeats = not _hour_is_wildcard(text)
    times: list[datetime] = []
    while len(times) < limit:
        try:
            moment = iterator.get_prev(datetime)
        except (ValueError, OverflowError):  # none within the horizon before ``until``
            break
        if moment <= after:
            break
        if skip_repeats and _is_repeated_wall_time(moment):
            continue
        times.append(moment.astimezone(UTC))
    return times[::-1]


def describe(expression: str) -> str:
    """A readable description ("At 03:00", "Every 2 seconds"), via cron-descriptor."""
    # Fixed options: cron-descriptor otherwise follows the process's locale
    # (12-hour "03:00 AM" under en_US, "03:00" under C).
    options = DescriptorOptions()
    options.locale_code = "en_US"
    options.use_24hour_time_format = True

    fields = normalize(expression).split(" ")
    if len(fields) == 6:
        # croniter puts seconds last; cron-descriptor reads them first (Quartz order).
        fields = [fields[5], *fields[:5]]
    try:
        return str(ExpressionDescriptor(" ".join(fields), options).get_description())
    except Exception:  # cron-descriptor refuses some expressions croniter accepts
        return expression
