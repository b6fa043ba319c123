"""Alert incidents: which alert is open now, so a restart neither forgets nor repeats one."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from faxbridge.journal.codec import run_script

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_incidents (
    kind       TEXT PRIMARY KEY,   -- queued, held, unknown, provider
    opened_at  REAL NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
"""


class AlertsTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    def open_incidents(self) -> dict[str, float]:
        rows = self._journal.query("SELECT kind, opened_at FROM alert_incidents")
        return {r["kind"]: r["opened_at"] for r in rows}

    def open(self, kind: str, detail: str) -> bool:
        """Open an incident; False if it was open already (then nothing is mailed again)."""
        with self._journal.transaction() as db:
            cursor = db.execute(
                "INSERT INTO alert_incidents (kind, opened_at, detail) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (kind, self._journal.clock(), detail[:1000]),
            )
            return cursor.rowcount > 0

    def close(self, kind: str) -> bool:
        """Close an incident; True if one was open."""
        with self._journal.transaction() as db:
            return db.execute("DELETE FROM alert_incidents WHERE kind = ?", (kind,)).rowcount > 0
