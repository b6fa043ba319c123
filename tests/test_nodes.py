"""Nodes sharing a journal: leases with fencing tokens, SendJobs in flight of a node that died, the
`faxbridge nodes` listing (on both backends; FAXBRIDGE_TEST_JOURNAL=postgresql runs them on PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from faxbridge.cli import main
from faxbridge.journal import Journal
from faxbridge.journal.jobs import TransitionError
from faxbridge.journal.nodes import LeaseLost
from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
from faxbridge.nodes import Node
from journal_backend import journal_config, open_journal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journals(tmp_path: Path, clock: FakeClock):
    """Two nodes' journals on the same database (SQLite: the same file)."""
    a = open_journal(tmp_path / "state", clock=clock)
    b = open_journal(tmp_path / "state", clock=clock)
    a.node_name, b.node_name = "a", "b"
    yield a, b
    a.close()
    b.close()


def request() -> SendRequest:
    return SendRequest(JobType.FAX, (Recipient("+494012345678", ""),), (Document("a.pdf", Path("/x/a.pdf")),))


def test_a_lease_is_held_by_one_node_until_it_expires_then_the_token_grows(journals, clock) -> None:
    a, b = journals
    first = a.nodes.acquire("inbound:1", "a", 15)
    assert first is not None and first.token == 1
    assert b.nodes.acquire("inbound:1", "b", 15) is None
    clock.now += 10
    renewed = a.nodes.acquire("inbound:1", "a", 15)
    assert renewed is not None and renewed.token == 1  # renewing keeps the token
    clock.now += 14
    assert b.nodes.acquire("inbound:1", "b", 15) is None
    clock.now += 2  # a is silent past its lease
    taken = b.nodes.acquire("inbound:1", "b", 15)
    assert taken is not None and (taken.holder, taken.token) == ("b", 2)
    assert [(lease.name, lease.holder, lease.token) for lease in a.nodes.leases()] == [("inbound:1", "b", 2)]


def test_a_paused_holder_cannot_write_once_its_lease_passed_on(journals, clock) -> None:
    """The fencing token is checked by every write made under a duty."""
    a, b = journals
    node_a, node_b = Node(a, "a", 15, shared=True), Node(b, "b", 15, shared=True)
    job, _ = a.jobs.add(request(), source="cli", source_ref="x", content_key="k")

    async def scenario() -> None:
        async with node_a.duty("status:1") as held:
            assert held
            a.jobs.record_poll(job.id, clock.now)  # allowed: a holds the lease
            clock.now += 20  # a "pauses" past its lease; b takes the duty over
            async with node_b.duty("status:1") as b_held:
                assert b_held
                b.jobs.mark_cancelled(job.id, "by b, the holder now")
            with pytest.raises(LeaseLost, match="status:1"):
                a.jobs.mark_rejected(job.id, "a late write from the old holder")
        # Outside the duty, a's writes are not fenced (sends are not a singleton duty).
        a.jobs.add(request(), source="cli", source_ref="y", content_key="k2")

    asyncio.run(scenario())
    assert a.jobs.get(job.id).state is JobState.CANCELLED


def test_a_dead_nodes_send_in_flight_becomes_unknown_with_the_window_from_its_submitting_event(
    journals, clock
) -> None:
    a, b = journals
    a.nodes.register("a", "host-a:1", 15)
    b.nodes.register("b", "host-b:2", 15)
    job, _ = a.jobs.add(request(), source="cli", source_ref="x", content_key="k")
    left = clock.now
    a.jobs.begin_submit(job.id)  # a's SendJob leaves; then a dies
    with pytest.raises(TransitionError):
        b.jobs.begin_submit(job.id)  # the claim: b cannot take the same send
    clock.now += 10
    b.nodes.heartbeat("b")
    assert b.jobs.recover_interrupted(15, include_own=False) == []  # a is still within its lease
    clock.now += 10
    b.nodes.heartbeat("b")
    [adopted] = b.jobs.recover_interrupted(15, include_own=False)
    assert adopted.id == job.id and adopted.state is JobState.UNKNOWN
    assert "node a stopped" in adopted.last_error
    ambiguity = b.jobs.ambiguity(job.id)
    assert ambiguity is not None and ambiguity.since == left  # not from the adoption


def test_a_live_nodes_sends_are_left_alone_at_another_nodes_start(journals, clock) -> None:
    a, b = journals
    a.nodes.register("a", "host-a:1", 15)
    job, _ = a.jobs.add(request(), source="cli", source_ref="x", content_key="k")
    a.jobs.begin_submit(job.id)
    b.nodes.register("b", "host-b:2", 15)
    assert b.jobs.recover_interrupted(15) == []  # b starts: a's send in flight stays a's
    assert a.jobs.recover_interrupted(15) != []  # a restarts after a crash: its own send is unknown


def test_a_second_process_under_a_live_nodes_name_is_refused(journals) -> None:
    a, b = journals
    a.nodes.register("fax1", "host-a:1", 15)
    with pytest.raises(Exception, match="node fax1 is already running as host-a:1"):
        b.nodes.register("fax1", "host-b:7", 15)


def test_faxbridge_nodes_lists_heartbeats_and_leases(tmp_path: Path, journals, capsys) -> None:
    a, b = journals
    now = __import__("time").time()
    a.clock = b.clock = lambda: now
    a.nodes.register("fax1", "host-a:1", 15)
    a.nodes.heartbeat("fax1", "2 SendJob(s) in flight")
    b.nodes.register("fax2", "host-b:2", 15)
    b.nodes.stopped("fax2")
    a.nodes.acquire("inbound:12345", "fax1", 15)
    password = tmp_path / "pw"
    password.write_text("x\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "faxde": {"account": "12345", "password_file": str(password)},
        "state_dir": str(tmp_path / "state"),
        **({"journal": journal_config()} if journal_config() else {}),
    }))
    assert main(["nodes", "-c", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fax1") and "alive" in lines[0] and "holds inbound:12345 (token 1)" in lines[0]
    assert "2 SendJob(s) in flight" in lines[0]
    assert lines[1].startswith("fax2") and "stopped" in lines[1]


def test_schema_2_is_reached_from_a_version_1_journal(tmp_path: Path) -> None:
    """The migration step of version 2 on an existing journal (SQLite here; PostgreSQL runs the
    same step text)."""
    import sqlite3

    state = tmp_path / "state"
    with Journal.open(state) as journal:
        journal.jobs.add(request(), source="cli", source_ref="x", content_key="k")
    db = sqlite3.connect(state / "journal.sqlite3")
    db.executescript("DROP TABLE nodes; DROP TABLE leases; ALTER TABLE jobs DROP COLUMN claimed_by;"
                     " UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    db.close()
    with Journal.open(state) as journal:
        assert journal.schema_version() == 2
        assert len(journal.jobs.recent()) == 1
        journal.jobs.begin_submit(1)
        assert journal.query("SELECT claimed_by FROM jobs")[0]["claimed_by"] == journal.node_name
