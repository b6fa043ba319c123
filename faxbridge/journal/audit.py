"""The audit table: who did what to which job (approve, reject, cancel, retry, logins), and when."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faxbridge.journal.codec import run_script

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    user    TEXT NOT NULL,
    action  TEXT NOT NULL,      -- approve, reject, cancel, retry, login_failed, …
    job_id  INTEGER,            -- no foreign key: the trail outlives the job's retention
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job_id, id);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, user, at);
"""

LOGIN_FAILED = "login_failed"  # the action the console records for a refused login


@dataclass(frozen=True)
class AuditEntry:
    at: float  # epoch seconds
    user: str
    action: str
    job_id: int | None
    detail: str


class AuditTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    def record(self, user: str, action: str, job_id: int | None, detail: str = "") -> None:
        """One entry, durable: an audit trail that a power cut can shorten is no trail."""
        with self._journal.transaction() as db:
            db.execute(
                "INSERT INTO audit (at, user, action, job_id, detail) VALUES (?, ?, ?, ?, ?)",
                (self._journal.clock(), user, action, job_id, detail[:1000]),
            )

    def for_job(self, job_id: int) -> list[AuditEntry]:
        rows = self._journal.query("SELECT * FROM audit WHERE job_id = ? ORDER BY id", (job_id,))
        return [_entry(r) for r in rows]

    def recent(self, limit: int = 100) -> list[AuditEntry]:
        rows = self._journal.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [_entry(r) for r in rows]

    def login_failures(self, user: str, since: float) -> int:
        """Refused logins of ``user`` since then (epoch seconds): rate limiting that a restart keeps."""
        rows = self._journal.query(
            "SELECT COUNT(*) AS n FROM audit WHERE action = ? AND user = ? AND at >= ?",
            (LOGIN_FAILED, user, since),
        )
        return int(rows[0]["n"])


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(at=row["at"], user=row["user"], action=row["action"], job_id=row["job_id"],
                      detail=row["detail"])
