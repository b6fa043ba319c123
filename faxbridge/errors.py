"""The one exception hierarchy: every failure faxbridge reports derives from FaxbridgeError."""

from __future__ import annotations

import errno


class FaxbridgeError(Exception):
    """Base class; its str() is a human sentence safe to show to a user (no secrets)."""


class ConfigError(FaxbridgeError):
    """The configuration is invalid; the message names the key path."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class NumberError(FaxbridgeError):
    """A recipient number that must not be dialled, or cannot be read unambiguously.

    ``refused``: the number was understood, and policy forbids it (premium, emergency, a country
    not allowed …); otherwise it could not be read as exactly one number.
    """

    def __init__(self, raw: str, reason: str, *, refused: bool = False) -> None:
        self.raw = raw
        self.reason = reason
        self.refused = refused
        super().__init__(f"{raw!r}: {reason}")


class DocumentError(FaxbridgeError):
    """A document that must not be sent (empty, disguised, corrupt, too large …).

    ``action``: what the sender can do about it, when it is more than "check the document".
    """

    def __init__(self, message: str, action: str = "") -> None:
        super().__init__(message)
        self.action = action


class DuplicateJobError(FaxbridgeError):
    """The same documents to the same recipients were already submitted recently."""

    def __init__(self, existing_job_id: int, message: str) -> None:
        self.existing_job_id = existing_job_id
        super().__init__(message)


class JournalError(FaxbridgeError):
    """The journal cannot be read or written (disk full, locked, corrupt)."""


class ProviderError(FaxbridgeError):
    """A FAX.de call failed: a result code from the spec, or a transport/SOAP failure.

    ``retryable``: trying again later may succeed.
    ``outcome_unknown``: the request may have reached the provider (read timeout,
    connection dropped after sending) — a SendJob must then not be re-sent blindly.
    ``stops_account``: wrong password, unknown or locked account — every further call
    would fail the same way, so all sending pauses.
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        code: int | None = None,
        name: str = "",
        retryable: bool = False,
        outcome_unknown: bool = False,
        stops_account: bool = False,
        action: str = "",
    ) -> None:
        self.operation = operation
        self.code = code
        self.name = name
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.stops_account = stops_account
        self.action = action
        prefix = f"FAX.de {operation}"
        if code is not None:
            prefix += f" result {code}"
        super().__init__(f"{prefix}: {message}")
        self.sentence = message


# errno values that mean "no room to write": a full file system, or the user's quota spent.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # "database or disk is full" (sqlite3 result code SQLITE_FULL)


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from, means the disk (or quota) is full.

    A full disk is a passing state, not a bug: each edge answers it in its own words (SMTP 451
    4.3.1, the file left in its hotfolder, the fax left on FAX.de) and logs one line, no traceback.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            return True
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
