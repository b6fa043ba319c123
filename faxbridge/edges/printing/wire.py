"""The hand-over between the CUPS backend and the daemon: one print job per connection.

Backend → daemon: ``FAXBRIDGE-PRINT 1\\n``, one line of JSON (the job's CUPS arguments), then the
document's bytes until the backend shuts its side down. Daemon → backend: one line of JSON,
``{"status": "ok" | "refused" | "retry", "message": "…"}``, sent only once the job is journaled
(ok), or kept in failed/ (refused). Standard library only: the backend imports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

MAGIC = b"FAXBRIDGE-PRINT 1\n"
MAX_HEADER = 64 * 1024
OK, REFUSED, RETRY = "ok", "refused", "retry"


@dataclass(frozen=True)
class PrintHeader:
    """What CUPS told the backend about the job (backend(7): job-id user title copies options)."""

    job: str
    user: str
    title: str
    copies: str = "1"
    options: str = ""
    printer: str = ""
    content_type: str = ""

    def encode(self) -> bytes:
        return MAGIC + json.dumps(asdict(self), ensure_ascii=True).encode("ascii") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> PrintHeader:
        data: Any = json.loads(line.decode("utf-8"))
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("job", "user", "title")):
            raise ValueError("the print job's header lacks job, user or title")
        return cls(**{k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Reply:
    status: str
    message: str

    def encode(self) -> bytes:
        return json.dumps({"status": self.status, "message": self.message}, ensure_ascii=True).encode("ascii") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Reply:
        data: Any = json.loads(line.decode("utf-8"))
        status = data.get("status") if isinstance(data, dict) else None
        if status not in (OK, REFUSED, RETRY):
            raise ValueError(f"unexpected reply {line[:80]!r}")
        return cls(status, str(data.get("message", "")))
