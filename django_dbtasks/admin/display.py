"""How job data looks in the admin: status badges, progress bars, JSON, durations.

Pure formatting, no queries: every function takes values already loaded, so
list pages cost one query for the rows whatever columns they show.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

#: Badge colours per status, readable in the admin's light and dark themes.
STATUS_COLOURS = {
    "READY": "#447e9b",
    "RUNNING": "#b8860b",
    "SUCCESSFUL": "#2e7d32",
    "FAILED": "#c62828",
    "CANCELLED": "#6d6d6d",
}


def status_badge(status: str, label: str) -> SafeString:
    """A coloured pill with the status's label (the colour is never the only cue)."""
    colour = STATUS_COLOURS.get(status, "#6d6d6d")
    return format_html(
        '<span class="dbtasks-status dbtasks-status-{}" style="background:{}">{}</span>',
        status.lower(),
        colour,
        label,
    )


def task_path(path: str) -> SafeString:
    """A task path that a narrow column breaks before the function's name, not inside it.

    The module (``myproject.billing.tasks.``) is small and quiet, the
    function's name at full size; the text is still the whole path, so a
    search of the page, a screen reader and a copy see it unchanged.
    """
    module, dot, name = printable(path).rpartition(".")
    if not dot:
        return format_html("{}", name)
    return format_html('<span class="dbtasks-module">{}.</span><wbr>{}', module, name)


def progress_bar(percent: int | None, message: str) -> SafeString:
    """A native progress bar and the task's last message (indeterminate when no percentage)."""
    if percent is None:
        bar = SafeString('<progress class="dbtasks-progress" max="100"></progress>')
    else:
        bar = format_html(
            '<progress class="dbtasks-progress" max="100" value="{}">{}%</progress> {}%',
            percent,
            percent,
            percent,
        )
    if not message:
        return bar
    return format_html('{} <span class="dbtasks-progress-message">{}</span>', bar, message)


def moment(value: datetime | None, missing: str = "–") -> SafeString | str:
    """A compact local time for list columns ("Nov 22 13:34:05"), the full one on hover.

    The day and the time are two parts, so a narrow column puts the time
    under the day rather than pushing the next columns away.
    """
    if value is None:
        return missing
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}"><span class="dbtasks-day">{}</span> {}</time>',
        value.isoformat(),
        precise(value),
        local.strftime("%b %d"),
        local.strftime("%H:%M:%S"),
    )


def moment_long(value: datetime | None, missing: str = "–") -> SafeString | str:
    """A local time for a page: ``2026-12-02 18:28:18 UTC (12.3 s ago)``, the full one on hover."""
    if value is None:
        return missing
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time> <span class="dbtasks-ago">({})</span>',
        value.isoformat(),
        precise(value),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        ago(value),
    )


def precise(value: datetime) -> str:
    """A time to the microsecond, in the current time zone, with its offset and name."""
    local = timezone.localtime(value)
    return f"{local.isoformat(timespec='microseconds')} {local.tzname() or ''}".rstrip()


def printable(value: Any) -> str:
    """``str(value)`` that a page can encode: a lone surrogate (from JSON) becomes ``\\udxxx``."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def json_text(value: Any, **options: Any) -> str:
    """``value`` as JSON text, non-ASCII kept, printable."""
    return printable(json.dumps(value, ensure_ascii=False, default=str, **options))


def pretty_json(value: Any) -> SafeString:
    """Indented JSON in a ``<pre>``, escaped; non-ASCII text stays readable."""
    return format_html(
        '<pre class="dbtasks-json">{}</pre>', json_text(value, indent=2, sort_keys=True)
    )


def malformed(what: str, value: Any) -> SafeString:
    """A stored value of the wrong shape (written by SQL, or an older version), as stored."""
    return format_html(
        '<p class="dbtasks-malformed">Malformed: {}.</p>{}',
        what,
        pretty_json(value),
    )


#: Characters of the latest error's message the job list loads per row.
ERROR_PREVIEW_CHARS = 300


def exception_label(path: str) -> str:
    """``ValueError (builtins)``: the class first, where it comes from after."""
    module, _, name = path.rpartition(".")
    return f"{name} ({module})" if module else name


def first_line(message: str, path: str) -> str:
    """The first line of an error's message, without the class it often starts with.

    Python writes ``ValueError: ...`` for builtins and the full path
    (``json.decoder.JSONDecodeError: ...``) for other classes.
    """
    lines = message.strip().splitlines()
    line = lines[0] if lines else ""
    for name in (path, path.rpartition(".")[2]):
        if line == name:
            return ""
        if line.startswith(f"{name}:"):
            return line[len(name) + 1 :].strip()
    return line


def error_summary(path: Any, message: Any, earlier: bool = False) -> SafeString:
    """The job list's error cell: the class in bold, then the message's first line.

    ``earlier`` marks the error of a job that succeeded afterwards (muted).
    The cell is cut by CSS to its column; the whole line is in the tooltip.
    """
    path, message = printable(path), printable(message)
    name = path.rpartition(".")[2]
    line = first_line(message, path)
    title = f"{path}: {line}" if line else path
    if earlier:
        title = f"An earlier attempt failed ({title}); the job then succeeded."
    return format_html(
        '<span class="dbtasks-error-cell{}" title="{}"><strong>{}</strong>{}{}</span>',
        " dbtasks-earlier" if earlier else "",
        title,
        name,
        " " if line else "",
        line,
    )


def short_call(args: Any, kwargs: Any, limit: int = 80) -> str:
    """``1, "a", key=2`` cut to ``limit`` characters, for one line of a list.

    Arguments of the wrong shape (``args`` not a list, ``kwargs`` not an
    object) are shown as stored, after the word "malformed".
    """
    if isinstance(args, list) and isinstance(kwargs, dict):
        parts = [json_text(a) for a in args]
        parts += [f"{printable(k)}={json_text(v)}" for k, v in kwargs.items()]
        text = ", ".join(parts)
    else:
        text = f"malformed: args={json_text(args)}, kwargs={json_text(kwargs)}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``, ``3 d 4 h`` (``4 min``: no zero)."""
    if seconds is None:
        return "–"
    if seconds < 0.9995:  # what would round to "1000 ms" reads "1.0 s"
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.95:  # and what would round to "60.0 s", "1 min"
        return f"{seconds:.1f} s"
    whole = max(60, int(seconds))
    if whole < 3600:
        return _two(whole // 60, "min", whole % 60, "s")
    if whole < 86400:
        return _two(whole // 3600, "h", whole % 3600 // 60, "min")
    return _two(whole // 86400, "d", whole % 86400 // 3600, "h")


def _two(first: int, unit: str, second: int, second_unit: str) -> str:
    return f"{first} {unit}" if second == 0 else f"{first} {unit} {second} {second_unit}"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (or to now, for something still going on)."""
    if start is None:
        return None
    return ((end or timezone.now()) - start).total_seconds()


def ago(moment: datetime | None) -> str:
    """``12.3 s ago``: how long since ``moment``, in the units of ``duration``."""
    if moment is None:
        return "never"
    seconds = (timezone.now() - moment) / timedelta(seconds=1)
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def worker_links(ids: list[Any]) -> SafeString:
    """Links to workers' pages; an id that is not text or a number is shown, unlinked."""
    return format_html_join(
        ", ",
        "{}",
        (
            (
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:django_dbtasks_worker_change", args=[quote(str(w))]),
                    w,
                )
                if isinstance(w, str | int) and not isinstance(w, bool) and str(w)
                else json_text(w),
            )
            for w in ids
        ),
    )
