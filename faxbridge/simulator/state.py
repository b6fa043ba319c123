"""What the simulated provider remembers — jobs, inbox, next ids — and how it survives a restart.

With a state directory, every change is written at once: ``state.json`` (replaced atomically, so a crash
leaves the old or the new file, never half of one) and one ``faxes/<FaxId>.tif`` per inbound fax. Without
one, the state lives in memory for the lifetime of the Simulator object.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faxbridge.model import InboundFax

# First ids handed out. FaxId is an xsd:long: the simulator starts above 2**31 on purpose, so a client that
# keeps it in a 32-bit integer fails in tests rather than in production.
FIRST_JOB_ID = 881000
FIRST_FAX_ID = 3_000_000_001

_STATE_FILE = "state.json"
_FAX_DIR = "faxes"


class Phase(enum.StrEnum):
    PENDING = "pending"  # accepted, not yet finished (in progress, or scheduled for later)
    DONE = "done"  # transmitted; per-recipient results are filled in
    CANCELLED = "cancelled"  # stopped by CancelJob before it finished


@dataclass
class JobRecipient:
    """A valid recipient of a job and, once the job is over, what happened to it."""

    address: str  # as the client wrote it (numbers normalised to +…)
    reference: str = ""
    result: str = ""  # "OK", "Busy", … ; empty while pending
    remote_id: str = ""
    pages: int = 0
    duration: str = ""  # seconds, fax only


@dataclass
class SimJob:
    """A job the simulator accepted with SendJob."""

    job_id: int
    account: str
    job_type: int
    recipients: list[JobRecipient]
    page_count: int
    text: str
    filenames: list[str]
    file_sha256: list[str]
    options: str
    fingerprint: str  # what the duplicate check (-77) compares
    created_at: dt.datetime
    send_at: dt.datetime | None  # in the future: scheduled
    polls_needed: int  # JobStatus answers 6 this many times before the job finishes
    polls: int = 0
    phase: Phase = Phase.PENDING
    finished_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "send_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimJob:
        data = dict(data)
        data["recipients"] = [JobRecipient(**r) for r in data["recipients"]]
        for key in ("created_at", "send_at", "finished_at"):
            data[key] = dt.datetime.fromisoformat(data[key]) if data[key] else None
        data["phase"] = Phase(data["phase"])
        return cls(**data)


@dataclass
class State:
    jobs: dict[int, SimJob] = field(default_factory=dict)
    inbox: dict[int, InboundFax] = field(default_factory=dict)
    next_job_id: int = FIRST_JOB_ID
    next_fax_id: int = FIRST_FAX_ID


class Store:
    """Reads and writes a State under a directory; with ``directory=None`` it does nothing."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            (directory / _FAX_DIR).mkdir(parents=True, exist_ok=True)

    def load(self) -> State:
        if self.directory is None or not (self.directory / _STATE_FILE).exists():
            return State()
        data = json.loads((self.directory / _STATE_FILE).read_text("utf-8"))
        state = State(next_job_id=data["next_job_id"], next_fax_id=data["next_fax_id"])
        for job in data["jobs"]:
            loaded = SimJob.from_json(job)
            state.jobs[loaded.job_id] = loaded
        for meta in data["inbox"]:
            image = (self.directory / _FAX_DIR / f"{meta['fax_id']}.tif").read_bytes()
            received = dt.datetime.fromisoformat(meta["received_at"]) if meta["received_at"] else None
            state.inbox[meta["fax_id"]] = InboundFax(**{**meta, "received_at": received, "image": image})
        return state

    def save(self, state: State) -> None:
        """Write the whole state; called with the service lock held, after every change."""
        if self.directory is None:
            return
        data = {
            "next_job_id": state.next_job_id,
            "next_fax_id": state.next_fax_id,
            "jobs": [job.to_json() for job in state.jobs.values()],
            "inbox": [_fax_meta(fax) for fax in state.inbox.values()],
        }
        _write_atomically(self.directory / _STATE_FILE, json.dumps(data, indent=1).encode("utf-8"))

    def save_image(self, fax_id: int, image: bytes) -> None:
        if self.directory is not None:
            _write_atomically(self.directory / _FAX_DIR / f"{fax_id}.tif", image)

    def delete_image(self, fax_id: int) -> None:
        if self.directory is not None:
            (self.directory / _FAX_DIR / f"{fax_id}.tif").unlink(missing_ok=True)


def _fax_meta(fax: InboundFax) -> dict[str, Any]:
    return {
        "fax_id": fax.fax_id,
        "called_number": fax.called_number,
        "received_at": fax.received_at.isoformat() if fax.received_at else None,
        "originator": fax.originator,
        "remote_id": fax.remote_id,
        "pages": fax.pages,
    }


def _write_atomically(path: Path, data: bytes) -> None:
    # Rename over the old file so a killed process never leaves half a file. No fsync: this is test
    # state, it only has to survive the process, not a power cut, and tests write it on every call.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
