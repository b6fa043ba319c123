"""SMTP AUTH for the SMTP edge: passlib-compatible PBKDF2 hashes checked off the event loop, and
aiosmtpd's log kept free of credentials.

Hashes have passlib's format ``$pbkdf2-sha256$ROUNDS$SALT$CHECKSUM`` (salt and checksum in passlib's
"adapted base64": ``.`` for ``+``, no padding), so existing passlib hashes work and
``python -m faxbridge.edges.smtp.auth`` makes new ones without passlib.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import getpass
import hashlib
import hmac
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from faxbridge.errors import JournalError

if TYPE_CHECKING:
    from faxbridge.journal.logins import LoginFailuresTable

log = logging.getLogger(__name__)

DEFAULT_ROUNDS: Final = 29000  # passlib's default for pbkdf2_sha256
_DIGESTS: Final = {"pbkdf2-sha256": ("sha256", 32), "pbkdf2-sha512": ("sha512", 64)}
# Checked for an unknown user, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH: Final = "$pbkdf2-sha256$29000$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43
FAILURE_DELAY: Final = 0.5  # seconds before "535": slows guessing down (AUTH is also limited per connection)


def _ab64_decode(text: str) -> bytes:
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _ab64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=").replace("+", ".")


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS, salt: bytes | None = None) -> str:
    """A passlib-compatible ``$pbkdf2-sha256$…`` hash of ``password``."""
    salt = os.urandom(16) if salt is None else salt
    checksum = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, rounds)
    return f"$pbkdf2-sha256${rounds}${_ab64_encode(salt)}${_ab64_encode(checksum)}"


def verify_password(password: bytes, hashed: str) -> bool:
    """True if ``password`` matches ``hashed``; False for a wrong password or a malformed hash.

    Takes as long as the hash's rounds say (tens of ms): call it in a worker thread.
    """
    try:
        _, scheme, rounds_text, salt_text, checksum_text = hashed.split("$")
        digest, size = _DIGESTS[scheme]
        rounds = int(rounds_text)
        salt = _ab64_decode(salt_text)
        checksum = _ab64_decode(checksum_text)
    except (ValueError, KeyError, binascii.Error):
        return False
    if len(checksum) != size or not 1 <= rounds <= 10_000_000:
        return False
    derived = hashlib.pbkdf2_hmac(digest, password, salt, rounds)
    return hmac.compare_digest(derived, checksum)


class Authenticator:
    """Checks SMTP AUTH credentials against the configured users (``smtp.auth``)."""

    def __init__(self, users: Mapping[str, Any]) -> None:
        # name → hash; values are config Secrets (their reveal() gives the hash) or plain strings.
        self._users = {
            name: (value.reveal() if hasattr(value, "reveal") else str(value))
            for name, value in users.items()
        }

    def __bool__(self) -> bool:
        return bool(self._users)

    async def check(self, login: bytes, password: bytes) -> str | None:
        """The user name if the credentials are right, else None (after a short delay)."""
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        hashed = self._users.get(name)
        # Thread seam: PBKDF2 takes tens of milliseconds on purpose.
        ok = await asyncio.to_thread(verify_password, password, hashed or _DUMMY_HASH)
        if ok and hashed is not None:
            return name
        await asyncio.sleep(FAILURE_DELAY)
        return None


# Failed logins from one client address before AUTH is refused to it for a while: the per-
# connection limit alone let a guesser open connection after connection (and kept PBKDF2 busy).
MAX_FAILURES: Final = 10
FAILURE_WINDOW: Final = 900.0  # seconds
TOO_MANY_FAILURES: Final = "454 4.7.0 Too many failed logins from your address; try again later"


class LoginFailures:
    """Failed AUTH attempts per client address in a sliding window; bounded memory.

    With a ``store`` (the journal's table) the failures are also written there and read back at
    start, so a restart does not wipe a lockout; ``clock`` must then be wall-clock time.
    """

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 clock: Callable[[], float] = time.monotonic,
                 store: LoginFailuresTable | None = None) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._store = store
        self._seen: dict[str, collections.deque[float]] = {}
        if store is not None:
            for address, at in store.since(clock() - window):
                self._seen.setdefault(address, collections.deque()).append(at)

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def record(self, address: str) -> None:
        now = self._clock()
        self._recent(address).append(now)
        if self._store is not None:
            try:
                self._store.add(address, now, forget_before=now - self.window)
            except JournalError as exc:  # still counted in memory; only a restart would forget it
                log.warning("failed login from %s not journaled: %s", address, exc)

    def _recent(self, address: str) -> collections.deque[float]:
        now = self._clock()
        recent = self._seen.setdefault(address, collections.deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent and len(self._seen) > 10_000:  # forget quiet addresses
            self._seen = {k: v for k, v in self._seen.items() if v}
            self._seen[address] = recent
        return recent


class AuthMechanisms:
    """AUTH PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login) for an aiosmtpd handler.

    aiosmtpd's built-in mechanisms call a synchronous authenticator on the event loop; these do
    the same exchange but check the password in a worker thread. The credentials never reach a
    log line: failures are logged with the user name only.
    """

    authenticator: Authenticator
    login_failures: LoginFailures | None = None

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                await server.push("501 5.5.2 Cannot decode the AUTH data")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        try:
            _authzid, login, password = blob.split(b"\x00")
        except ValueError:
            await server.push("501 5.5.2 Cannot split the AUTH data")
            return AuthResult(success=False, handled=True)
        return await self._result(server, login, password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth(SMTP.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1].encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                await server.push("501 5.5.2 Cannot decode the AUTH data")
                return AuthResult(success=False, handled=True)
        password = await server.challenge_auth(SMTP.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._result(server, login, password)

    async def _result(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        peer = server.session.peer if server.session else "?"
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        failures = self.login_failures
        if failures is not None and failures.blocked(address):
            # Not even checked: the right password too waits until the window has passed.
            log.warning("AUTH refused for user %r from %s: %d failed logins from there in %.0f s",
                        login.decode("utf-8", "replace")[:64], peer, failures.limit, failures.window)
            return AuthResult(success=False, handled=False, message=TOO_MANY_FAILURES)
        user = await self.authenticator.check(login, password)
        if user is None:
            if failures is not None:
                failures.record(address)
            log.warning("AUTH failed for user %r from %s", login.decode("utf-8", "replace")[:64], peer)
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
        log.info("AUTH user %s from %s", user, peer)
        return AuthResult(success=True, auth_data=user)


# aiosmtpd ("mail.log") log records that may carry credentials or only noise about them.
_DROPPED_TEMPLATES: Final = frozenset(
    {
        "%r can't decode base64: %s",  # the raw AUTH line a client sent, possibly a password
        "%r >> %r",  # re-checked below: only AUTH continuation lines are dropped
        "Session.login_data is deprecated and will be removed in version 2.0",
    }
)


class AuthLogFilter(logging.Filter):
    """Keeps AUTH secrets out of aiosmtpd's log whatever its level (it logs AUTH data at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else ""
        if template not in _DROPPED_TEMPLATES:
            return True
        if template == "%r >> %r":
            # aiosmtpd masks "AUTH PLAIN <data>" itself; a challenge answer is logged this way
            # only with log_client_response, which faxbridge never sets — drop it to be sure.
            line = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else b""
            return not (isinstance(line, bytes) and line.upper().startswith(b"AUTH"))
        return False


def install_log_filter() -> None:
    """Attach AuthLogFilter to aiosmtpd's logger once."""
    logger = logging.getLogger("mail.log")
    if not any(isinstance(f, AuthLogFilter) for f in logger.filters):
        logger.addFilter(AuthLogFilter())


def main(argv: list[str] | None = None) -> int:
    """Print a hash for smtp.auth.users or a password_file line: ``python -m faxbridge.edges.smtp.auth [USER]``."""
    args = sys.argv[1:] if argv is None else argv
    password = getpass.getpass("password: ")
    if not password or password != getpass.getpass("again: "):
        print("the passwords are empty or differ", file=sys.stderr)
        return 1
    hashed = hash_password(password)
    print(f"{args[0]}:{hashed}" if args else hashed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
