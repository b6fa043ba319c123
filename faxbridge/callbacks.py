"""FAX.de's status callback (the SendJob option STATURL): how a lost JobId is found again.

A SendJob whose answer was lost leaves a job 'unknown' (or 'confirmed' after a -77): FAX.de has it, we
do not know its JobId. When `faxde.callback_url` names an address of the daemon's HTTP server that
FAX.de can reach, every SendJob carries a STATURL with the job's own id and a token, and FAX.de calls it
when the job has ended (FAXDE-API.md, "Parameter Options": $JID, $STAT, $RCV, $MSGGS …). The call tells
us the JobId, so the job is polled and reported like any other.

The token is an HMAC of the job's id and content key under a key kept in state_dir: the same for every
re-send of a job (FAX.de's duplicate check compares options too), unguessable, bound to that one job (a
journal restored from a backup reuses ids, never id and content together), nothing to store per job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from faxbridge.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "callback.key"
STATURL_LIMIT = 128  # FAXDE-API.md: "The length of the URL is limited to 128 chars."
# What FAX.de fills in; short names keep the URL within the limit.
_QUERY = "j=$JID&s=$STAT&r=$RCV&p=$MSGGS"


class CallbackTokens:
    """Builds each job's STATURL and checks the token a callback brings."""

    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")

    @classmethod
    def load(cls, state_dir: Path, base_url: str) -> CallbackTokens:
        """The key from state_dir/callback.key, made (and fsynced) the first time."""
        path = Path(state_dir) / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            part = path.with_name(f".{KEY_FILE}.part")
            descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(descriptor, key)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(part, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        if len(key) < 16:
            raise ConfigError("faxde.callback_url", f"{path} is too short to be a key; remove it")
        return cls(key, base_url)

    def token(self, job_id: int, content_key: str) -> str:
        material = f"faxbridge-job:{job_id}:{content_key}".encode()
        digest = hmac.new(self._key, material, hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode().lower()  # 80 bits: 16 characters

    def url(self, job_id: int, content_key: str) -> str:
        """The STATURL value for a job, FAX.de's placeholders included."""
        url = f"{self.base_url}/{job_id}/{self.token(job_id, content_key)}?{_QUERY}"
        if len(url) > STATURL_LIMIT:
            raise ConfigError(
                "faxde.callback_url",
                f"too long: with a job's id, token and placeholders the STATURL has {len(url)} "
                f"characters, FAX.de takes {STATURL_LIMIT}",
            )
        return url

    def check(self, job_id: int, content_key: str, token: str) -> bool:
        return hmac.compare_digest(self.token(job_id, content_key), token)


def check_base_url(value: str) -> str | None:
    """What is wrong with a configured callback_url (None: fine)."""
    if not value.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(ch.isspace() for ch in value) or any(ch in value for ch in ";?#$"):
        return "must not contain spaces, ';', '?', '#' or '$'"
    room = STATURL_LIMIT - len(f"/{10**9}/{'x' * 16}?{_QUERY}")
    if len(value.rstrip("/")) > room:
        return f"at most {room} characters, so that the whole STATURL stays within FAX.de's {STATURL_LIMIT}"
    return None


def parse_callback(query: Mapping[str, str]) -> tuple[int, str, str] | None:
    """(FAX.de JobId, result, recipient) from a callback's query; None when it is not one."""
    try:
        faxde_job_id = int(query.get("j", ""))
    except ValueError:
        return None
    if faxde_job_id <= 0:
        return None
    return faxde_job_id, query.get("s", "")[:40], query.get("r", "")[:80]
