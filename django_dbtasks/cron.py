"""Cron expressions: validation, next fire times, DST rules. The only croniter import.

Supported: standard 5 fields (``minute hour day-of-month month day-of-week``),
an optional 6th field of seconds in croniter's form (``* * * * * */2``: every
2 seconds), and the aliases ``@yearly``/``@annually``, ``@monthly``,
``@weekly``, ``@daily``/``@midnight`` and ``@hourly``.

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

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

EXAMPLES = "'0 3 * * *' (03:00 daily), '*/15 * * * *', '* * * * * */2' (every 2 s) or '@daily'"


class InvalidCron(ValueError):
    """A cron expression or timezone that cannot be used, with what to write instead."""


def validate(expression: str) -> None:
    """Raise ``InvalidCron`` with an example if croniter cannot read the expression."""
    text = (expression or "").strip()
    fields = text.split()
    if text.startswith("@"):
        ok = croniter.is_valid(text)
    else:
        ok = len(fields) in (5, 6) and croniter.is_valid(text)
    if not ok:
        raise InvalidCron(
            f"{expression!r} is not a valid cron expression: use 5 fields (minute hour "
            f"day-of-month month day-of-week), an optional 6th for seconds, or an alias; "
            f"for example {EXAMPLES}."
        )


def zone(name: str) -> ZoneInfo:
    """Return the IANA timezone, or raise ``InvalidCron`` naming a valid one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCron(
            f"{name!r} is not a known IANA timezone; use a name like 'UTC', "
            "'Europe/Berlin' or 'America/New_York'."
        ) from None


def _hour_is_wildcard(expression: str) -> bool:
    text = expression.strip()
    if text.startswith("@"):
        return text == "@hourly"
    return "*" in text.split()[1]


def _is_repeated_wall_time(moment: datetime) -> bool:
    """Whether ``moment`` is the second occurrence of an ambiguous local time (fall back)."""
    first = moment.replace(fold=0)
    second = moment.replace(fold=1)
    return first.utcoffset() != second.utcoffset() and moment.utcoffset() == second.utcoffset()


def fire_times(
    expression: str, timezone: str, after: datetime, until: datetime | None = None, limit: int = 5
) -> list[datetime]:
    """Fire times after ``after`` (and not after ``until``), in UTC, at most ``limit``."""
    validate(expression)
    tz = zone(timezone)
    iterator = croniter(expression.strip(), after.astimezone(tz))
    skip_repeats = not _hour_is_wildcard(expression)
    times: list[datetime] = []
    while len(times) < limit:
        moment = iterator.get_next(datetime)
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
    validate(expression)
    tz = zone(timezone)
    iterator = croniter(expression.strip(), until.astimezone(tz) + timedelta(microseconds=1))
    skip_repeats = not _hour_is_wildcard(expression)
    times: list[datetime] = []
    while len(times) < limit:
        moment = iterator.get_prev(datetime)
        if moment <= after:
            break
        if skip_repeats and _is_repeated_wall_time(moment):
            continue
        times.append(moment.astimezone(UTC))
    return times[::-1]


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def describe(expression: str) -> str:
    """A readable description ("At 03:00", "Every 2 seconds"), via cron-descriptor."""
    from cron_descriptor import ExpressionDescriptor, Options

    # Fixed options: cron-descriptor otherwise follows the process's locale
    # (12-hour "03:00 AM" under en_US, "03:00" under C).
    options = Options()
    options.locale_code = "en_US"
    options.use_24hour_time_format = True

    text = _ALIASES.get(expression.strip(), expression.strip())
    fields = text.split()
    if len(fields) == 6:
        # croniter puts seconds last; cron-descriptor reads them first (Quartz order).
        fields = [fields[5], *fields[:5]]
    try:
        return str(ExpressionDescriptor(" ".join(fields), options).get_description())
    except Exception:  # cron-descriptor refuses some expressions croniter accepts
        return expression
