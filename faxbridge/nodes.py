"""This daemon as one node among several sharing a journal: its heartbeat, and the duties it holds by lease.

On SQLite there is one node, so every duty is simply held; on PostgreSQL any number of daemons share
the journal (README, "Two nodes"). ``duty(name)`` runs a singleton duty — collecting inbound faxes,
polling JobStatus — only while this node holds its lease, with the lease set as the fence of every
journal write made under it (journal/nodes.py). The heartbeat renews the node's row and the leases it
holds; a node that stops beating loses them after ``lease`` seconds, and another takes them over.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faxbridge.errors import JournalError
from faxbridge.journal import Journal
from faxbridge.journal.nodes import FENCE, Lease

log = logging.getLogger(__name__)


class Node:
    def __init__(self, journal: Journal, name: str, lease: float, *, shared: bool | None = None) -> None:
        self.journal = journal
        # SQLite: one node, so no node rows, no heartbeat and no lease writes (a node idle or on a
        # full disk writes nothing, as before nodes existed). ``shared`` forces it (tests).
        self.shared = journal.dialect == "postgresql" if shared is None else shared
        self.name = name
        self.lease = lease
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._held: dict[str, Lease] = {}
        self.registered = False  # the daemon registers; a command's Services only uses duties
        journal.node_name = name  # its claims on jobs in flight carry this name

    def register(self) -> None:
        if not self.shared:
            return
        self.journal.nodes.register(self.name, self.instance, self.lease)
        self.registered = True
        log.info("node %s (%s) registered in the journal %s", self.name, self.instance, self.journal.location)

    def beat(self, detail: str = "") -> None:
        """Heartbeat; renews the leases held. A lease that could not be renewed is dropped (its
        duty's writes are refused by the fence from then on)."""
        if not self.registered:
            return
        self.journal.nodes.heartbeat(self.name, detail)
        for name in list(self._held):
            renewed = self.journal.nodes.acquire(name, self.name, self.lease)
            if renewed is None or renewed.token != self._held[name].token:
                log.warning("node %s lost the lease %s to another node", self.name, name)
                self._held.pop(name, None)
            else:
                self._held[name] = renewed

    def stop(self) -> None:
        """A clean stop: the row says so and the leases go at once."""
        self._held.clear()
        if not self.registered:
            return
        self.registered = False
        try:
            self.journal.nodes.stopped(self.name)
        except JournalError as exc:
            log.warning("node %s: could not record its stop (%s); its leases expire by themselves", self.name, exc)

    def holds(self) -> list[str]:
        return sorted(self._held)

    @asynccontextmanager
    async def duty(self, name: str) -> AsyncIterator[bool]:
        """``async with node.duty("inbound:12345") as held:`` — run the duty only if ``held``;
        its journal writes are fenced by the lease meanwhile. One node (SQLite): always held."""
        if not self.shared:
            yield True
            return
        try:
            lease = self.journal.nodes.acquire(name, self.name, self.lease)
        except JournalError as exc:
            # The journal is away (PostgreSQL restarting, a cut connection): the duty waits for
            # its next turn, on whichever node then holds the lease.
            log.warning("node %s: %s skipped, the journal is unavailable: %s", self.name, name, exc)
            lease = None
        if lease is None:
            yield False
            return
        if name not in self._held:
            log.info("node %s holds the lease %s (token %d)", self.name, name, lease.token)
        self._held[name] = lease
        token = FENCE.set(lease)
        try:
            yield True
        finally:
            FENCE.reset(token)
