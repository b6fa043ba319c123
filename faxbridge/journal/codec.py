"""Turning SendRequest values into journal JSON and back (only the journal uses this)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

from faxbridge.model import Document, JobType, Recipient, SendRequest


def request_to_json(request: SendRequest) -> str:
    return json.dumps(
        {
            "job_type": request.job_type.value,
            "recipients": [[r.address, r.reference] for r in request.recipients],
            "documents": [[d.filename, str(d.path), *map(str, d.sources)] for d in request.documents],
            "text": request.text,
            "send_at": request.send_at.isoformat() if request.send_at else None,
            "options": [list(pair) for pair in request.options],
        },
        ensure_ascii=False,
    )


# A job's request never changes once journaled, and SendRequest is immutable: each job row is
# read several times on its way (submit, send, record), and parsing the JSON was most of the
# cost of reading one (issue 7, bench.throughput).
@functools.lru_cache(maxsize=4096)
def request_from_json(text: str) -> SendRequest:
    data: dict[str, Any] = json.loads(text)
    return SendRequest(
        job_type=JobType(data["job_type"]),
        recipients=tuple(Recipient(a, r) for a, r in data["recipients"]),
        documents=tuple(Document(d[0], Path(d[1]), tuple(map(Path, d[2:]))) for d in data["documents"]),
        text=data["text"],
        send_at=dt.datetime.fromisoformat(data["send_at"]) if data["send_at"] else None,
        options=tuple((k, v) for k, v in data["options"]),
    )


# "No limit" for a LIMIT parameter on both backends (SQLite's -1 is an error in PostgreSQL).
NO_LIMIT = 2**62


def to_datetime(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def run_script(db: Any, script: str) -> None:
    """Statement by statement: executescript() would COMMIT the caller's open transaction."""
    for statement in script.split(";"):
        lines = [line.split("--")[0] for line in statement.splitlines()]
        if "".join(lines).strip():
            db.execute("\n".join(lines))
