"""The nodes and leases tables: which daemons share the journal, and which of them holds each singleton duty.

A node writes its heartbeat every few seconds; a node whose heartbeat is older than the lease time is
gone, and what it was doing falls to the others (its SendJobs in flight become 'unknown', see
JobsTable.recover_interrupted). A duty that must run on one node at a time (collecting inbound faxes,
polling JobStatus, per FAX.de account) is a lease row: a holder, an expiry, and a fencing token that
grows with each new holder. While a duty runs, its lease is set in ``FENCE``; every write transaction
of that task then checks, under the journal's write lock, that the lease is still this holder's with
the same token and not expired — so a node that was paused past its lease cannot write once another
node took the duty over (``LeaseLost``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faxbridge.errors import JournalError

if TYPE_CHECKING:
    from faxbridge.journal import Journal

# Schema version 2 (journal/__init__.py runs it once, on both backends).
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS nodes (
    name         TEXT PRIMARY KEY,        -- journal.node in the config (default: the host name)
    instance     TEXT NOT NULL,           -- host:pid of the process that last registered it
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    state        TEXT NOT NULL,           -- running, stopped
    detail       TEXT NOT NULL DEFAULT '' -- what it is working on, for `faxbridge nodes`
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,         -- the duty, e.g. inbound:12345
    holder      TEXT NOT NULL,            -- a node's name
    token       INTEGER NOT NULL,         -- fencing token: +1 at each change of holder
    acquired_at REAL NOT NULL,
    expires_at  REAL NOT NULL
);
ALTER TABLE jobs ADD COLUMN claimed_by TEXT   -- the node that began the SendJob in flight
"""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    token: int
    expires_at: float


@dataclass(frozen=True)
class NodeRow:
    name: str
    instance: str
    started_at: float
    heartbeat_at: float
    state: str
    detail: str


class LeaseLost(JournalError):
    """A write under a lease that passed to another node (or expired): refused, nothing written."""


# The lease the current task works under; checked by every write transaction while set.
FENCE: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("faxbridge_fence", default=None)


def check_fence(db: Any, now: float) -> None:
    """Inside a write transaction (under the write lock): the current task's lease still holds."""
    lease = FENCE.get()
    if lease is None:
        return
    row = db.execute(
        "SELECT holder, token, expires_at FROM leases WHERE name = ?", (lease.name,)
    ).fetchone()
    if row is None or row["holder"] != lease.holder or row["token"] != lease.token or row["expires_at"] <= now:
        raise LeaseLost(
            f"lease {lease.name} (token {lease.token}) is no longer {lease.holder}'s: nothing written"
        )


@contextmanager
def _unfenced() -> Iterator[None]:
    """The node's own rows (heartbeat, leases) are written whatever duty the caller runs."""
    token = FENCE.set(None)
    try:
        yield
    finally:
        FENCE.reset(token)


class NodesTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    # -- nodes ------------------------------------------------------------------------------

    def register(self, name: str, instance: str, lease: float) -> None:
        """This process is node ``name`` from now on; refused while another live process is."""
        now = self._journal.clock()
        with _unfenced(), self._journal.transaction() as db:
            row = db.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
            if (
                row is not None and row["state"] == "running" and row["instance"] != instance
                and row["heartbeat_at"] > now - lease and not _dead_here(row["instance"])
            ):
                raise JournalError(
                    f"node {name} is already running as {row['instance']} (heartbeat"
                    f" {now - row['heartbeat_at']:.0f} s ago): give each node its own journal.node"
                )
            db.execute(
                "INSERT INTO nodes (name, instance, started_at, heartbeat_at, state)"
                " VALUES (?, ?, ?, ?, 'running') ON CONFLICT (name) DO UPDATE SET"
                " instance = excluded.instance, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, state = 'running', detail = ''",
                (name, instance, now, now),
            )

    def heartbeat(self, name: str, detail: str = "") -> None:
        with _unfenced(), self._journal.transaction(durable=False) as db:  # lost: the next one comes
            db.execute(
                "UPDATE nodes SET heartbeat_at = ?, detail = ?, state = 'running' WHERE name = ?",
                (self._journal.clock(), detail[:300], name),
            )

    def stopped(self, name: str) -> None:
        """A clean stop: the node's leases go at once, not after their expiry."""
        with _unfenced(), self._journal.transaction() as db:
            db.execute("UPDATE nodes SET state = 'stopped' WHERE name = ?", (name,))
            db.execute("DELETE FROM leases WHERE holder = ?", (name,))

    def all(self) -> list[NodeRow]:
        rows = self._journal.query("SELECT * FROM nodes ORDER BY name")
        return [
            NodeRow(r["name"], r["instance"], r["started_at"], r["heartbeat_at"], r["state"], r["detail"])
            for r in rows
        ]

    # -- leases -----------------------------------------------------------------------------

    def acquire(self, name: str, holder: str, duration: float) -> Lease | None:
        """Take or renew the lease ``name`` for ``duration`` seconds; None while another holds it.

        A new holder gets the next fencing token; renewing keeps it."""
        now = self._journal.clock()
        expires_at = now + duration
        with _unfenced(), self._journal.transaction(durable=False) as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None:
                token = 1
                db.execute(
                    "INSERT INTO leases (name, holder, token, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (name, holder, token, now, expires_at),
                )
            elif row["holder"] == holder:
                token = row["token"]
                db.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (expires_at, name))
            elif row["expires_at"] <= now:
                token = row["token"] + 1
                db.execute(
                    "UPDATE leases SET holder = ?, token = ?, acquired_at = ?, expires_at = ? WHERE name = ?",
                    (holder, token, now, expires_at, name),
                )
            else:
                return None
        return Lease(name, holder, token, expires_at)

    def release(self, lease: Lease) -> None:
        with _unfenced(), self._journal.transaction(durable=False) as db:
            db.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ? AND token = ?",
                (lease.name, lease.holder, lease.token),
            )

    def leases(self) -> list[Lease]:
        rows = self._journal.query("SELECT * FROM leases ORDER BY name")
        return [Lease(r["name"], r["holder"], r["token"], r["expires_at"]) for r in rows]


def _dead_here(instance: str) -> bool:
    """Whether ``host:pid`` names a process of this host that is gone (a crash of this very node,
    restarted before its heartbeat expired)."""
    import os
    import socket

    host, _, pid = instance.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()
