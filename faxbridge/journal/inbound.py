"""The inbound table: every received fax written to disk, and whether it is deleted on the server yet.

A fax's life: ``writing`` (its file name is chosen and journaled before the first byte is written, so
a crash part-way is recognised) → ``stored`` (only after the TIFF is fsynced and renamed into place)
→ ``deleted`` (DeleteReceived said so). A payload that fails the checks goes ``writing`` →
``quarantined`` instead and stays on the server. DeleteReceived is called only for rows that are
``stored`` (or ``quarantined`` and released by the operator). A FaxId seen again (crash between
write and delete) is recognised here.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faxbridge.errors import JournalError
from faxbridge.journal.codec import NO_LIMIT, run_script, to_datetime
from faxbridge.model import InboundFax

if TYPE_CHECKING:
    import datetime as dt

    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (
    fax_id          INTEGER PRIMARY KEY,     -- FAX.de's FaxId
    state           TEXT NOT NULL,           -- writing, stored, deleted, quarantined
    called_number   TEXT NOT NULL DEFAULT '',
    received_at     TEXT,                    -- ISO 8601 UTC, as FAX.de gave it
    originator      TEXT NOT NULL DEFAULT '',
    remote_id       TEXT NOT NULL DEFAULT '',
    pages           INTEGER NOT NULL DEFAULT 0,
    path            TEXT NOT NULL,           -- where the TIFF (or the quarantined payload) is (to be)
    size            INTEGER NOT NULL DEFAULT 0,
    sha256          TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',  -- page mismatch, quarantine reason …
    stored_at       REAL NOT NULL,
    deleted_at      REAL,
    delete_attempts INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS inbound_by_state ON inbound (state);
"""


class InboundState(enum.StrEnum):
    WRITING = "writing"  # file name chosen; the file may or may not be in place yet (crash recovery)
    STORED = "stored"  # safely on disk; DeleteReceived not yet confirmed
    DELETED = "deleted"  # on disk and gone from the server
    QUARANTINED = "quarantined"  # payload failed the checks; kept aside and NOT deleted on the server


@dataclass(frozen=True)
class InboundRecord:
    fax_id: int
    state: InboundState
    called_number: str
    received_at: str | None
    originator: str
    remote_id: str
    pages: int
    path: str
    size: int
    sha256: str
    note: str
    stored_at: dt.datetime | None
    deleted_at: dt.datetime | None
    delete_attempts: int
    last_error: str


class InboundTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    def get(self, fax_id: int) -> InboundRecord | None:
        rows = self._journal.query("SELECT * FROM inbound WHERE fax_id = ?", (fax_id,))
        return _record(rows[0]) if rows else None

    def begin(self, fax: InboundFax, *, path: str, note: str = "") -> InboundRecord:
        """Journal the file name a fax is about to be written to, before any byte is written.

        Only a new fax, one still ``writing`` (a crash interrupted it) or a quarantined one whose
        payload now passes the checks may begin; its path is then replaced by the new one.
        """
        now = self._journal.clock()
        with self._journal.transaction() as db:
            row = db.execute("SELECT state FROM inbound WHERE fax_id = ?", (fax.fax_id,)).fetchone()
            if row is not None and row["state"] not in (
                InboundState.WRITING.value, InboundState.QUARANTINED.value
            ):
                raise JournalError(f"inbound fax {fax.fax_id} is already {row['state']}")
            db.execute(
                "INSERT INTO inbound (fax_id, state, called_number, received_at, originator,"
                " remote_id, pages, path, size, note, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fax_id) DO UPDATE SET state = excluded.state, path = excluded.path,"
                " size = excluded.size, note = excluded.note",
                (
                    fax.fax_id, InboundState.WRITING.value, fax.called_number,
                    fax.received_at.isoformat() if fax.received_at else None,
                    fax.originator, fax.remote_id, fax.pages, path, len(fax.image), note, now,
                ),
            )
        result = self.get(fax.fax_id)
        assert result is not None
        return result

    def record(
        self,
        fax: InboundFax,
        *,
        state: InboundState,
        path: str,
        size: int,
        sha256: str,
        note: str = "",
    ) -> InboundRecord:
        """Journal a fax that is now on disk (stored) or set aside (quarantined)."""
        now = self._journal.clock()
        with self._journal.transaction() as db:
            db.execute(
                "INSERT INTO inbound (fax_id, state, called_number, received_at, originator,"
                " remote_id, pages, path, size, sha256, note, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fax_id) DO UPDATE SET state = excluded.state, path = excluded.path,"
                " size = excluded.size, sha256 = excluded.sha256, note = excluded.note",
                (
                    fax.fax_id, state.value, fax.called_number,
                    fax.received_at.isoformat() if fax.received_at else None,
                    fax.originator, fax.remote_id, fax.pages, path, size, sha256, note, now,
                ),
            )
        result = self.get(fax.fax_id)
        assert result is not None
        return result

    def mark_deleted(self, fax_id: int, note: str = "") -> None:
        """DeleteReceived succeeded (or said the fax is gone); ``note`` is appended to the row's note."""
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE inbound SET state = ?, deleted_at = ?, last_error = '',"
                " note = CASE WHEN ? = '' THEN note WHEN note = '' THEN ? ELSE note || '; ' || ? END"
                " WHERE fax_id = ?",
                (InboundState.DELETED.value, self._journal.clock(), note, note, note, fax_id),
            )

    def in_state(self, state: InboundState) -> list[InboundRecord]:
        rows = self._journal.query(
            "SELECT * FROM inbound WHERE state = ? ORDER BY fax_id", (state.value,)
        )
        return [_record(r) for r in rows]

    def note_delete_failure(self, fax_id: int, error: str) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE inbound SET delete_attempts = delete_attempts + 1, last_error = ?"
                " WHERE fax_id = ?",
                (error[:500], fax_id),
            )

    def purge_deleted(self, older_than: float, limit: int | None = None) -> int:
        """Retention: forget faxes deleted on the server before ``older_than`` (epoch seconds).

        Only ``deleted`` rows: FAX.de no longer has those faxes, so their FaxId cannot come back.
        Quarantined and stored ones stay whatever their age (they still matter).
        """
        with self._journal.transaction() as db:
            cursor = db.execute(
                "DELETE FROM inbound WHERE fax_id IN (SELECT fax_id FROM inbound WHERE state = ?"
                " AND deleted_at < ? ORDER BY fax_id LIMIT ?)",
                (InboundState.DELETED.value, older_than, NO_LIMIT if limit is None else limit),
            )
            return cursor.rowcount

    def awaiting_delete(self) -> list[InboundRecord]:
        return self.in_state(InboundState.STORED)

    def all(self, limit: int = 1000) -> list[InboundRecord]:
        rows = self._journal.query("SELECT * FROM inbound ORDER BY fax_id DESC LIMIT ?", (limit,))
        return [_record(r) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        rows = self._journal.query("SELECT state, COUNT(*) AS n FROM inbound GROUP BY state")
        return {r["state"]: r["n"] for r in rows}


def _record(row: sqlite3.Row) -> InboundRecord:
    return InboundRecord(
        fax_id=row["fax_id"],
        state=InboundState(row["state"]),
        called_number=row["called_number"],
        received_at=row["received_at"],
        originator=row["originator"],
        remote_id=row["remote_id"],
        pages=row["pages"],
        path=row["path"],
        size=row["size"],
        sha256=row["sha256"],
        note=row["note"],
        stored_at=to_datetime(row["stored_at"]),
        deleted_at=to_datetime(row["deleted_at"]),
        delete_attempts=row["delete_attempts"],
        last_error=row["last_error"],
    )
