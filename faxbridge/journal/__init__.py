"""The journal: SQLite (WAL) in the state dir, the single source of truth and the only SQL in faxbridge.

Each table has its own module (jobs, inbound faxes, mails); they share one connection and one
lock, so a transaction in one never interleaves with another's. Transactions are short: the
journal is called from the event loop, and a commit costs one fsync.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from faxbridge.errors import JournalError
from faxbridge.journal.inbound import InboundTable
from faxbridge.journal.jobs import JobsTable

SCHEMA_VERSION = 1
JOURNAL_NAME = "journal.sqlite3"

Clock = Callable[[], float]


class Journal:
    """Open with ``Journal.open(state_dir)``; tables are ``journal.jobs`` and ``journal.inbound``."""

    def __init__(self, connection: sqlite3.Connection, path: Path, clock: Clock = time.time) -> None:
        self._db = connection
        self._lock = threading.RLock()
        self.path = path
        self.clock = clock
        self.jobs = JobsTable(self)
        self.inbound = InboundTable(self)

    @classmethod
    def open(cls, state_dir: Path, *, clock: Clock = time.time, timeout: float = 10.0) -> Journal:
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / JOURNAL_NAME
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), so
            # nothing is committed implicitly half-way through a state change.
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed job survives a power cut, not only a process crash.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal in {state_dir}: {exc}") from exc
        journal = cls(db, path, clock)
        journal._migrate()
        return journal

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; every error becomes a JournalError and rolls back."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal busy or unwritable: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise JournalError(f"journal commit failed: {exc}") from exc

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from exc

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {self.path} was written by a newer faxbridge (schema {version})"
                )
            for table in (self.jobs, self.inbound):
                table.create(db)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def register_table(self, table: object) -> None:
        """Let an edge's table (e.g. the SMTP spool) live in the same journal file."""
        with self.transaction() as db:
            table.create(db)  # type: ignore[attr-defined]


__all__ = ["Journal", "JournalError"]
