"""The inbound core: for each received fax, decide — check it, store it, journal it, delete it on
FAX.de, or set it aside in quarantine.

FAXDE-API.md ("RequestReceived", "Important"): the server hands out the oldest fax it still holds,
and the same one again on every call until DeleteReceived removes it. A fax deleted before its file
is safely on disk is gone for good, so the order per fax is fixed:

    check → journal the file name (writing) → write temp, fsync, rename, fsync folder → sidecar,
    PDF, received.csv → journal (stored) → DeleteReceived → journal (deleted)

Two consequences shape a run:

* A FaxId the journal already knows as stored (a crash or a failed delete came between) is not
  written again; it is only deleted. One still ``writing`` is resumed: its file is adopted if it
  is in place byte-identical, else written afresh.
* A fax that fails the checks is kept in quarantine and NOT deleted — so, being the oldest, it
  comes back on every call and hides every fax behind it. A run stops there, says so in
  ``last_error`` and ``blocked_by``, and waits for the operator, who looks at the quarantined copy
  and runs ``faxbridge receive --release FAXID`` (deletes it on the server; the copy stays). A fax
  that passes the checks when it comes back (the damage was in transit) is stored normally.

The file work itself is the inbox edge's (``faxbridge.edges.inbox.files``); it reaches the core as a
``FaxFiles`` object whose synchronous methods run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import phonenumbers

from faxbridge.crashpoints import crash_point
from faxbridge.documents import tiff_page_count, what_it_is
from faxbridge.errors import FaxbridgeError, JournalError, ProviderError
from faxbridge.journal.inbound import InboundRecord, InboundState
from faxbridge.model import InboundFax

if TYPE_CHECKING:
    from faxbridge.config import InboundConfig
    from faxbridge.journal import Journal
    from faxbridge.provider import ProviderCalls

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"  # under inbound.output
LOCK_NAME = "inbound.lock"  # in the state dir: one collecting process at a time
# DeleteReceived 5 "Unknown fax id" (FAXDE-API.md): the fax is no longer on the server — a
# delete whose answer was lost, or someone deleted it in the web portal. Nothing left to do.
DELETE_UNKNOWN_FAX = 5
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class InboundError(FaxbridgeError):
    """An inbound operation the operator asked for cannot be done (release, a second collector)."""


# -- checks (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The verdict on one payload: ``ok`` → store and delete; else quarantine for ``reason``."""

    ok: bool
    reason: str = ""  # why it is quarantined
    pages_counted: int | None = None  # IFDs in the TIFF, when it could be read
    note: str = ""  # worth recording although the fax is fine (a page-count mismatch)


def check_payload(fax: InboundFax, max_size: int) -> Check:
    """Is this what FAX.de promises — a TIFF (FAXDE-API.md: "The document will be returned as Tiff
    file") with ``Pages`` pages, within ``inbound.max_size``?"""
    size = len(fax.image)
    if size > max_size:
        return Check(
            False,
            f"{size / 1_000_000:.1f} MB is larger than the limit of {max_size / 1_000_000:.1f} MB"
            " (inbound.max_size)",
        )
    if size == 0:
        return Check(False, "FAX.de sent an empty fax image")
    if not fax.image.startswith(_TIFF_MAGIC):
        return Check(False, f"the fax image is not a TIFF but {what_it_is(fax.image[:8192])}")
    try:
        counted = tiff_page_count(fax.image)
    except ValueError as exc:
        return Check(False, f"the TIFF is damaged: {exc}")
    if counted != fax.pages:
        # Kept anyway: the image is readable, and a wrong count must not cost the fax.
        return Check(True, pages_counted=counted,
                     note=f"FAX.de says {fax.pages} page(s), the TIFF has {counted}")
    return Check(True, pages_counted=counted)


def canonical_number(raw: str, default_country: str | None) -> str:
    """A called number as E.164 when it can be read (``030 555``, ``004930555``), else as given."""
    text = raw.strip()
    try:
        parsed = phonenumbers.parse(text, default_country)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Destination:
    """Where one fax goes: its route's folder, whether a PDF joins the TIFF, who gets it by mail."""

    folder: Path
    pdf: bool
    mail_to: tuple[str, ...] = ()
    route: str | None = None  # the called number of the matching route; None = inbound.output


def destination(config: InboundConfig, called_number: str, default_country: str | None) -> Destination:
    route = config.route_for(canonical_number(called_number, default_country))
    if route is None:
        return Destination(config.output, config.pdf)
    return Destination(route.output, route.pdf, route.mail_to, route.called_number)


# -- the seam to the inbox edge -----------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A fax's files in place: the TIFF (or quarantined payload), its size and hash, extras."""

    path: Path
    size: int
    sha256: str
    pdf: Path | None = None
    note: str = ""  # e.g. the PDF could not be made (the TIFF is still fine)


class FaxFiles(Protocol):
    """The inbox edge's file work. Synchronous and blocking: the core calls it in a worker thread.

    ``store`` and ``quarantine`` raise FileExistsError when the planned name was taken meanwhile
    (the core plans again) and OSError when the folder cannot be written.
    """

    def plan(self, fax: InboundFax, folder: Path, *, pdf: bool, quarantine: bool = False) -> Path: ...
    def holds(self, path: Path, fax: InboundFax) -> bool: ...
    def store(self, fax: InboundFax, path: Path, check: Check, dest: Destination, *,
              resume: bool) -> Stored: ...
    def quarantine(self, fax: InboundFax, path: Path, check: Check, *, resume: bool) -> Stored: ...
    def present(self, path: Path) -> bool: ...


# Queue the mail of a stored fax to its route's ``mail_to`` (the edge builds it, the relay keeps
# it durably). Must be idempotent per FaxId: after a crash it is called again.
MailFax = Callable[[InboundFax, Path, Destination], Awaitable[None]]


# -- one run ------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What one run did; ``error`` is the one thing that stopped it (None: it ran to its end)."""

    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    fetched: int = 0
    stored: int = 0
    deleted: int = 0
    quarantined: int = 0
    end: str = ""  # inbox empty | limit reached | stopping | error | blocked | busy
    error: str | None = None
    blocked_by: int | None = None  # a quarantined fax at the head of the server's inbox

    def summary(self, *, with_error: bool = True) -> str:
        parts = [f"{self.fetched} fetched", f"{self.stored} stored", f"{self.deleted} deleted on FAX.de"]
        if self.quarantined:
            parts.append(f"{self.quarantined} quarantined")
        text = f"{', '.join(parts)}; {self.end}"
        return text + (f": {self.error}" if self.error and with_error else "")


class Inbound:
    """Collects received faxes. ``run_once()`` is what the scheduler and ``faxbridge receive`` call."""

    def __init__(
        self,
        journal: Journal,
        calls: ProviderCalls,
        files: FaxFiles,
        config: InboundConfig,
        *,
        state_dir: Path,
        default_country: str | None = None,
        mail: MailFax | None = None,
        duty: Callable[[], contextlib.AbstractAsyncContextManager[bool]] | None = None,
    ) -> None:
        self.journal = journal
        # With nodes sharing the journal: a run holds this lease, one node at a time, and its
        # writes are fenced by it (faxbridge/nodes.py). None: this process is the only collector.
        self._duty = duty
        self.calls = calls
        self.files = files
        self.config = config
        self.mail = mail
        self.default_country = default_country
        self.quarantine_dir = config.output / QUARANTINE_DIR
        self.lock_path = Path(state_dir) / LOCK_NAME
        self.last_report: RunReport | None = None
        self.last_error: str | None = None  # for health: what stopped the last run
        self.blocked_by: int | None = None  # for health: the quarantined fax holding up the inbox
        self._running = asyncio.Lock()
        self._stopping = False

    def request_stop(self) -> None:
        """Finish the fax in hand, then end the run (shutdown)."""
        self._stopping = True

    async def run_once(self, *, wait_for_lock: float = 0.0) -> RunReport:
        """One collection: pending deletes, then RequestReceived until the inbox is empty."""
        report = RunReport()
        async with self._running:  # never two runs at once in this process …
            # … nor across processes (the daemon and `faxbridge receive --once`): both would write
            # the same fax. Thread seam: opening and locking the lock file.
            lock = await asyncio.to_thread(_RunLock.acquire, self.lock_path, wait_for_lock)
            if lock is None:
                report.end = "busy"
                report.error = f"another faxbridge process is collecting faxes ({self.lock_path})"
                log.info("inbound run skipped: %s", report.error)
                return report
            try:
                async with self._duty() if self._duty else contextlib.nullcontext(True) as held:
                    if held:
                        await self._run(report)
                    else:
                        report.end = "busy"  # another node collects for this account now
            finally:
                await asyncio.to_thread(lock.release)
        self.last_report = report
        self.last_error = report.error
        self.blocked_by = report.blocked_by
        if report.fetched or report.deleted:  # the error, if any, was logged once already
            log.info("inbound run: %s", report.summary(with_error=False))
        return report

    async def _run(self, report: RunReport) -> None:
        for record in self.journal.inbound.awaiting_delete():
            # Stored earlier, DeleteReceived failed or never ran: retried first (the issue's
            # "retried on later runs"). A failure stops the run, as the server would hand this
            # very fax out again first.
            if self._stopping:
                report.end = "stopping"
                return
            # A crash may have come between 'stored' and queueing the route's mail: queue it
            # now (idempotent per FaxId), before the delete takes the last chance away.
            if not await self._mail_stored(record, report):
                return
            if not await self._delete(record.fax_id, report):
                return
        seen: set[int] = set()
        while report.fetched < self.config.max_per_run:
            if self._stopping:
                report.end = "stopping"
                return
            try:
                fax = await self.calls.request_received()
            except ProviderError as exc:
                self._fail(report, f"RequestReceived failed: {exc}")
                return
            if fax is None:
                report.end = "inbox empty"
                return
            report.fetched += 1
            if fax.fax_id in seen:
                # Deleted a moment ago, yet handed out again: do not loop on it.
                self._fail(report, f"FAX.de returned fax {fax.fax_id} again after deleting it")
                return
            seen.add(fax.fax_id)
            if not await self._handle(fax, report):
                return
        report.end = f"limit of {self.config.max_per_run} per run reached (inbound.max_per_run)"

    async def _handle(self, fax: InboundFax, report: RunReport) -> bool:
        """One fax; False ends the run (the next RequestReceived would return this fax again)."""
        try:
            record = self.journal.inbound.get(fax.fax_id)
        except JournalError as exc:
            self._fail(report, str(exc))
            return False
        if record is not None and record.state in (InboundState.STORED, InboundState.DELETED):
            log.info("fax %d is already stored at %s; deleting it on FAX.de", fax.fax_id, record.path)
            dest = destination(self.config, fax.called_number, self.default_country)
            if record.state is InboundState.STORED and not await self._mail(fax, Path(record.path), dest, report):
                return False
            return await self._delete(fax.fax_id, report)
        check = check_payload(fax, self.config.max_size)
        if not check.ok and record is not None and record.state is InboundState.QUARANTINED:
            self._blocked(fax.fax_id, record.path, record.note, report)
            return False
        dest = destination(self.config, fax.called_number, self.default_country)
        resume = record if record is not None and record.state is InboundState.WRITING else None
        try:
            stored = await self._write(fax, check, dest, resume)
        except OSError as exc:
            folder = dest.folder if check.ok else self.quarantine_dir
            self._fail(report, f"cannot write fax {fax.fax_id} into {folder}: {_os_reason(exc)};"
                               " it stays on FAX.de")
            return False
        except JournalError as exc:
            self._fail(report, f"fax {fax.fax_id}: {exc}; it stays on FAX.de")
            return False
        crash_point("inbound.after_files")
        note = "; ".join(n for n in (check.note, stored.note) if n)
        if not check.ok:
            try:
                self.journal.inbound.record(fax, state=InboundState.QUARANTINED, path=str(stored.path),
                                            size=stored.size, sha256=stored.sha256, note=check.reason)
            except JournalError as exc:
                self._fail(report, f"fax {fax.fax_id}: {exc}")
                return False
            report.quarantined += 1
            log.warning("fax %d ← %s quarantined: %s (kept as %s, left on FAX.de)",
                        fax.fax_id, fax.originator or "unknown", check.reason, stored.path)
            self._blocked(fax.fax_id, str(stored.path), check.reason, report)
            return False
        try:
            self.journal.inbound.record(fax, state=InboundState.STORED, path=str(stored.path),
                                        size=stored.size, sha256=stored.sha256, note=note)
        except JournalError as exc:
            self._fail(report, f"fax {fax.fax_id}: {exc}")
            return False
        crash_point("inbound.after_journal")
        report.stored += 1
        log.info("fax %d ← %s → %s (%d page(s)%s)%s", fax.fax_id, fax.originator or "unknown",
                 stored.path, fax.pages, ", PDF" if stored.pdf else "", f"; {note}" if note else "")
        if not await self._mail(fax, stored.path, dest, report):
            return False
        return await self._delete(fax.fax_id, report)

    async def _mail_stored(self, record: InboundRecord, report: RunReport) -> bool:
        """The route's mail of a fax stored in an earlier run (read back from its file)."""
        dest = destination(self.config, record.called_number, self.default_country)
        if not dest.mail_to or self.mail is None:
            return True
        path = Path(record.path)
        try:
            # Thread seam: reading the stored TIFF back.
            image = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            # Stored, then taken away by someone: it was delivered to the folder; a mail that can
            # no longer be made must not hold up the inbox.
            log.warning("fax %d: not mailed to %s: its file %s cannot be read (%s)", record.fax_id,
                        ", ".join(dest.mail_to), path, _os_reason(exc))
            return True
        fax = InboundFax(
            fax_id=record.fax_id, called_number=record.called_number,
            received_at=dt.datetime.fromisoformat(record.received_at) if record.received_at else None,
            originator=record.originator, remote_id=record.remote_id, pages=record.pages, image=image,
        )
        return await self._mail(fax, path, dest, report)

    async def _mail(self, fax: InboundFax, path: Path, dest: Destination, report: RunReport) -> bool:
        """Queue the route's mail before DeleteReceived: once the fax is gone from the server, a
        crash could no longer bring it back to be mailed. Queued means durable, not delivered."""
        if not dest.mail_to:
            return True
        if self.mail is None:
            log.warning("fax %d: not mailed to %s: no smtp.relay", fax.fax_id, ", ".join(dest.mail_to))
            return True
        try:
            await self.mail(fax, path, dest)
        except (OSError, FaxbridgeError, ValueError) as exc:
            self._fail(report, f"fax {fax.fax_id}: cannot queue its mail to {', '.join(dest.mail_to)}:"
                               f" {exc}; it stays on FAX.de")
            return False
        crash_point("inbound.after_mail")
        return True

    async def _write(self, fax: InboundFax, check: Check, dest: Destination,
                     resume: InboundRecord | None) -> Stored:
        """Journal the name, then write the files; FileExistsError (a name taken meanwhile) → again."""
        quarantine = not check.ok
        folder = self.quarantine_dir if quarantine else dest.folder
        planned = Path(resume.path) if resume is not None else None
        if planned is not None and not await asyncio.to_thread(self.files.holds, planned, fax):
            planned = None  # nothing usable there: start afresh (a new name, as the config says now)
        for _ in range(5):
            path = planned or await asyncio.to_thread(
                self.files.plan, fax, folder, pdf=dest.pdf, quarantine=quarantine
            )
            self.journal.inbound.begin(fax, path=str(path))
            crash_point("inbound.after_begin")
            try:
                # Thread seam: the file writes, fsyncs and PDF conversion.
                if quarantine:
                    return await asyncio.to_thread(
                        self.files.quarantine, fax, path, check, resume=planned is not None
                    )
                return await asyncio.to_thread(
                    self.files.store, fax, path, check, dest, resume=planned is not None
                )
            except FileExistsError:
                planned = None
        raise OSError(errno.EEXIST, "every file name tried was taken meanwhile")

    async def _delete(self, fax_id: int, report: RunReport) -> bool:
        try:
            await self.calls.delete_received(fax_id)
        except ProviderError as exc:
            if exc.code == DELETE_UNKNOWN_FAX:
                try:
                    self.journal.inbound.mark_deleted(fax_id, note="FAX.de no longer had it")
                except JournalError as err:  # the disk full: the next run asks again
                    self._fail(report, f"fax {fax_id}: {err}")
                    return False
                report.deleted += 1
                log.info("fax %d was already gone from FAX.de", fax_id)
                return True
            with contextlib.suppress(JournalError):
                self.journal.inbound.note_delete_failure(fax_id, str(exc))
            self._fail(report, f"DeleteReceived for fax {fax_id} failed: {exc}; retried next run")
            return False
        crash_point("inbound.after_delete")
        try:
            self.journal.inbound.mark_deleted(fax_id)
        except JournalError as exc:
            # Deleted on the server; the row stays 'stored' and the next run's delete says 5.
            self._fail(report, f"fax {fax_id}: {exc}")
            return False
        report.deleted += 1
        log.info("fax %d ✓ deleted on FAX.de", fax_id)
        return True

    def _fail(self, report: RunReport, message: str) -> None:
        # The one log line per run about what stopped it.
        report.end = "error"
        report.error = message
        log.error("inbound: %s", message)

    def _blocked(self, fax_id: int, path: str, reason: str, report: RunReport) -> None:
        report.end = "blocked"
        report.blocked_by = fax_id
        report.error = (
            f"fax {fax_id} is in quarantine ({reason}; kept as {path}) and, being the oldest on"
            f" FAX.de, holds up the faxes behind it — check it, then `faxbridge receive"
            f" --release {fax_id}` deletes it on FAX.de"
        )
        log.warning("inbound: %s", report.error)

    # -- the operator's way out of quarantine -------------------------------------------------

    async def release(self, fax_id: int, *, wait_for_lock: float = 30.0) -> InboundRecord:
        """Delete a quarantined fax on FAX.de; its quarantined copy stays where it is."""
        async with self._running:
            lock = await asyncio.to_thread(_RunLock.acquire, self.lock_path, wait_for_lock)
            if lock is None:
                raise InboundError(f"another faxbridge process is collecting faxes ({self.lock_path})")
            try:
                record = self.journal.inbound.get(fax_id)
                if record is None or record.state is not InboundState.QUARANTINED:
                    state = record.state.value if record is not None else "unknown to the journal"
                    raise InboundError(f"fax {fax_id} is not in quarantine ({state})")
                if not await asyncio.to_thread(self.files.present, Path(record.path)):
                    raise InboundError(
                        f"fax {fax_id}: its quarantined copy {record.path} is missing; not deleting"
                        " the only other copy on FAX.de"
                    )
                try:
                    await self.calls.delete_received(fax_id)
                except ProviderError as exc:
                    if exc.code != DELETE_UNKNOWN_FAX:
                        raise
                self.journal.inbound.mark_deleted(fax_id, note="released from quarantine")
                log.warning("fax %d released from quarantine and deleted on FAX.de (copy: %s)",
                            fax_id, record.path)
                if self.blocked_by == fax_id:
                    self.blocked_by = self.last_error = None
            finally:
                await asyncio.to_thread(lock.release)
        result = self.journal.inbound.get(fax_id)
        assert result is not None
        return result


class _RunLock:
    """An exclusive flock on a file in the state dir, held for one run (released by the kernel
    if the process dies, so a crash never leaves it stuck)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path, wait: float) -> _RunLock | None:
        import time

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return cls(fd)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.05)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason
