"""Outgoing mail through ``smtp.relay``: a durable queue, delivered in the background, retried.

Any edge that mails someone (SMTP reports, received faxes) does::

    relay = relay_for(services)          # None when smtp.relay is not configured
    await relay.send(message, key="report:42")

``send`` returns once the message is on disk (fsynced) and in the journal's ``mail_outbox`` — it
never waits for the relay. A background delivery (woken by ``send``, and a periodic scheduler job
for retries) hands due messages to the relay; a relay that is down or answers 4xx is tried again
with exponential backoff, a 5xx answer ends the attempt (logged, never bounced back to anyone).
Messages survive restarts. ``key`` makes ``send`` idempotent for callers that may run twice.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import hashlib
import logging
import secrets
import smtplib
import ssl
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from faxbridge.fsutil import write_atomically
from faxbridge.config import RelayConfig
from faxbridge.crashpoints import crash_point
from faxbridge.errors import JournalError, disk_full
from faxbridge.journal import Journal
from faxbridge.journal.mail import OutboxTable, OutgoingMail

log = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"  # inside state_dir


@dataclass(frozen=True)
class RelaySettings:
    initial_delay: float = 60.0  # first retry after this, doubling each time …
    max_delay: float = 3600.0  # … up to this
    give_up_after: float = 5 * 86400.0  # like an MTA's queue lifetime; then the mail is 'failed'
    tick: float = 30.0  # how often the scheduler looks for due retries
    timeout: float = 30.0  # one SMTP conversation with the relay
    keep_sent: float = 7 * 86400.0  # sent mails stay in the journal this long
    # A mail being delivered is not taken by another process (daemon and CLI share the queue)
    # for this long; after a crash mid-conversation it is tried again once this has passed.
    lease: float = 600.0


DEFAULT_SETTINGS = RelaySettings()


class DeliveryError(Exception):
    """The relay did not take a message. ``permanent``: trying again cannot help (5xx)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Relay:
    """The one outgoing-mail queue of a daemon. Get it with ``relay_for(services)``."""

    def __init__(
        self,
        config: RelayConfig,
        journal: Journal,
        outbox_dir: Path,
        *,
        default_from: str,
        settings: RelaySettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.outbox = OutboxTable(journal)
        journal.register_table(self.outbox)
        self.outbox_dir = Path(outbox_dir)
        self.default_from = default_from
        self.settings = settings or DEFAULT_SETTINGS
        self._clock = clock
        self._users = 0
        self._scheduler: Any = None
        self._job_id = f"relay-{id(self)}"
        self._delivering: asyncio.Task[int] | None = None
        self._again = False

    # -- the API ---------------------------------------------------------------------------

    async def send(
        self,
        message: EmailMessage,
        *,
        key: str | None = None,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> OutgoingMail:
        """Queue ``message`` durably and return; delivery happens in the background.

        Envelope sender: ``sender``, else smtp.report_from. Recipients: ``recipients``, else the
        addresses in To, Cc and Bcc (Bcc is removed from the sent copy). The same ``key`` queues
        only once and returns the earlier entry.
        """
        if key is not None:
            existing = self.outbox.by_key(key)
            if existing is not None:
                return existing
        rcpt = list(recipients) if recipients is not None else _header_recipients(message)
        if not rcpt:
            raise ValueError("a mail without recipients cannot be sent")
        if "Bcc" in message:
            del message["Bcc"]
        if "Date" not in message:
            message["Date"] = email.utils.formatdate(localtime=True)
        if "Message-ID" not in message:
            domain = (sender or self.default_from).rpartition("@")[2] or None
            message["Message-ID"] = email.utils.make_msgid(domain=domain)
        if key is not None:
            # One file name per key: a crash between writing the file and journaling its row
            # leaves a file that the caller's next attempt (it runs again after a crash) writes
            # over, not one that nothing will ever know about.
            name = f"key-{hashlib.sha256(key.encode()).hexdigest()[:32]}.eml"
        else:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.eml"
        path = self.outbox_dir / name
        # Thread seam: rendering a message with attachments and the fsync'd write.
        await asyncio.to_thread(_write_message, path, message)
        crash_point("relay.after_write")
        row, created = self.outbox.add(
            key=key, path=path, mail_from=sender or self.default_from, rcpt_to=rcpt,
            subject=str(message.get("Subject", "")), now=self._clock(),
        )
        if not created and row.path != path:  # a twin raced us; keep the first
            await asyncio.to_thread(path.unlink, missing_ok=True)
        else:
            log.info("mail %d queued for %s: %s", row.id, ", ".join(rcpt), row.subject)
            self.kick()
        return row

    def kick(self) -> None:
        """Deliver due mails soon (in a background task), if the relay is running."""
        if self._users <= 0:
            return
        if self._delivering is not None and not self._delivering.done():
            self._again = True
            return
        self._delivering = asyncio.get_running_loop().create_task(
            self._deliver_loop(), name="relay-delivery"
        )

    async def _deliver_loop(self) -> int:
        delivered = 0
        while True:
            self._again = False
            delivered += await self.deliver_due()
            if not self._again:
                return delivered

    async def deliver_due(self) -> int:
        """Try every due message once; returns how many the relay took."""
        delivered = 0
        try:
            for mail in self.outbox.due(self._clock(), folder=self.outbox_dir):  # this node's own
                if await self._deliver(mail):
                    delivered += 1
        except JournalError as exc:
            # A full disk, or a PostgreSQL journal away for a moment: the mails stay queued (a
            # mail relayed but not marked sent goes once more).
            log.warning("relay: delivery waits, the journal cannot be %s: %s; trying again in %.0f s",
                        "written" if disk_full(exc) else "reached", exc, self.settings.tick)
        return delivered

    async def _deliver(self, mail: OutgoingMail) -> bool:
        if not self.outbox.claim(mail.id, self._clock(), lease=self.settings.lease):
            return False
        try:
            # Thread seam: smtplib is blocking; one conversation at a time is plenty for reports.
            await asyncio.to_thread(_smtp_send, self.config, mail, self.settings.timeout)
        except DeliveryError as exc:
            age = self._clock() - mail.created_at
            if exc.permanent or age >= self.settings.give_up_after:
                why = "refused" if exc.permanent else f"not delivered after {age / 3600:.0f} h"
                self.outbox.mark_failed(mail.id, str(exc))
                log.error("mail %d to %s %s by the relay: %s", mail.id, ", ".join(mail.rcpt_to), why, exc)
                return False
            delay = min(self.settings.max_delay, self.settings.initial_delay * 2 ** min(mail.attempts, 20))
            self.outbox.mark_retry(mail.id, str(exc), self._clock() + delay)
            log.warning("mail %d to %s: relay %s:%d: %s — retry in %.0f s",
                        mail.id, ", ".join(mail.rcpt_to), self.config.host, self.config.port, exc, delay)
            return False
        crash_point("relay.after_delivery")  # relayed, not yet journaled as sent
        self.outbox.mark_sent(mail.id)
        log.info("mail %d ✓ relayed to %s", mail.id, ", ".join(mail.rcpt_to))
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, scheduler: Any = None) -> None:
        """Begin background delivery (idempotent; each start() needs its own close())."""
        self._users += 1
        if self._users > 1:
            return
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        if scheduler is not None:
            self._scheduler = scheduler
            scheduler.add_job(
                self._tick, "interval", seconds=self.settings.tick, id=self._job_id,
                replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=1,
            )
        self.kick()

    async def _tick(self) -> None:
        self.kick()
        try:
            self._purge()
        except JournalError as exc:  # a full disk, or the journal away for a moment
            log.info("relay: old sent mails are forgotten later: %s", exc)

    def _purge(self) -> None:
        for path in self.outbox.purge_sent(self._clock() - self.settings.keep_sent):
            path.unlink(missing_ok=True)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop background delivery once the last user closes; queued mail waits for the next start."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        if self._scheduler is not None:
            try:
                self._scheduler.remove_job(self._job_id)
            except Exception:  # the scheduler may be shut down already
                pass
            self._scheduler = None
        task = self._delivering
        if task is not None and not task.done():
            # A conversation in flight finishes (its thread cannot be cancelled) or is retried later.
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()


# --------------------------------------------------------------------------------------------------
# One Relay per daemon


_relays: weakref.WeakKeyDictionary[Any, Relay] = weakref.WeakKeyDictionary()


def relay_for(services: Any, *, settings: RelaySettings | None = None) -> Relay | None:
    """The daemon's Relay (created on first use), or None when smtp.relay is not configured.

    Every edge gets the same object, so one queue is delivered by one loop. Call ``start(scheduler)``
    when the edge starts and ``close()`` when it closes.
    """
    smtp = services.config.smtp
    if smtp is None or smtp.relay is None:
        return None
    relay = _relays.get(services)
    if relay is None:
        relay = Relay(
            smtp.relay,
            services.journal,
            Path(services.config.state_dir) / OUTBOX_DIR,
            default_from=smtp.report_from,
            settings=settings,
        )
        _relays[services] = relay
    return relay


# --------------------------------------------------------------------------------------------------
# The blocking part (worker threads only)


def _header_recipients(message: EmailMessage) -> list[str]:
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return [address for _, address in email.utils.getaddresses(fields) if address]


def _write_message(path: Path, message: EmailMessage) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, message.as_bytes(policy=email.policy.SMTP))


def _smtp_send(config: RelayConfig, mail: OutgoingMail, timeout: float) -> None:
    """One SMTP conversation. Raises DeliveryError (permanent for 5xx answers)."""
    try:
        data = mail.path.read_bytes()
    except OSError as exc:
        raise DeliveryError(f"the queued message cannot be read ({exc.strerror})", permanent=True) from None
    try:
        with smtplib.SMTP(config.host, config.port, timeout=timeout) as client:
            client.ehlo_or_helo_if_needed()
            if config.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if config.username and config.password is not None:
                client.login(config.username, config.password.reveal())
            refused = client.sendmail(mail.mail_from, list(mail.rcpt_to), data)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryError(_answer("recipients refused", exc.recipients), permanent=all(c >= 500 for c in codes)) from None
    except smtplib.SMTPAuthenticationError as exc:
        # A wrong password is a configuration problem the operator fixes: keep the mail meanwhile.
        raise DeliveryError(f"login as {config.username} refused: {exc.smtp_code}", permanent=False) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        # The relay judged this message (sender, content, size): 5xx will not change on retry.
        raise DeliveryError(_code_text(exc), permanent=500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPResponseException as exc:  # greeting, HELO, STARTTLS: the relay's state
        raise DeliveryError(_code_text(exc), permanent=False) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"relay does not support {exc}", permanent=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from None
    if refused:
        log.error("mail %d: the relay refused some recipients: %s", mail.id, _answer("", refused))


def _code_text(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    return f"{exc.smtp_code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"


def _answer(prefix: str, refused: dict[str, tuple[int, bytes]]) -> str:
    parts = [f"{rcpt}: {code} {msg.decode('utf-8', 'replace')}" for rcpt, (code, msg) in refused.items()]
    return (prefix + ": " if prefix else "") + "; ".join(parts)
