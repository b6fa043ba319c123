"""Failed SMTP AUTH logins per client address, kept in the journal so a lockout outlives a restart.

Without it a guesser who got locked out only had to wait for (or cause) a restart of the daemon to
get a fresh allowance of guesses. Rows older than the lockout window are deleted as new ones come.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from faxbridge.journal.codec import run_script

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS smtp_login_failures (
    address    TEXT NOT NULL,   -- the client's IP address
    failed_at  REAL NOT NULL    -- epoch seconds
);
CREATE INDEX IF NOT EXISTS smtp_login_failures_by_time ON smtp_login_failures (failed_at);
"""


class LoginFailuresTable:
    """Where smtp_auth.LoginFailures keeps its counts (epoch seconds, the journal's clock)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    def since(self, start: float) -> list[tuple[str, float]]:
        """(address, time) of every failure at or after ``start``, oldest first."""
        rows = self._journal.query(
            "SELECT address, failed_at FROM smtp_login_failures WHERE failed_at >= ?"
            " ORDER BY failed_at",
            (start,),
        )
        return [(row["address"], row["failed_at"]) for row in rows]

    def add(self, address: str, at: float, *, forget_before: float) -> None:
        """Record one failure, and forget those older than ``forget_before``."""
        # Not fsynced: a lockout lost to a power cut is a small loss; a crash of the process
        # keeps it (the commit reached the OS).
        with self._journal.transaction(durable=False) as db:
            db.execute("DELETE FROM smtp_login_failures WHERE failed_at < ?", (forget_before,))
            db.execute(
                "INSERT INTO smtp_login_failures (address, failed_at) VALUES (?, ?)", (address, at)
            )
