"""The print edge: a Unix socket the CUPS backend hands print jobs to, and the spool where their
letters wait until sent (what becomes of them afterwards: outcome).

Why a socket and not a spool folder CUPS writes into: the backend can only exit 0 ("printed")
once faxbridge has the job journaled, and must make CUPS keep the job while the daemon is down;
a socket answers both (no answer, no success). It is mode 0600, owned by the service user;
CUPS runs the backend as root (the backend file is mode 0700), and the peer's uid is checked
(root or the service user), so no other local user can submit faxes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from faxbridge.edges.printing import intake
from faxbridge.edges.printing.outcome import PrintOutcomes, discard, document_name, safe
from faxbridge.edges.printing.wire import MAGIC, MAX_HEADER, OK, REFUSED, RETRY, PrintHeader, Reply
from faxbridge.fsutil import fsync_dir, write_atomically
from faxbridge.errors import FaxbridgeError, JournalError
from faxbridge.model import Document, Job, JobType, Recipient, SendRequest
from faxbridge.outbound import number_check

log = logging.getLogger(__name__)

SOURCE = "print"
_CONCURRENT_JOBS = 2  # print jobs checked at once: rendering pages is CPU work, two cores
_SHUTDOWN_WAIT = 30.0
_READ_CHUNK = 1 << 16


class PrintEdge:
    name = "print"

    def __init__(self, services: Any) -> None:
        self.services = services
        self.config = services.config.print
        self.incoming = Path(self.config.spool_dir) / "incoming"
        self.letters = Path(self.config.spool_dir) / "letters"
        self.failed = Path(self.config.failed_dir)
        self._check = number_check(services.config.numbers.policy())
        self._slots = asyncio.Semaphore(_CONCURRENT_JOBS)
        self._server: asyncio.AbstractServer | None = None
        self._socket_inode: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.outcomes = PrintOutcomes(services.journal, self.letters, self.failed)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        letters = await asyncio.to_thread(self._prepare_folders)
        for orphan in self._orphans(letters):
            await asyncio.to_thread(discard, orphan)
        from faxbridge.relay import relay_for

        self.outcomes.relay = relay_for(self.services) if self.config.report_to else None
        if self.outcomes.relay is not None:
            self.outcomes.relay.start(self.services.scheduler)
        self.services.outbound.add_reporter(SOURCE, self.outcomes.report)
        listening = await asyncio.to_thread(self._bind)
        self._server = await asyncio.start_unix_server(self._accept, sock=listening, limit=MAX_HEADER)
        log.info("print: taking print jobs on %s", self.config.socket)

    async def stop_intake(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            await asyncio.to_thread(self._unlink_socket)
        pending = [t for t in self._handlers if not t.done()]
        if pending:
            # A job cut short never got its "ok": the backend exits with RETRY and CUPS keeps it.
            _, late = await asyncio.wait(pending, timeout=_SHUTDOWN_WAIT)
            for task in late:
                task.cancel()

    async def close(self) -> None:
        await self.stop_intake()
        if self.outcomes.relay is not None:
            await self.outcomes.relay.close()
            self.outcomes.relay = None

    def _prepare_folders(self) -> list[Path]:
        """Create the folders; returns the letters in the spool (each checked against the journal)."""
        for folder in (self.incoming, self.letters):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.failed.mkdir(parents=True, exist_ok=True)
        # What arrived before a crash and was not answered "ok" is still in CUPS, which sends it
        # again: the half-taken copy is not needed.
        for leftover in self.incoming.iterdir():
            discard(leftover)
        return sorted(self.letters.iterdir())

    def _orphans(self, letters: list[Path]) -> list[Path]:
        """Letters written for a print job that never reached the journal (its retry writes them
        anew): ``TOKEN-N.pdf`` belongs to the job journaled as ``TOKEN#N``."""
        orphans = []
        for letter in letters:
            token, _, number = letter.stem.rpartition("-")
            if self.services.journal.jobs.by_source(SOURCE, f"{token}#{number}") is None:
                orphans.append(letter)
        return orphans

    def _bind(self) -> socket.socket:
        """The socket, mode 0600 from the first moment others can see it: bound under a temporary
        name, restricted, then renamed into place (a rename is atomic; chmod after bind is not)."""
        path = Path(self.config.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FaxbridgeError(f"print.socket: {path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left over from a daemon that is gone
            else:
                raise FaxbridgeError(f"print.socket: {path} is in use by another running faxbridge")
            finally:
                probe.close()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(str(temporary))
            os.chmod(temporary, 0o600)
            os.rename(temporary, path)
            listening.listen(16)
            listening.setblocking(False)
        except BaseException:
            listening.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        self._socket_inode = path.stat().st_ino
        return listening

    def _unlink_socket(self) -> None:
        path = Path(self.config.socket)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == self._socket_inode:  # not a successor's socket
                path.unlink()

    # -- one print job -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            reply = await self._receive(reader, writer)
            writer.write(reply.encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.warning("print: the backend went away mid-job (%s); CUPS sends the job again", exc)
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Reply:
        peer = _peer_uid(writer)
        if peer not in (0, os.getuid()):
            log.warning("print: refused a connection from uid %s (only CUPS, as root, may print)", peer)
            return Reply(REFUSED, "only the print system may hand jobs to faxbridge")
        magic = await reader.readexactly(len(MAGIC))
        if magic != MAGIC:
            return Reply(REFUSED, "not a faxbridge print job (unknown protocol)")
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            return Reply(REFUSED, "the print job's header is too long")
        if len(line) > MAX_HEADER:
            return Reply(REFUSED, "the print job's header is too long")
        try:
            header = PrintHeader.decode(line)
        except ValueError as exc:
            return Reply(REFUSED, f"unreadable print job header: {exc}")
        body = bytearray()
        while chunk := await reader.read(_READ_CHUNK):
            body += chunk
            if len(body) > self.config.max_size:
                return Reply(REFUSED, f"the print job is larger than print.max_size ({self.config.max_size} bytes)")
        async with self._slots:
            try:
                return await self._take(header, bytes(body))
            except OSError as exc:  # disk full, spool not writable: CUPS keeps the job meanwhile
                log.error("print: cannot take CUPS job %s: %s", header.job, exc.strerror or exc)
                return Reply(RETRY, f"faxbridge cannot store the job now ({exc.strerror or exc})")

    async def _take(self, header: PrintHeader, data: bytes) -> Reply:
        token = _token(header, data)
        label = f"{header.printer or 'print'} job {header.job} by {header.user}"
        source = self.incoming / f"{token}.pdf"
        await asyncio.to_thread(write_atomically, source, data)
        try:
            if not _user_allowed(header.user, self.config.allowed_users):
                raise intake.PrintRefused(f"the print user {header.user!r} may not send faxes (print.allowed_users)")
            if not data:
                raise intake.PrintRefused("the print system handed over an empty document (did a CUPS filter fail? see its error_log)")
            if not data.startswith(b"%PDF"):
                raise intake.PrintRefused("the printed document is not a PDF (is the queue set up with faxbridge cups install?)")
            planned = await asyncio.to_thread(
                intake.plan_job, source, header.options, header.title,
                control_codes=self.config.control_codes, check=self._check)
            checked = await asyncio.to_thread(self._write_letters, source, token, planned, header)
        except FaxbridgeError as exc:
            where = await asyncio.to_thread(self.outcomes.keep_refused, source, token, header, str(exc))
            log.warning("print: %s refused: %s (→ %s)", label, exc, where)
            return Reply(REFUSED, f"faxbridge refused the job: {exc}")
        except OSError:
            raise  # the spool, not the document: CUPS keeps the job and tries again
        except Exception as exc:  # a document the PDF libraries choke on: kept, never retried forever
            log.exception("print: %s: reading the document failed", label)
            reason = f"the document could not be read ({type(exc).__name__}: {exc})"
            await asyncio.to_thread(self.outcomes.keep_refused, source, token, header, reason)
            return Reply(REFUSED, f"faxbridge refused the job: {reason}")
        went: list[tuple[int, Job]] = []
        missed: list[tuple[int, str]] = []
        for number, (letter, request) in enumerate(checked, start=1):
            meta = self._meta(header, letter, number, len(checked), label)
            try:
                job = await self.services.outbound.submit(
                    request, source=SOURCE, source_ref=f"{token}#{number}", meta=meta)
            except JournalError as exc:
                # Nothing is acknowledged: CUPS sends the job again, and the letters journaled
                # so far are found by their reference then, not journaled twice.
                log.error("print: %s: the journal refused letter %d: %s", label, number, exc)
                return Reply(RETRY, f"faxbridge cannot journal the job now ({exc})")
            except FaxbridgeError as exc:  # a duplicate of a recent job, above all
                missed.append((number, str(exc)))
                continue
            went.append((number, job))
        if missed:
            letters = [letter for letter, _request in checked]
            await asyncio.to_thread(self.outcomes.keep_missed, token, header, letters, went, missed)
        await asyncio.to_thread(discard, source)
        if not went:
            return Reply(REFUSED, "faxbridge refused the job: " + "; ".join(f"letter {n}: {why}" for n, why in missed))
        jobs = ", ".join(str(job.id) for _, job in went)
        text = f"faxbridge job {jobs}" if len(went) == 1 else f"faxbridge jobs {jobs} ({len(went)} letters)"
        if missed:
            text += "; not sent: " + "; ".join(f"letter {n}: {why}" for n, why in missed)
        return Reply(OK, text)

    def _write_letters(self, source: Path, token: str, planned: list[intake.PlannedLetter],
                       header: PrintHeader) -> list[tuple[intake.PlannedLetter, Any]]:
        """Each letter's PDF (fsynced) and its checked request; any refusal before the first job."""
        checked = []
        for number, letter in enumerate(planned, start=1):
            target = self.letters / f"{token}-{number}.pdf"
            documents: tuple[Document, ...] = ()
            if letter.job_type is not JobType.SMS:
                intake.write_letter(source, letter, target, whole_document=len(planned) == 1)
                # Named after the title, not the CUPS job: the same letter printed twice is the
                # same fax (duplicate suppression compares the names too).
                documents = (Document(f"{document_name(header.title)}.pdf", target),)
            request = SendRequest(
                job_type=letter.job_type,
                recipients=tuple(Recipient(n) for n in letter.recipients),
                documents=documents,
                text=letter.text,
                send_at=letter.letter.send_at,
            )
            checked.append((letter, self.services.outbound.check(request)))
        fsync_dir(self.letters)
        return checked

    def _meta(self, header: PrintHeader, letter: intake.PlannedLetter, number: int, count: int,
              label: str) -> dict[str, Any]:
        pages = letter.letter.page_label
        return {
            "label": f"{label}, letter {number}/{count} ({pages})" if count > 1 else label,
            "sender": header.user,
            "printer": header.printer,
            "cups_job": header.job,
            "title": header.title,
            "letter": number,
            "letters": count,
            "pages": pages,
            "name": letter.letter.name,
            "subject": letter.letter.subject,
            "report_to": _report_address(header.user, self.config.report_to),
        }

# -- helpers ---------------------------------------------------------------------------------


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _user_allowed(user: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or user in allowed


def _report_address(user: str, report_to: Any) -> str | None:
    if user in report_to:
        return str(report_to[user])
    pattern = report_to.get("*")
    if pattern and re.fullmatch(r"[A-Za-z0-9._-]+", user):
        return str(pattern).replace("{user}", user)
    return None


def _token(header: PrintHeader, data: bytes) -> str:
    """The same print job (CUPS retries it) gets the same token, so its letters' journal
    references repeat and it is not journaled twice."""
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"{safe(header.printer) or 'print'}-{safe(header.job)}-{digest}"
