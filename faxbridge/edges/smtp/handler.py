"""The aiosmtpd handler of the SMTP edge: who may send, to which addresses, how much — as SMTP replies.

aiosmtpd runs the protocol; this handler decides at each step and answers with a reply from
``REPLIES`` (every code faxbridge gives, in one table that a test checks against RFC 5321/3463):
MAIL checks the sender (allowed_senders or SMTP AUTH) and its rate, RCPT the domain (relay denied),
the number (ambiguous or premium: refused here, before any job exists) and the recipient count,
DATA stores the mail durably and only then says 250. Nothing here parses MIME or calls FAX.de.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiosmtpd.smtp import SMTP, Envelope, Session

from faxbridge.edges.smtp.auth import AuthMechanisms, Authenticator, LoginFailures
from faxbridge.edges.smtp.mail import Addressee
from faxbridge.edges.smtp.text import ascii_line
from faxbridge.config import SmtpConfig
from faxbridge.errors import NumberError, disk_full
from faxbridge.model import JobType

log = logging.getLogger(__name__)

# Every reply faxbridge itself gives: (code, enhanced status code RFC 3463, text). ``{}`` is filled in.
REPLIES: Final[dict[str, str]] = {
    "sender_ok": "250 2.1.0 Sender OK",
    "recipient_ok": "250 2.1.5 Recipient OK",
    "queued": "250 2.0.0 OK: queued as {}",
    "shutting_down": "421 4.3.2 Service shutting down, try again later",
    "too_many_connections": "421 4.7.0 Too many connections, try again later",
    "session_too_long": "421 4.4.2 Session too long, closing; try again",
    "data_idle": "421 4.4.2 No data for {} s, closing; try again",
    "data_too_slow": "421 4.4.2 DATA took longer than {} s, closing; try again",
    "rate_limited": "450 4.7.1 Too many mails from {}; try again later",
    "not_stored": "451 4.3.0 Mail not stored because of a local problem; try again later",
    "disk_full": "451 4.3.1 Mail system full; try again later",
    "error": "451 4.3.0 Local error; try again later",
    "too_many_recipients": "452 4.5.3 Too many recipients (at most {} per mail)",
    "line_too_long": "500 5.5.2 Line too long: at most {} characters per line (RFC 5321 4.5.3.1.6)",
    "auth_required": "530 5.7.0 Authentication required",
    "sender_denied": "550 5.7.1 Sender {} is not allowed to send faxes",
    "relay_denied": "550 5.7.1 Relaying denied: {} is not a fax domain here",
    "number_refused": "550 5.7.1 {}",
    "job_type_refused": "550 5.7.1 {} jobs cannot be sent by mail",
    "too_big": "552 5.3.4 Message too big: at most {} bytes",
    "number_unreadable": "553 5.1.3 {}",
    "bad_address": "553 5.1.3 Malformed address {}",
}


def reply(name: str, *args: object) -> str:
    """A reply from the table; arguments become one line of printable ASCII (RFC 5321 replies)."""
    return REPLIES[name].format(*(ascii_line(str(a), 200) for a in args))


class RateLimiter:
    """At most ``messages`` accepted mails per sender in any ``per`` seconds (a sliding window)."""

    def __init__(self, messages: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.messages = messages
        self.per = per
        self._clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    def allows(self, who: str) -> bool:
        return len(self._window(who)) < self.messages

    def record(self, who: str) -> None:
        self._window(who).append(self._clock())

    def _window(self, who: str) -> collections.deque[float]:
        now = self._clock()
        window = self._seen.setdefault(who, collections.deque())
        while window and window[0] <= now - self.per:
            window.popleft()
        if not window and len(self._seen) > 10_000:  # forget idle senders, bound memory
            self._seen = {k: v for k, v in self._seen.items() if v}
            self._seen[who] = window
        return window


class FaxEnvelope(Envelope):
    """aiosmtpd's envelope plus the recipients as faxbridge read them at RCPT time."""

    def __init__(self) -> None:
        super().__init__()
        self.addressees: list[Addressee] = []


@dataclass(frozen=True)
class IncomingMail:
    """What DATA hands to the spool: the mail and who it is from, as decided during the session."""

    sender: str
    report_to: str | None
    auth_user: str | None
    peer: str
    addressees: tuple[Addressee, ...]
    content: bytes


StoreMail = Callable[[IncomingMail], Awaitable[str]]  # returns the spool key; raises when not stored
CheckNumber = Callable[[str, str], str]  # (local part, "fax"|"sms") → E.164, or NumberError


class SmtpHandler(AuthMechanisms):
    """Hooks called by aiosmtpd.smtp.SMTP; each returns the reply string."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        check_number: CheckNumber,
        store: StoreMail,
        authenticator: Authenticator,
        login_failures: LoginFailures | None = None,  # None: counted in memory only
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.check_number = check_number
        self.store = store
        self.authenticator = authenticator
        self.login_failures = login_failures if login_failures is not None else LoginFailures(clock=clock)
        self.closing = False
        limit = config.rate_limit
        self.rate = RateLimiter(limit.messages, limit.per, clock) if limit is not None else None

    # -- identity --------------------------------------------------------------------------

    @staticmethod
    def login_of(session: Session) -> str | None:
        return session.auth_data if session.authenticated and isinstance(session.auth_data, str) else None

    def _rate_key(self, session: Session, sender: str) -> str:
        user = self.login_of(session)
        return f"user:{user}" if user else sender.lower()

    # -- hooks -----------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.closing:
            return reply("shutting_down")
        if self.login_of(session) is None and not self.config.sender_allowed(address):
            # With AUTH on offer, an unknown sender may still log in; otherwise it is simply refused.
            if self.authenticator and self.config.tls.enabled:
                log.info("MAIL from %s (%s) refused: not an allowed sender, not logged in", address, session.peer)
                return reply("auth_required")
            log.info("MAIL from %s (%s) refused: not an allowed sender", address, session.peer)
            return reply("sender_denied", address)
        if self.rate is not None and not self.rate.allows(self._rate_key(session, address)):
            log.warning("MAIL from %s refused: over the rate limit of %d per %.0f s",
                        address, self.rate.messages, self.rate.per)
            return reply("rate_limited", address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply("sender_ok")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.closing:
            return reply("shutting_down")
        assert isinstance(envelope, FaxEnvelope)
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return reply("bad_address", address)
        job_type = self.config.job_type_for(domain)
        if job_type is None:
            log.info("RCPT %s from %s refused: relaying denied", address, envelope.mail_from)
            return reply("relay_denied", domain)
        if job_type is JobType.EMAIL:
            return reply("job_type_refused", job_type.value)
        number = ""
        if job_type.dials_numbers:
            try:
                number = self.check_number(local, job_type.value)
            except NumberError as exc:
                log.info("RCPT %s from %s refused: %s", address, envelope.mail_from, exc.reason)
                # "may not be dialled" is policy (550 5.7.1); "cannot be read" is the mailbox
                # name (553 5.1.3)
                policy = exc.refused
                text = f"{local}: {exc.reason}"
                return reply("number_refused" if policy else "number_unreadable", text)
        addressee = Addressee(address, job_type, number)
        if any(a.job_type is job_type and a.number == number and (number or a.address == address)
               for a in envelope.addressees):
            return reply("recipient_ok")  # the same number twice: one fax
        if len(envelope.addressees) >= self.config.max_recipients:
            return reply("too_many_recipients", self.config.max_recipients)
        envelope.addressees.append(addressee)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply("recipient_ok")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.closing:
            return reply("shutting_down")
        assert isinstance(envelope, FaxEnvelope)
        sender = envelope.mail_from or ""
        user = self.login_of(session)
        # Reports go only to a sender that passed authorisation (no backscatter to forged addresses).
        authorised = user is not None or self.config.sender_allowed(sender)
        accepted = IncomingMail(
            sender=sender,
            report_to=sender if authorised else None,
            auth_user=user,
            peer=_peer(session),
            addressees=tuple(envelope.addressees),
            content=envelope.original_content or b"",
        )
        try:
            key = await self.store(accepted)
        except Exception as exc:
            # The client retries on 451; paths and exception text stay in our log only.
            if disk_full(exc):  # a passing state, not a bug: one line, no traceback
                log.warning("mail from %s not stored: the disk is full (%s); answered 451 4.3.1,"
                            " the sending server retries", sender, exc)
                return reply("disk_full")
            log.exception("mail from %s not stored; answered 451", sender)
            return reply("not_stored")
        if self.rate is not None:
            self.rate.record(self._rate_key(session, sender))
        return reply("queued", key)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return reply("error")


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer or "")
