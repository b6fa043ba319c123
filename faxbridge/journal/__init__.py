"""The journal: SQLite (WAL) in the state dir, the single source of truth and the only SQL in faxbridge.

Each table has its own module (jobs, inbound faxes, mails); they share one connection and one
lock, so a transaction in one never interleaves with another's. Transactions are short: the
journal is called from the event loop, and a commit costs one fsync.

``Journal.open(state_dir, url="postgresql://…")`` opens the same journal in PostgreSQL instead
(journal/postgres.py), for several nodes sharing one database; the tables are the same code.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faxbridge.errors import JournalError, disk_full
from faxbridge.journal.codec import run_script
from faxbridge.journal.addressbook import AddressBookTable
from faxbridge.journal.alerts import AlertsTable
from faxbridge.journal.audit import AuditTable
from faxbridge.journal.inbound import InboundTable
from faxbridge.journal.jobs import JobsTable
from faxbridge.journal.nodes import SCHEMA_V2, NodesTable, check_fence

# 1: jobs, job_events, inbound (+ the edges' tables, created as they register).
# 2: nodes, leases, jobs.claimed_by (journal/nodes.py).
SCHEMA_VERSION = 2
JOURNAL_NAME = "journal.sqlite3"

Clock = Callable[[], float]


class Journal:
    """Open with ``Journal.open(state_dir)``; tables are ``journal.jobs``, ``journal.inbound``,
    ``journal.audit``, ``journal.address_book`` and ``journal.alerts``."""

    dialect = "sqlite"  # or "postgresql" (PostgresJournal): the few SQL texts that differ ask

    def __init__(self, connection: sqlite3.Connection, path: Path, clock: Clock = time.time) -> None:
        self._db = connection
        self._lock = threading.RLock()
        self._wal_fd: int | None = None
        self._commits = 0  # commits so far, and how many of them an fsync has covered
        self._synced = 0
        self._sync_task: asyncio.Future[None] | None = None
        self.path = path
        self.location = str(path)  # where the journal is, for messages (no secret in it)
        self.clock = clock
        self._init_tables()

    def _init_tables(self) -> None:
        # This node's name (journal.node): its claims on jobs in flight and its leases carry it.
        self.node_name = socket.gethostname()
        self.jobs = JobsTable(self)
        self.inbound = InboundTable(self)
        self.audit = AuditTable(self)
        self.address_book = AddressBookTable(self)
        self.alerts = AlertsTable(self)
        self.nodes = NodesTable(self)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        clock: Clock = time.time,
        timeout: float = 10.0,
        url: str | Path | None = None,
        password: str | None = None,
    ) -> Journal:
        """The journal of ``state_dir``; ``url`` (the config's ``journal.url``): None for SQLite in
        ``state_dir``, a file path for SQLite there, ``postgresql://…`` for PostgreSQL (``password``,
        if given, overrides libpq's PGPASSFILE / ~/.pgpass)."""
        if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
            from faxbridge.journal.postgres import PostgresJournal

            return PostgresJournal.connect(
                url, password=password, state_dir=Path(state_dir), clock=clock, timeout=timeout
            )
        state_dir = Path(state_dir)
        path = Path(url) if url else state_dir / JOURNAL_NAME
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), so
            # nothing is committed implicitly half-way through a state change.
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: commits reach the OS at once (safe against a crash of the process);
            # durable ones are fsynced explicitly, see transaction(durable=…) and sync().
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            # SQLite says "disk I/O error" when it cannot size its shared-memory file on a full disk.
            reason = "the disk is full" if _no_room(path.parent) else str(exc)
            raise JournalError(f"cannot open the journal {path}: {reason}") from exc
        journal = cls(db, path, clock)
        journal._migrate()
        return journal

    @classmethod
    def from_config(cls, config: Any, *, clock: Clock = time.time) -> Journal:
        """The journal a loaded Config names (``journal.url``, else SQLite in ``state_dir``)."""
        password = config.journal.password
        return cls.open(
            Path(config.state_dir), clock=clock, url=config.journal.url,
            password=password.reveal() if password is not None else None,
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; every error becomes a JournalError and rolls back.

        ``durable`` (the default): the write-ahead log is fsynced after the commit, so it survives
        a power cut, as synchronous=FULL would do. ``durable=False`` commits survive a crash of
        the process and reach the disk with the next sync; the event loop uses them and awaits
        ``sync_async()`` where it must, so the fsync runs in a worker thread, not on the loop.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal busy or unwritable: {exc}") from exc
            try:
                check_fence(self._db, self.clock())
                yield self._db
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal write failed: {_in_words(exc, self.path)}") from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal commit failed: {_in_words(exc, self.path)}") from exc
            self._commits += 1
        if durable:
            self.sync()

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR): a second
        # ROLLBACK would raise and hide the error that matters.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection rolls back on its own; the caller's error is the one to tell

    def sync(self) -> None:
        """Make every commit so far durable: fsync the write-ahead log (blocking)."""
        try:
            if self._wal_fd is None:
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            os.fsync(self._wal_fd)
        except OSError as exc:
            raise JournalError(f"journal sync failed: {exc}") from exc

    async def sync_async(self) -> None:
        """``sync()`` in a worker thread, so the event loop goes on meanwhile.

        Group commit: callers that arrive while an fsync runs share the next one, so a burst of
        jobs costs a few fsyncs, not one each.
        """
        wanted = self._commits
        while self._synced < wanted:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync_once(self._commits))
            # shield: a cancelled caller must not cancel the fsync others are waiting for.
            await asyncio.shield(self._sync_task)

    async def _sync_once(self, upto: int) -> None:
        try:
            # Thread seam: fsync blocks for a millisecond or more.
            await asyncio.to_thread(self.sync)
            self._synced = max(self._synced, upto)
        finally:
            self._sync_task = None

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from exc

    def schema_version(self) -> int:
        """The schema the journal holds (0: none yet); ``check-config`` compares it with ours."""
        try:
            rows = self.query("SELECT value FROM meta WHERE key = 'schema_version'")
        except JournalError:
            return 0  # no meta table: an empty database
        return int(rows[0]["value"]) if rows else 0

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, in one transaction (on both backends).

        Each version's step runs once, in order; the steps are written once for both backends.
        """
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {self.location} was written by a newer faxbridge (schema {version})"
                )
            # Version 1's tables are created "IF NOT EXISTS": also right for a journal at 1 already.
            for table in (self.jobs, self.inbound, self.audit, self.address_book, self.alerts):
                table.create(db)
            if version < 2:
                run_script(db, SCHEMA_V2)
            if version != SCHEMA_VERSION:
                # Only then: a journal already current is opened without writing a byte, so
                # `faxbridge jobs`, `receive` and a restart work on a full disk too.
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )

    def notify_jobs(self, db: Any) -> None:
        """Wake other nodes' senders at commit (PostgreSQL); one node on SQLite: nothing to do."""

    def listen_jobs(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` when another node journals a job (PostgreSQL); SQLite: never."""

    def json_field(self, column: str, key: str) -> str:
        """SQL for one key of a JSON text column (the two backends spell it differently)."""
        if self.dialect == "postgresql":
            return f"(CAST({column} AS jsonb) ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def register_table(self, table: object) -> None:
        """Let an edge's table (e.g. the SMTP spool) live in the same journal file."""
        with self.transaction() as db:
            table.create(db)  # type: ignore[attr-defined]


def _no_room(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _in_words(exc: sqlite3.Error, path: Path) -> str:
    if disk_full(exc):
        return f"the disk holding {path} is full"
    return str(exc)


__all__ = ["Journal", "JournalError"]
