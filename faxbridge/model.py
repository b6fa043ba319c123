"""Plain value objects that cross the seams between edges, core and provider."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class JobType(enum.StrEnum):
    FAX = "fax"
    SMS = "sms"
    EMAIL = "email"
    ILETTER = "iletter"
    ILETTER_COLOR = "iletter-color"
    QSIGN = "qsign"

    @property
    def code(self) -> int:
        """The integer JobType of SendJob (FAXDE-API.md, "Parameters SendJob")."""
        return _JOB_TYPE_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> JobType:
        for job_type, value in _JOB_TYPE_CODES.items():
            if value == code:
                return job_type
        raise ValueError(f"unknown FAX.de JobType {code}")

    @property
    def needs_recipient(self) -> bool:
        """iLetter and QSign read the address from the document itself."""
        return self not in (JobType.ILETTER, JobType.ILETTER_COLOR, JobType.QSIGN)

    @property
    def dials_numbers(self) -> bool:
        return self in (JobType.FAX, JobType.SMS)


_JOB_TYPE_CODES = {
    JobType.FAX: 0,
    JobType.SMS: 1,
    JobType.EMAIL: 2,
    JobType.ILETTER: 3,
    JobType.ILETTER_COLOR: 4,
    JobType.QSIGN: 8,
}


class JobState(enum.StrEnum):
    """A job's life in the journal; ALLOWED_TRANSITIONS says how it may move."""

    HELD = "held"  # journaled, waiting for an approver (approval rules); never sent from here
    QUEUED = "queued"  # journaled, waiting for (another) SendJob attempt
    SUBMITTING = "submitting"  # SendJob in flight: the request may reach FAX.de any moment
    SUBMITTED = "submitted"  # FAX.de accepted it and gave a JobId; polled with JobStatus
    UNKNOWN = "unknown"  # SendJob may or may not have reached FAX.de: the operator decides
    DELIVERED = "delivered"  # finished, every recipient OK
    PARTIAL = "partial"  # finished, some recipients OK, some not
    FAILED = "failed"  # finished, no recipient reached (Busy, No Answer, …)
    REJECTED = "rejected"  # never accepted: bad input, permanent provider error, retries used up
    CANCELLED = "cancelled"
    # FAX.de answered a reconciling re-send with -77 "identical job already established": it has
    # the job, but its JobId was lost with the first answer, so no delivery report will come.
    CONFIRMED = "confirmed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        JobState.DELIVERED,
        JobState.PARTIAL,
        JobState.FAILED,
        JobState.REJECTED,
        JobState.CANCELLED,
        JobState.CONFIRMED,
    }
)

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # Approved → queued; rejected by an approver or by the hold's expiry; or cancelled.
    JobState.HELD: frozenset({JobState.QUEUED, JobState.REJECTED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.REJECTED, JobState.CANCELLED}),
    JobState.SUBMITTING: frozenset(
        {JobState.SUBMITTED, JobState.QUEUED, JobState.REJECTED, JobState.UNKNOWN, JobState.CONFIRMED}
    ),
    # An unknown outcome is resolved by a re-send (FAX.de's duplicate answer -77 tells if the
    # first one arrived), by FAX.de's status callback naming the JobId, or by the operator.
    JobState.UNKNOWN: frozenset(
        {JobState.SUBMITTING, JobState.SUBMITTED, JobState.REJECTED, JobState.CANCELLED}
    ),
    JobState.SUBMITTED: frozenset(
        {JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.DELIVERED: frozenset(),
    JobState.PARTIAL: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.REJECTED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.CONFIRMED: frozenset(),
}


@dataclass(frozen=True)
class Document:
    """A file to send as SendFile1..3; the bytes stay on disk until the request is built."""

    filename: str  # the name FAX.de sees; its extension tells FAX.de the type
    path: Path
    # For a converted document, the originals it was made from: duplicate suppression compares
    # what the sender sent, since a conversion need not give the same bytes twice.
    sources: tuple[Path, ...] = ()

    @property
    def extension(self) -> str:
        return Path(self.filename).suffix.lower().lstrip(".")


@dataclass(frozen=True)
class Recipient:
    """One addressee: an E.164 number (fax, SMS) or a mail address, with an optional reference."""

    address: str
    reference: str = ""

    def for_faxde(self) -> str:
        """The Recipient parameter: the reference id rides along in [] (FAXDE-API.md)."""
        return f"{self.address}[{self.reference}]" if self.reference else self.address


@dataclass(frozen=True)
class SendRequest:
    """Everything one SendJob needs, already validated."""

    job_type: JobType
    recipients: tuple[Recipient, ...] = ()
    documents: tuple[Document, ...] = ()
    text: str = ""
    send_at: dt.datetime | None = None  # aware UTC; None = at once
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if len(self.documents) > 3:
            raise ValueError("FAX.de takes at most 3 documents per job (SendFile1..3)")
        if self.send_at is not None and self.send_at.tzinfo is None:
            raise ValueError("send_at must be timezone-aware")

    @property
    def options_string(self) -> str:
        """Options as FAX.de wants them: KEY=VALUE pairs separated by ';', flags bare."""
        return ";".join(f"{k}={v}" if v != "" else k for k, v in self.options)

    def recipient_file(self) -> bytes:
        """The RecipientFile CSV for more than one recipient (comma, LF; FAXDE-API.md)."""
        if len(self.recipients) <= 1:
            return b""
        lines = []
        for r in self.recipients:
            lines.append(f"{r.address},{r.reference}" if r.reference else r.address)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def recipient_param(self) -> str:
        return self.recipients[0].for_faxde() if len(self.recipients) == 1 else ""


@dataclass(frozen=True)
class Accepted:
    """SendJob said 0: the job is FAX.de's now."""

    faxde_job_id: int
    recipients_count: int
    page_count: int


@dataclass(frozen=True)
class StatusRow:
    """One row of the StatusFile CSV (FAXDE-API.md, JobStatus)."""

    recipient: str
    job_type: str
    result: str
    remote_id: str = ""
    pages: str = ""
    send_datetime: str = ""
    duration: str = ""
    ref_id: str = ""

    @property
    def ok(self) -> bool:
        return self.result.strip().upper() == "OK"


@dataclass(frozen=True)
class JobStatusReport:
    """JobStatus of a job: still running, or finished with its protocol."""

    finished: bool
    send_result: str = ""
    send_datetime: dt.datetime | None = None
    remote_id: str = ""
    status_file: bytes = b""
    rows: tuple[StatusRow, ...] = ()

    @property
    def final_state(self) -> JobState:
        results = [row.ok for row in self.rows]
        if not results:
            results = [self.send_result.strip().upper() == "OK"]
        if all(results):
            return JobState.DELIVERED
        if any(results):
            return JobState.PARTIAL
        return JobState.FAILED


@dataclass(frozen=True)
class InboundFax:
    """One received fax as RequestReceived returns it."""

    fax_id: int
    called_number: str
    received_at: dt.datetime | None
    originator: str
    remote_id: str
    pages: int
    image: bytes = field(repr=False)


@dataclass(frozen=True)
class Job:
    """A journal row as the rest of the code sees it."""

    id: int
    state: JobState
    source: str
    source_ref: str
    request: SendRequest
    content_key: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    faxde_job_id: int | None = None
    recipients_count: int | None = None
    page_count: int | None = None
    attempts: int = 0
    polls: int = 0
    next_attempt_at: dt.datetime | None = None
    next_poll_at: dt.datetime | None = None
    last_error_code: int | None = None
    last_error: str = ""
    send_result: str = ""
    status_file: bytes = field(default=b"", repr=False)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    reported_at: dt.datetime | None = None
