"""A job's failed attempts as its page shows them: the latest first, then the older ones.

Each entry of ``Job.errors`` is one failed attempt (or a cancellation). The
statement that records a failure also stores the attempt's start and end
(the database's clock) and its worker in the entry (see ``errors``); an
entry written by an earlier version has none of them, and the
page says "not recorded" rather than guess from the row's columns, which a
retry from the admin clears. Pure formatting of loaded values: no queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString
from django.utils.timezone import is_naive, make_aware

from ..exceptions import JobCancelled, PoisonJob, exception_path
from ..models import Job, JobStatus
from . import display, tracebacks

CANCELLED = exception_path(JobCancelled)
POISON = exception_path(PoisonJob)


@dataclass
class Attempt:
    """One entry of ``errors``, ready for the page."""

    number: int
    #: The one-line summary the list and the logs show (``ValueError: disk full``).
    summary: str
    exception_class_path: str = ""
    #: The exception's message in full (it may span lines).
    message: str = ""
    traceback: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str = ""
    #: What came of the attempt: "failed for good", "retried", ...
    outcome: str = ""
    #: The stored value, when the entry is not an object (shown as stored).
    malformed: str | None = None
    own_frames: list[tracebacks.Frame] = field(default_factory=list)

    @property
    def highlighted_traceback(self) -> SafeString:
        return tracebacks.highlighted(self.traceback)

    @property
    def frame_count(self) -> int:
        return sum(1 for piece in tracebacks.pieces(self.traceback) if piece.frame)

    @property
    def exception_name(self) -> str:
        return self.exception_class_path.rpartition(".")[2]

    @property
    def ran(self) -> bool:
        """A cancellation is recorded as an error, but nothing ran."""
        return self.exception_class_path != CANCELLED

    @property
    def start(self) -> SafeString | str:
        return display.moment(self.started_at, missing=self.missing)

    @property
    def end(self) -> SafeString | str:
        return display.moment(self.finished_at, missing=self.missing)

    @property
    def missing(self) -> str:
        """What a time or worker the entry lacks reads as."""
        return "did not run" if not self.ran else "not recorded"

    @property
    def worker(self) -> SafeString | str:
        return display.worker_links([self.worker_id]) if self.worker_id else self.missing

    @property
    def duration(self) -> str:
        if self.started_at is None or self.finished_at is None:
            return "–"
        return display.duration(display.between(self.started_at, self.finished_at))


def history(job: Job) -> list[Attempt]:
    """The job's failed attempts, the latest first; [] when ``errors`` is empty or malformed."""
    errors: Any = job.errors
    if not isinstance(errors, list):
        return []
    found = [attempt(number, entry) for number, entry in enumerate(errors, start=1)]
    for older in found[:-1]:
        older.outcome = "failed; run again" if older.ran else "cancelled; retried later"
    if found:
        found[-1].outcome = latest_outcome(job, found[-1])
    return found[::-1]


def title(job: Job, found: list[Attempt]) -> str:
    """The heading over the latest error: what it means for the job now."""
    if not found:
        return ""
    if not found[0].ran:
        return "Cancelled"
    if job.status == JobStatus.SUCCESSFUL:
        return "Latest error (a later attempt succeeded)"
    return "Latest error"


def attempt(number: int, entry: Any) -> Attempt:
    """One stored entry as an ``Attempt``; an entry that is not an object, as stored."""
    if not isinstance(entry, dict):
        return Attempt(
            number, "Malformed entry, shown as stored:", malformed=display.json_text(entry)
        )
    path = display.printable(entry.get("exception_class_path") or "")
    summary = display.printable(entry.get("message") or path)
    text = display.printable(entry.get("traceback") or "")
    message = summary
    name = path.rpartition(".")[2]
    for prefix in (f"{path}: ", f"{name}: "):
        if path and message.startswith(prefix):
            message = message[len(prefix) :]
            break
    return Attempt(
        number,
        summary,
        exception_class_path=path,
        message=message,
        traceback=text,
        started_at=moment_of(entry.get("started_at")),
        finished_at=moment_of(entry.get("finished_at")),
        worker_id=display.printable(entry.get("worker_id") or ""),
        own_frames=tracebacks.own_frames(text),
    )


def latest_outcome(job: Job, latest: Attempt) -> str:
    """What followed the latest failure, from the job's status."""
    if latest.exception_class_path == CANCELLED:
        return "cancelled before it ran"
    if job.status == JobStatus.FAILED:
        if latest.exception_class_path == POISON:
            return "failed for good: its runs killed their worker too many times"
        return f"failed for good (attempt {job.attempts} of {job.max_attempts})"
    if job.status == JobStatus.READY:
        return "failed; a retry is due"
    if job.status == JobStatus.RUNNING:
        return "failed; being run again now"
    if job.status == JobStatus.SUCCESSFUL:
        return "failed; a later attempt succeeded"
    return f"failed; the job is now {str(job.get_status_display()).lower()}"


def moment_of(value: Any) -> datetime | None:
    """A time stored in an entry (PostgreSQL's ISO text, or SQLite's UTC text), aware."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and is_naive(parsed):
        parsed = make_aware(parsed, UTC)
    return parsed
