"""The SMTP edge: mail to ``+4940…@fax.example.com`` becomes SendJobs, and the sender gets a report.

aiosmtpd speaks SMTP on the daemon's own event loop (``loop.create_server``; no Controller thread).
The handler (smtp_handler) decides who may send what and answers 250 to DATA only once the mail is
fsynced in the spool and journaled (journal/mail.py). Everything slow happens after that, from the
spool: reading MIME, checking and merging documents (smtp_mail, in a worker thread) and submitting
one job per part to the outbound core — idempotently, so a mail processed again after a crash never
makes a second job. When a job is final, its report goes to the sender through the relay queue
(relay.py), and the archived .eml gets NAME.status.csv beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any, AnyStr, Final

from aiosmtpd.smtp import MISSING, SMTP

from faxbridge import sendreport
from faxbridge.relay import Relay, relay_for
from faxbridge.fsutil import fsync_dir, fsync_file, sync_file_system, write_atomically
from faxbridge.edges.smtp.auth import Authenticator, LoginFailures, install_log_filter
from faxbridge.edges.smtp.data import DataAssembler, Refusal, read_data
from faxbridge.edges.smtp.handler import REPLIES, FaxEnvelope, IncomingMail, SmtpHandler, reply
from faxbridge.edges.smtp.mail import Addressee, MailPlan, MailSettings, plan_mail
from faxbridge.edges.smtp.report import (
    job_report,
    mail_status_csv,
    received_text,
    rejection_report,
)
from faxbridge.config import HostPort, SmtpConfig
from faxbridge.crashpoints import crash_point
from faxbridge.errors import ConfigError, FaxbridgeError, JournalError, NumberError
from faxbridge.journal.logins import LoginFailuresTable
from faxbridge.journal.mail import MailsTable, MailState, SpooledMail
from faxbridge.model import Job, JobType
from faxbridge.outbound import number_check

log = logging.getLogger(__name__)

SOURCE: Final = "smtp"
# Per connection: how often each command may be given before aiosmtpd answers 421 and hangs up.
# AUTH is the one worth guessing with; the rest only bound a client that loops.
COMMAND_LIMITS: Final[dict[str, int]] = {
    "AUTH": 3, "EHLO": 5, "HELO": 5, "STARTTLS": 2, "NOOP": 20, "VRFY": 5, "HELP": 5,
    "RSET": 100, "MAIL": 100, "RCPT": 1000, "DATA": 100, "*": 100,
}
SPOOL_TICK: Final = 30.0  # seconds: look for mails whose processing failed for a passing reason
MAX_ATTEMPTS: Final = 5  # unexpected errors (bugs) while processing one mail, before it is given up
SESSION_IDLE_TIMEOUTS: Final = 10  # a whole SMTP session lasts at most this many idle_timeouts
# Accepting mail comes first: while mails keep arriving (one within INTAKE_QUIET seconds), the
# spool waits, at most PROCESS_DEFER seconds after a mail came in. Reading, checking and sending
# a mail take the CPU the sessions need: with both at once, a burst of mails was answered at
# half the rate (bench.smtp_rate). A mail is spooled durably either way.
INTAKE_QUIET: Final = 0.1
PROCESS_DEFER: Final = 5.0
# aiosmtpd's own reply to MAIL FROM with SIZE= over data_size_limit, given faxbridge's "too_big" reply.
_AIOSMTPD_SIZE_REFUSAL: Final = "552 Error: message size exceeds fixed maximum message size"


def build(services: Any) -> SmtpEdge | None:
    """The SMTP edge, or None when the config has no smtp section."""
    if services.config.smtp is None:
        return None
    return SmtpEdge(services)


class _FaxSMTP(SMTP):
    """aiosmtpd's protocol with faxbridge's envelope, counted by the edge for max_connections, and
    its own DATA reader (smtp_data: bare-LF lines, exact end of data, timeouts)."""

    def __init__(self, handler: SmtpHandler, *, edge: SmtpEdge, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._edge = edge
        self._deadline: asyncio.TimerHandle | None = None
        self._session_started = False
        self._session_left = 0.0  # seconds of the session deadline left while DATA runs
        self._data_idle: asyncio.Timeout | None = None  # pushed back by every byte during DATA

    def _create_envelope(self) -> FaxEnvelope:
        return FaxEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._edge._connections.add(self)
        if not self._session_started:  # not again after STARTTLS: one session, one deadline
            self._session_started = True
            # aiosmtpd's idle timeout restarts with every command: a client sending one every
            # minute (RSET, RCPT … up to their limits) would hold a connection slot for a day.
            self._deadline = self.loop.call_later(
                SESSION_IDLE_TIMEOUTS * self._edge.config.idle_timeout, self._session_over)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._edge._connections.discard(self)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self._data_idle is not None and not self._data_idle.expired():
            self._data_idle.reschedule(self.loop.time() + self._edge.config.idle_timeout)
        super().data_received(data)

    async def push(self, status: AnyStr) -> None:
        if status == _AIOSMTPD_SIZE_REFUSAL:  # aiosmtpd's answer to MAIL … SIZE= over the limit
            await super().push(reply("too_big", self.data_size_limit))
        else:
            await super().push(status)

    def _session_over(self) -> None:
        log.warning("SMTP session from %s cut off after %.0f s", self.session.peer if self.session else "?",
                    SESSION_IDLE_TIMEOUTS * self._edge.config.idle_timeout)
        self._hang_up(REPLIES["session_too_long"])

    def _hang_up(self, status: str) -> None:
        """The reply written without waiting for the client to read it, and the connection closed."""
        if self.transport is not None and not self.transport.is_closing():
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(status.encode("ascii") + b"\r\n")
            self.transport.close()

    def _pause_session_clock(self) -> None:
        """DATA has timeouts of its own (data_timeout, idle_timeout); it does not use up the session's."""
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()  # aiosmtpd's command timeout would cut a long DATA
        if self._deadline is not None:
            self._session_left = max(0.0, self._deadline.when() - self.loop.time())
            self._deadline.cancel()
            self._deadline = None

    def _resume_session_clock(self) -> None:
        if self._deadline is None and self.transport is not None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self._session_left, self._session_over)

    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's smtp_DATA (1.4) with smtp_data's reader; the checks before 354 are its own."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        config = self._edge.config
        assembler = DataAssembler(size_limit=self.data_size_limit, max_line_chars=self.line_length_limit)
        self._pause_session_clock()
        idle = self._data_idle = asyncio.timeout(config.idle_timeout)
        try:
            async with asyncio.timeout(config.data_timeout), idle:
                complete = await read_data(self._reader, assembler)
        except TimeoutError:
            stalled = idle.expired()
            log.warning("SMTP DATA from %s cut off: %s (%d bytes read)",
                        self.session.peer if self.session else "?",
                        f"no data for {config.idle_timeout:g} s" if stalled
                        else f"longer than {config.data_timeout:g} s", assembler.size)
            self._hang_up(reply("data_idle", f"{config.idle_timeout:g}") if stalled
                          else reply("data_too_slow", f"{config.data_timeout:g}"))
            return
        finally:
            self._data_idle = None
        if not complete:  # the client hung up in the middle: nothing to answer, nothing stored
            if self.transport is not None:
                self.transport.close()
            return
        self._resume_session_clock()
        if assembler.refusal is Refusal.LINE_TOO_LONG:
            status = reply("line_too_long", self.line_length_limit)
        elif assembler.refusal is Refusal.TOO_BIG:
            status = reply("too_big", self.data_size_limit)
        else:
            content = assembler.content()
            # decode_data is never set: the handler reads the bytes (original_content).
            self.envelope.content = content
            self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
        self._reset_timeout()  # the command timeout again, from now


class _Refuse(asyncio.Protocol):
    """Greets with a 421 and hangs up (too many connections, shutting down)."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.reply.encode("ascii") + b"\r\n")
        transport.close()


class SmtpEdge:
    name = "smtp"

    def __init__(self, services: Any) -> None:
        config: SmtpConfig = services.config.smtp
        self.services = services
        self.config = config
        self.journal = services.journal
        self.mails = MailsTable(self.journal)
        self.journal.register_table(self.mails)
        self.relay: Relay | None = relay_for(services)
        self.spool_dir = Path(config.spool_dir)
        self.archive_dir = Path(config.archive_dir)
        self.settings = MailSettings(
            body=config.body,
            trim_body=config.trim_body,
            multi_recipient=config.multi_recipient,
            limits=services.config.documents.limits(),
            convert=services.config.convert,
        )
        policy = services.config.numbers.policy()
        authenticator = Authenticator(config.auth.users)
        if config.auth.required and not config.tls.enabled:
            raise ConfigError("smtp.auth.required", "needs smtp.tls: AUTH is offered only after STARTTLS")
        if authenticator and not config.tls.enabled:
            log.warning("smtp.auth has users but smtp.tls is not set: AUTH is offered only after"
                        " STARTTLS, so nobody can log in")
        self.tls_context = _tls_context(config) if config.tls.enabled else None
        failures_table = LoginFailuresTable(self.journal)
        self.journal.register_table(failures_table)
        self.handler = SmtpHandler(
            config,
            check_number=number_check(policy),
            store=self._store,
            authenticator=authenticator,
            # Journaled, so a restart does not hand a guesser a fresh allowance; wall-clock time.
            login_failures=LoginFailures(clock=self.journal.clock, store=failures_table),
        )
        self.address: HostPort | None = None  # where it listens, once started (port 0 resolved)
        self._connections: set[_FaxSMTP] = set()
        self._server: asyncio.Server | None = None
        self._hostname = "localhost"
        self._wake = asyncio.Event()
        self._processor: asyncio.Task[None] | None = None
        self._stopping = False
        self._tick_job = f"smtp-spool-{id(self)}"
        self._last_intake = float("-inf")  # time.monotonic() of the last mail stored
        self._one_file_system = False  # the spool and the journal on one file system: one syncfs

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for folder in (self.spool_dir, self.archive_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Before the listener opens: no session can be storing a mail meanwhile.
        known = {row["key"] for row in self.journal.query("SELECT key FROM smtp_mails")}
        swept = await asyncio.to_thread(sweep_spool, self.spool_dir, known)
        if swept:
            log.info("spool: removed %d mail(s) a crash left before they were accepted (no 250 was"
                     " sent for them)", swept)
        self._one_file_system = os.stat(self.spool_dir).st_dev == os.stat(self.journal.path).st_dev
        install_log_filter()
        mail_log = logging.getLogger("mail.log")
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG and mail_log.level < logging.WARNING:
            mail_log.setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
        # Thread seam: the FQDN may need a DNS lookup; aiosmtpd would do one per connection.
        self._hostname = await asyncio.to_thread(socket.getfqdn)
        listen = self.config.listen
        self._server = await loop.create_server(self._protocol, host=listen.host, port=listen.port)
        port = self._server.sockets[0].getsockname()[1]
        self.address = HostPort(listen.host, port)
        self.services.outbound.add_reporter(SOURCE, self._report)
        if self.relay is not None:
            self.relay.start(self.services.scheduler)
        scheduler = self.services.scheduler
        if scheduler is not None:
            scheduler.add_job(self._tick, "interval", seconds=SPOOL_TICK, id=self._tick_job,
                              replace_existing=True, misfire_grace_time=None, coalesce=True,
                              max_instances=1)
        for mail in self.mails.unfinished():  # a crash may have come between a job's end and this
            await self._update_mail(mail)
        self._processor = loop.create_task(self._process_spool(), name="smtp-spool")
        waiting = len(self.mails.spooled())
        log.info("SMTP listening on %s for %s%s", self.address, ", ".join(sorted(self.config.domains)),
                 f"; {waiting} spooled mail(s) to process" if waiting else "")

    async def _tick(self) -> None:
        """Retry mails whose processing failed for a passing reason; forget old finished ones."""
        self._wake.set()
        retention = self.services.config.journal.retention
        self.mails.purge(self.journal.clock() - retention)

    async def stop_intake(self) -> None:
        self.handler.closing = True  # sessions still open get 421 from here on
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.handler.closing = True
        self._stopping = True
        self._wake.set()
        scheduler = self.services.scheduler
        if scheduler is not None:
            with contextlib.suppress(Exception):
                scheduler.remove_job(self._tick_job)
        if self._processor is not None:
            # A mail half-processed is processed again at the next start (idempotently).
            done, _ = await asyncio.wait({self._processor}, timeout=5)
            if not done:
                self._processor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._processor
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.relay is not None:
            await self.relay.close()

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.handler.closing:
            return _Refuse(REPLIES["shutting_down"])
        if len(self._connections) >= self.config.max_connections:
            log.warning("SMTP connection refused: %d connections open (smtp.max_connections)",
                        len(self._connections))
            return _Refuse(REPLIES["too_many_connections"])
        return _FaxSMTP(
            self.handler,
            edge=self,
            data_size_limit=self.config.max_message_size,
            hostname=self._hostname,
            ident="faxbridge",
            tls_context=self.tls_context,
            timeout=self.config.idle_timeout,
            auth_required=self.config.auth.required,
            auth_require_tls=True,  # AUTH is neither offered nor accepted before STARTTLS
            command_call_limit=COMMAND_LIMITS,
            loop=asyncio.get_running_loop(),
        )

    # -- intake: the only work done before 250 ---------------------------------------------

    async def _store(self, mail: IncomingMail) -> str:
        """Spool file fsynced, then journaled; only then may the handler answer 250."""
        key = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
        path = self.spool_dir / f"{key}.eml"
        # Thread seam: a big mail's write would stall other sessions. Made durable below.
        await asyncio.to_thread(write_atomically, path, mail.content, sync=False)
        crash_point("smtp.after_spool")  # no 250 yet: the client sends it again
        try:
            self.mails.add(
                key=key,
                sender=mail.sender,
                report_to=mail.report_to,
                auth_user=mail.auth_user,
                peer=mail.peer,
                recipients=[(a.address, a.job_type.value, a.number) for a in mail.addressees],
                size=len(mail.content),
                spool_path=path,
                durable=False,
            )
            await self._make_durable(path)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        crash_point("smtp.before_250")  # stored and journaled, the client not told
        log.info("mail %s ← %s%s → %s (%d bytes)", key, mail.sender,
                 f" (user {mail.auth_user})" if mail.auth_user else "",
                 ", ".join(a.number or a.address for a in mail.addressees), len(mail.content))
        self._last_intake = time.monotonic()
        self._wake.set()
        return key

    async def _make_durable(self, path: Path) -> None:
        """The spooled file and its journal row on disk before the 250, off the loop (there it
        stalled every session). Where the spool and the journal share a file system (the default:
        both in state_dir) one syncfs covers file, folder and row: one flush of the disk's cache
        instead of three (bench.smtp_rate, intake alone: 0.57× → 0.9× of a bare server)."""
        # Thread seam: syncfs / fsync block for a millisecond or more.
        if self._one_file_system and await asyncio.to_thread(sync_file_system, self.spool_dir):
            return

        def fsync_spooled() -> None:
            fsync_file(path)
            fsync_dir(path.parent)

        await asyncio.to_thread(fsync_spooled)
        await self.journal.sync_async()

    # -- processing, after 250 -------------------------------------------------------------

    async def _process_spool(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                waiting = self.mails.spooled(spool_dir=self.spool_dir)  # this node's own
            except JournalError as exc:
                log.error("cannot read the spool index: %s; trying again in %.0f s", exc, SPOOL_TICK)
                waiting = []
            for mail in waiting:
                await self._yield_to_intake(mail)
                if self._stopping:
                    return
                await self._process_safely(mail)
            await self._wake.wait()

    async def _yield_to_intake(self, mail: SpooledMail) -> None:
        """Wait while mails keep arriving (INTAKE_QUIET), at most until ``mail`` is PROCESS_DEFER old."""
        received = mail.received_at.timestamp() if mail.received_at else 0.0
        while not self._stopping:
            quiet_for = time.monotonic() - self._last_intake
            overdue = received + PROCESS_DEFER - self.journal.clock()
            if quiet_for >= INTAKE_QUIET or overdue <= 0:
                return
            await asyncio.sleep(min(INTAKE_QUIET - quiet_for, overdue))

    async def _process_safely(self, mail: SpooledMail) -> None:
        """Process one mail; a failure leaves it spooled for the next tick, or ends it with a report."""
        try:
            await self._process(mail)
            return
        except FileNotFoundError as exc:
            if not self._source_path(mail).exists():
                # Nothing left to process: say so loudly, and tell the sender.
                log.error("mail %s: its stored copy %s is gone; it cannot be sent", mail.key, mail.spool_path)
                await self._give_up(mail, "the stored mail was lost on the fax server; please send it again")
                return
            error = str(exc)
        except (JournalError, OSError) as exc:
            # Passing trouble (journal busy, disk full): the mail stays spooled for the next tick.
            error = str(exc)
        except Exception as exc:  # a bug: keep it visible, keep the mail, keep serving
            log.exception("mail %s: processing failed", mail.key)
            if mail.attempts + 1 >= MAX_ATTEMPTS:
                await self._give_up(mail, "the mail could not be processed (an error in faxbridge);"
                                          " the administrator has the details")
                return
            error = f"{type(exc).__name__}: {exc}"
        log.error("mail %s: processing postponed (attempt %d): %s", mail.key, mail.attempts + 1, error)
        with contextlib.suppress(JournalError):
            self.mails.note_failure(mail.key, error)

    async def _give_up(self, mail: SpooledMail, sentence: str) -> None:
        archive = self.archive_dir / f"{mail.key}.eml"
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_move, mail.spool_path, archive)
        jobs = self.mails.job_ids(mail.key, SOURCE)  # any submitted before the failure still count
        problems = [("", sentence)]
        # The report first: once the mail is marked, nothing would send it after a crash.
        await self._send_rejection(dataclasses.replace(mail, problems=tuple(problems)),
                                   MailPlan(mail.subject, "", (), ()), anything_sent=bool(jobs))
        mail = self.mails.mark_processed(
            mail.key,
            state=MailState.REJECTED,
            subject=mail.subject,
            jobs=jobs,
            problems=problems,
            archive_path=archive if archive.exists() else None,
        )
        await self._update_mail(mail)

    async def _process(self, mail: SpooledMail) -> None:
        source = self._source_path(mail)
        addressees = [Addressee(a, JobType(t), n) for a, t, n in mail.recipients]
        work_dir = self.spool_dir / mail.key
        try:
            # Thread seam: MIME parsing, document checks and PDF merging read and write whole files.
            plan = await asyncio.to_thread(
                lambda: plan_mail(source.read_bytes(), addressees, self.settings, work_dir)
            )
        except OSError:
            raise  # the disk, not the mail: try again later
        except Exception:
            log.exception("mail %s: cannot be read", mail.key)
            plan = MailPlan("", "", (), (("", "the mail could not be read (an error in faxbridge);"
                                          " the administrator has the details"),))
        received = received_text(mail.received_at)
        jobs: list[int] = []
        problems = list(plan.problems)
        for part in plan.parts:
            meta = {
                "label": mail.sender,
                "mail": mail.key,
                "part": part.index,
                "sender": mail.sender,
                "report_to": mail.report_to,
                "subject": plan.subject,
                "message_id": plan.message_id,
                "received": received,
                "to": [a.address for a in part.addressees],
            }
            try:
                job = await self.services.outbound.submit(
                    part.request, source=SOURCE, source_ref=f"{mail.key}:{part.index}", meta=meta
                )
            except JournalError:
                raise
            except NumberError as exc:
                problems.extend((a.address, exc.reason) for a in part.addressees)
                continue
            except FaxbridgeError as exc:  # DuplicateJobError, nothing to send …
                problems.extend((a.address, str(exc)) for a in part.addressees)
                continue
            jobs.append(job.id)
        crash_point("smtp.after_submit")  # jobs journaled, the mail still 'spooled'
        archive = self.archive_dir / f"{mail.key}.eml"
        await asyncio.to_thread(_move, source, archive)
        if problems:
            # Queued before the mail leaves 'spooled': once it has, nothing processes it again,
            # and a crash in between would have lost the sender's report.
            await self._send_rejection(dataclasses.replace(mail, problems=tuple(problems)), plan,
                                       anything_sent=bool(jobs))
        mail = self.mails.mark_processed(
            mail.key,
            state=MailState.PROCESSED if jobs else MailState.REJECTED,
            subject=plan.subject,
            jobs=jobs,
            problems=problems,
            archive_path=archive,
        )
        crash_point("smtp.after_processed")
        refused = "; ".join(f"{recipient or 'mail'}: {problem}" for recipient, problem in problems)
        log.info("mail %s → %s%s", mail.key,
                 "job(s) " + ", ".join(map(str, jobs)) if jobs else "no job",
                 f"; refused: {refused}" if problems else "")
        await self._update_mail(mail)

    def _source_path(self, mail: SpooledMail) -> Path:
        """The spooled bytes, or their archived copy when a crash came after the move."""
        archived = self.archive_dir / f"{mail.key}.eml"
        if not mail.spool_path.exists() and archived.exists():
            return archived
        return mail.spool_path

    async def _send_rejection(self, mail: SpooledMail, plan: MailPlan, *, anything_sent: bool) -> None:
        if mail.report_to is None:
            log.info("mail %s: no report (sender %s did not pass authorisation)", mail.key, mail.sender)
            return
        if self.relay is None:
            return
        message = rejection_report(
            to=mail.report_to,
            report_from=self.config.report_from,
            subject=plan.subject,
            problems=mail.problems,
            notes=plan.notes,
            in_reply_to=plan.message_id,
            received=received_text(mail.received_at),
            anything_sent=anything_sent,
        )
        await self.relay.send(message, key=f"smtp-rejected:{mail.key}")

    # -- reports ---------------------------------------------------------------------------

    async def _report(self, job: Job) -> None:
        """Called by the outbound core once per final job (again if this raises)."""
        report_to = job.meta.get("report_to")
        if report_to and self.relay is not None:
            message = job_report(
                job,
                to=report_to,
                report_from=self.config.report_from,
                subject=job.meta.get("subject", ""),
                in_reply_to=job.meta.get("message_id", ""),
                received=job.meta.get("received", ""),
            )
            if self.config.report_pdf:  # the send report, while the spooled documents are still there
                pdf = await asyncio.to_thread(sendreport.render, job, self.journal)
                message.add_attachment(pdf, maintype="application", subtype="pdf",
                                       filename=f"fax-{job.id}-report.pdf")
            await self.relay.send(message, key=f"smtp-job:{job.id}")
        key = job.meta.get("mail")
        mail = self.mails.find(key) if key else None
        if mail is not None and mail.state is not MailState.SPOOLED:
            await self._update_mail(mail)

    async def _update_mail(self, mail: SpooledMail) -> None:
        """Rewrite NAME.status.csv beside the archived mail; once every job is final, clean up."""
        jobs = [job for job in (self.journal.jobs.find(i) for i in mail.jobs) if job is not None]
        csv_path = self.archive_dir / f"{mail.key}.status.csv"
        await asyncio.to_thread(write_atomically, csv_path, mail_status_csv(jobs, mail.problems))
        if all(job.state.is_final for job in jobs):
            # The documents were kept for re-sends (unknown outcomes); the .eml stays archived.
            await asyncio.to_thread(shutil.rmtree, self.spool_dir / mail.key, True)
            self.mails.mark_finished(mail.key)


_SPOOL_ENTRY = re.compile(r"\.?(\d{8}-\d{6}-[0-9a-f]{8})(?:\.eml)?(?:\.faxbridge-tmp)?")


def sweep_spool(spool_dir: Path, known: set[str]) -> int:
    """Remove what a crash left in the spool of mails the journal does not know — written, but
    killed before the row (and so before the 250: the sending server still has them). Only
    faxbridge's own names (KEY.eml, its temporary file, the KEY/ documents folder) are touched."""
    removed = set()
    for entry in spool_dir.iterdir():
        match = _SPOOL_ENTRY.fullmatch(entry.name)
        if match is None or match.group(1) in known:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.add(match.group(1))
    return len(removed)


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(config.tls.cert), str(config.tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("smtp.tls", f"cannot load the certificate and key: {exc}") from None
    return context


def _move(source: Path, target: Path) -> None:
    """Into the archive durably: rename (same file system) or copy, fsync, then remove."""
    if not source.exists():
        return  # moved before a crash
    try:
        os.replace(source, target)
    except OSError:
        write_atomically(target, source.read_bytes())
        source.unlink()
        fsync_dir(source.parent)
        return
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)
