"""The record of every SOAP call the simulator received: what was asked, what was answered, what failed.

Tests read it from Python (exact bytes of every document) or over HTTP as JSON (bytes summarised, the
password masked). The password is kept so a test can check what a client sent, but wrapped in ``Secret``
so that printing a record never shows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Bytes up to this size are included verbatim (base64) in the JSON view; larger ones only as hash + size.
JSON_INLINE_BYTES = 4096


class Secret(str):
    """A password as received: compares equal to the plain text, but prints, formats and reprs as ***."""

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Call:
    """One request. ``result`` is the operation's result code, None when no answer carried one."""

    seq: int
    operation: str
    params: dict[str, Any] = field(repr=False)
    result: int | None
    outs: dict[str, Any] = field(repr=False)
    http_status: int | None  # None: the connection was dropped without an answer
    fault: str | None  # the injected fault kind, or "bad_request" for an unreadable request
    processed: bool  # the operation ran (a SendJob created its job, a DeleteReceived deleted)
    started_at: dt.datetime
    finished_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "operation": self.operation,
            "params": {k: _json_value(k, v) for k, v in self.params.items()},
            "result": self.result,
            "outs": {k: _json_value(k, v) for k, v in self.outs.items()},
            "http_status": self.http_status,
            "fault": self.fault,
            "processed": self.processed,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }


def _json_value(key: str, value: Any) -> Any:
    if isinstance(value, Secret) or key == "Password":
        return "***"
    if isinstance(value, bytes):
        summary: dict[str, Any] = {"sha256": hashlib.sha256(value).hexdigest(), "size": len(value)}
        if len(value) <= JSON_INLINE_BYTES:
            summary["base64"] = base64.b64encode(value).decode("ascii")
        return summary
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class Record:
    """Append-only, thread-safe list of calls; with a ``limit`` only the latest calls are kept.

    The record holds every document's bytes, so a long-running simulator (the CLI) sets a limit; tests
    usually keep everything.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self._calls: deque[Call] = deque(maxlen=limit)
        self._seq = 0
        self._lock = threading.Lock()

    def append(self, **fields: Any) -> Call:
        with self._lock:
            self._seq += 1  # keeps counting when old calls fall out or the record is cleared
            call = Call(seq=self._seq, **fields)
            self._calls.append(call)
            return call

    def calls(self, operation: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if operation is None or c.operation == operation]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
