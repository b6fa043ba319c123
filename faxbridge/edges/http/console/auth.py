"""Console authentication: scrypt password hashes, signed session cookies, CSRF tokens, login throttling.

A session is a cookie holding ``{"u": user, "x": expiry, "c": csrf}`` signed with HMAC-SHA256 under
a key kept in the state dir (so sessions survive a restart and nothing is stored per session). The
user's role is read from the config on every request, never from the cookie: removing a user or
lowering a role takes effect at once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

# scrypt's interactive-login parameters (RFC 7914 §2 suggests N=2^14, r=8, p=1): ~50 ms, 16 MB.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024

COOKIE = "faxbridge_console"
KEY_FILE = "console-session.key"

# Login throttling: this many failures within the window lock the user name (or the peer) out.
FAILURE_WINDOW = 900.0
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_PEER = 20


def hash_password(password: str) -> str:
    """A ``$scrypt$n=…,r=…,p=…$SALT$HASH`` line for the config's ``password_hash``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"$scrypt$n={_N},r={_R},p={_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Blocking (tens of milliseconds): call it in a worker thread."""
    try:
        _, scheme, params, salt, digest = hashed.split("$")
        fields = dict(item.split("=") for item in params.split(","))
        n, r, p = int(fields["n"]), int(fields["r"]), int(fields["p"])
        expected = base64.b64decode(digest)
        salt_bytes = base64.b64decode(salt)
    except (ValueError, KeyError):
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt_bytes, n=n, r=r, p=p, maxmem=_MAXMEM,
                         dklen=len(expected))
    return hmac.compare_digest(got, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user name is unknown, so the answer takes as long as for a known one."""
    return hash_password(secrets.token_hex(16))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def load_key(state_dir: Path) -> bytes:
    """The session signing key, made on first use (0600, beside the journal)."""
    path = Path(state_dir) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(partial, path)  # two starts at once: the first key wins, both use it
    except FileExistsError:
        pass
    finally:
        os.unlink(partial)
    return path.read_bytes()


@dataclass(frozen=True)
class Session:
    user: str | None  # None: not logged in yet (the login form's CSRF token still needs a session)
    expires: float
    csrf: str


class SessionCodec:
    """Signs sessions into cookie values and checks them back."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def new(self, user: str | None, now: float, lifetime: float) -> Session:
        return Session(user, now + lifetime, secrets.token_urlsafe(24))

    def dump(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(
            json.dumps({"u": session.user, "x": session.expires, "c": session.csrf}).encode()
        ).decode("ascii")
        return f"{payload}.{self._sign(payload)}"

    def load(self, value: str, now: float) -> Session | None:
        payload, _, signature = value.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload))
            session = Session(data["u"], float(data["x"]), str(data["c"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).hexdigest()
