"""What becomes of print jobs and their letters: refused documents and letters that did not go
into the print failed/ folder with ``NAME.error.txt``, delivered letters out of the spool, and
the report mail to the print user. Blocking file work: call from worker threads (``report`` is
the core's reporter and hops to a thread itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.message
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faxbridge.edges.printing.intake import PlannedLetter
from faxbridge.edges.printing.wire import PrintHeader
from faxbridge.fsutil import fsync_dir, write_atomically
from faxbridge.journal import Journal
from faxbridge.model import Job, JobState
from faxbridge.outbound import mask_number

log = logging.getLogger(__name__)

# Final states in which FAX.de took the letter; the others (rejected, cancelled) did not go.
SENT_STATES = frozenset({JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED, JobState.CONFIRMED})


class PrintOutcomes:
    """The print edge's failed/ folder, spool clean-up and report mails."""

    def __init__(self, journal: Journal, letters: Path, failed: Path, relay: Any = None) -> None:
        self.journal = journal
        self.letters = letters
        self.failed = failed
        self.relay = relay  # faxbridge.relay.Relay, or None: no report mails

    # -- before the journal (worker thread) ----------------------------------------------------

    def keep_refused(self, source: Path, token: str, header: PrintHeader, reason: str) -> Path:
        """The printed document into failed/, with NAME.error.txt beside it (letters written
        before the refusal are dropped: none of them was journaled)."""
        for letter in self.letters.glob(f"{token}-*.pdf"):
            discard(letter)
        name = _free_name(self.failed, f"{document_name(header.title)}-{token}")
        target = self.failed / f"{name}.pdf"
        os.replace(source, target)
        text = _error_text(header, reason, "Correct the document or the recipient and print it again.")
        write_atomically(self.failed / f"{name}.error.txt", text.encode("utf-8"))
        fsync_dir(self.failed)
        return target

    def keep_missed(self, token: str, header: PrintHeader, letters: Sequence[PlannedLetter],
                    went: Sequence[tuple[int, Job]], missed: Sequence[tuple[int, str]]) -> None:
        """Letters that did not go (duplicates): their PDFs into failed/, and one error file
        saying exactly which letters went and which did not."""
        name = _free_name(self.failed, f"{document_name(header.title)}-{token}")
        lines: list[tuple[int, str]] = []
        for number, reason in missed:
            lines.append((number, f"letter {number} ({letters[number - 1].letter.page_label}): NOT sent: {reason}"))
            letter_file = self.letters / f"{token}-{number}.pdf"
            if letter_file.exists():
                os.replace(letter_file, self.failed / f"{name}-letter{number}.pdf")
        for number, job in went:
            lines.append((number, f"letter {number} ({letters[number - 1].letter.page_label}): "
                                  f"queued as faxbridge job {job.id}"))
        reason = "only part of the print job was sent:\n" + "\n".join("  " + line for _, line in sorted(lines))
        text = _error_text(header, reason, "Print the letters that were not sent again, if they should go.")
        write_atomically(self.failed / f"{name}.error.txt", text.encode("utf-8"))
        fsync_dir(self.failed)

    # -- the end of a job --------------------------------------------------------------------

    async def report(self, job: Job) -> None:
        """The job is final: its letter leaves the spool (into failed/ if it did not go), and the
        print user gets a report mail when print.report_to names an address for them."""
        job = self.journal.jobs.get(job.id)
        sent = job.state in SENT_STATES
        await asyncio.to_thread(self._file_letter, job, sent)
        address = job.meta.get("report_to")
        if address and self.relay is not None:
            await self.relay.send(_report_mail(job, address), key=f"print-report:{job.id}")
        label = job.meta.get("label", "print")
        if sent:
            log.info("job %d: %s ended %s", job.id, label, job.state.value)
        else:
            log.warning("job %d: %s ended %s: %s", job.id, label, job.state.value, job.last_error)

    def _file_letter(self, job: Job, sent: bool) -> None:
        """Idempotent (a report that failed half-way runs again): the names in failed/ follow
        from the letter's spool name, which is unique to its print job and letter."""
        for document in job.request.documents:
            path = Path(document.path)
            if sent:
                discard(path)
                continue
            stem = f"{document_name(job.meta.get('title', ''))}-{path.stem}"
            if path.exists():
                os.replace(path, self.failed / f"{stem}.pdf")
            error = self.failed / f"{stem}.error.txt"
            if not error.exists():
                write_atomically(error, _job_error_text(job).encode("utf-8"))
            fsync_dir(self.failed)


# -- names and texts --------------------------------------------------------------------------


def safe(text: str) -> str:
    """Text fit for a file name: letters, digits, . _ - only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:60]


def document_name(title: str) -> str:
    """A print job's title as a file name, without the extension lp puts there ("offer.pdf")."""
    return safe(re.sub(r"(?i)\.(pdf|ps|docx?|odt|xlsx?|ods|txt|html?)$", "", title.strip())) or "fax"


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _free_name(folder: Path, stem: str) -> str:
    name, n = stem, 1
    while (folder / f"{name}.pdf").exists() or (folder / f"{name}.error.txt").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _error_text(header: PrintHeader, reason: str, action: str) -> str:
    return (
        f"faxbridge did not send the print job \"{header.title}\" (CUPS job {header.job} on "
        f"{header.printer or 'the fax queue'}, printed by {header.user}).\n\n"
        f"What happened: {reason}\n\nWhat to do: {action}\n\nTime: {_now()}\n"
    )


def _job_error_text(job: Job) -> str:
    meta = job.meta
    reason = job.last_error or f"the job ended as {job.state.value}"
    if job.state is JobState.CANCELLED:
        action = "It was cancelled; print it again to send it after all."
    else:
        action = "Check the number (and the FAX.de result in the log), then print it again."
    return (
        f"faxbridge did not send {meta.get('label', 'a print job')} (\"{meta.get('title', '')}\").\n\n"
        f"What happened: {reason}\n\nWhat to do: {action}\n\n"
        f"faxbridge job: {job.id}" + (f" (FAX.de JobId {job.faxde_job_id})" if job.faxde_job_id else "")
        + f"\nTime: {_now()}\n"
    )


def _report_mail(job: Job, address: str) -> email.message.EmailMessage:
    meta = job.meta
    recipients = ", ".join(mask_number(r.address) for r in job.request.recipients)
    outcome = {JobState.DELIVERED: "delivered", JobState.PARTIAL: "partly delivered"}.get(job.state, "NOT delivered")
    message = email.message.EmailMessage()
    message["To"] = address
    message["Subject"] = f"Fax {outcome}: {meta.get('subject') or meta.get('title') or 'print job'}"
    lines = [
        f"Your print job \"{meta.get('title', '')}\" ({meta.get('pages', '')}) to {recipients}: {outcome}.",
        f"State: {job.state.value}" + (f" - {job.last_error}" if job.last_error else ""),
        f"faxbridge job: {job.id}" + (f" (FAX.de JobId {job.faxde_job_id})" if job.faxde_job_id else ""),
    ]
    message.set_content("\n".join(lines) + "\n")
    return message
