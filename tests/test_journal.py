"""The journal for real: SQLite files in tmp_path, named transitions, crash recovery, duplicates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from faxbridge.errors import DuplicateJobError, JournalError
from faxbridge.journal import Journal
from faxbridge.journal.inbound import InboundState
from faxbridge.journal.jobs import TransitionError
from faxbridge.model import (
    ALLOWED_TRANSITIONS,
    Accepted,
    Document,
    InboundFax,
    JobState,
    JobStatusReport,
    JobType,
    Recipient,
    SendRequest,
    StatusRow,
)
from journal_backend import open_journal, sqlite_only


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Journal:
    with open_journal(tmp_path / "state", clock=clock) as j:
        yield j


def request(number: str = "+494012345678", text: str = "") -> SendRequest:
    return SendRequest(
        job_type=JobType.FAX,
        recipients=(Recipient(number, "ref-1"),),
        documents=(Document("Invoice 42.pdf", Path("/srv/fax/out/Invoice 42.pdf")),),
        text=text,
    )


def add(journal: Journal, ref: str = "a", key: str = "k1", window: float = 0.0):
    return journal.jobs.add(request(), source="cli", source_ref=ref, content_key=key, duplicate_window=window)


def test_a_new_job_is_queued_and_round_trips_its_request(journal: Journal) -> None:
    job, created = add(journal)
    assert created and job.state is JobState.QUEUED
    again = journal.jobs.get(job.id)
    assert again.request == request()
    assert again.request.recipients[0].for_faxde() == "+494012345678[ref-1]"


def test_the_same_source_ref_returns_the_existing_job(journal: Journal) -> None:
    first, _ = add(journal, ref="same")
    second, created = add(journal, ref="same", key="other")
    assert not created and second.id == first.id
    assert len(journal.jobs.recent()) == 1


def test_same_content_within_the_window_is_refused(journal: Journal, clock: FakeClock) -> None:
    first, _ = add(journal, ref="a", key="same", window=3600)
    with pytest.raises(DuplicateJobError) as err:
        add(journal, ref="b", key="same", window=3600)
    assert err.value.existing_job_id == first.id
    clock.now += 3601
    job, created = add(journal, ref="c", key="same", window=3600)
    assert created and job.id != first.id


def test_a_rejected_twin_does_not_block_a_new_attempt(journal: Journal) -> None:
    first, _ = add(journal, ref="a", key="same", window=3600)
    journal.jobs.mark_rejected(first.id, "bad document")
    _, created = add(journal, ref="b", key="same", window=3600)
    assert created


def test_the_happy_path_records_the_faxde_job_id_with_the_transition(journal: Journal) -> None:
    job, _ = add(journal)
    job = journal.jobs.begin_submit(job.id)
    assert job.state is JobState.SUBMITTING and job.attempts == 1
    job = journal.jobs.mark_submitted(job.id, Accepted(881234, 1, 2), next_poll_at=0)
    assert (job.state, job.faxde_job_id, job.page_count) == (JobState.SUBMITTED, 881234, 2)
    row = StatusRow("+494012345678", "FAX", "OK", "Remote", "2", "2026-11-25 10:00:00", "19", "ref-1")
    job = journal.jobs.mark_finished(
        job.id, JobStatusReport(True, "OK", None, "Remote", b"csv", (row,))
    )
    assert job.state is JobState.DELIVERED and job.status_file == b"csv" and job.finished_at
    assert [to for _, to, _ in journal.jobs.events(job.id)] == [
        "queued", "submitting", "submitted", "delivered",
    ]
    assert journal.jobs.unreported() == [job]
    journal.jobs.mark_reported(job.id)
    assert journal.jobs.unreported() == []


def test_each_transition_returns_the_row_as_written(journal: Journal, clock: FakeClock) -> None:
    # add and _move build the returned job from what they wrote (and the row they read), instead
    # of reading the row back (issue 7): the two must never differ.
    job, _ = journal.jobs.add(request(), source="cli", source_ref="a", content_key="k", meta={"label": "ä"})
    assert job == journal.jobs.get(job.id)
    steps = [
        lambda: journal.jobs.begin_submit(job.id),
        lambda: journal.jobs.mark_retry(job.id, "busy", 2, next_attempt_at=clock.now + 30),
        lambda: journal.jobs.begin_submit(job.id),
        lambda: journal.jobs.mark_unknown(job.id, "dropped"),
        lambda: journal.jobs.begin_submit(job.id),
        lambda: journal.jobs.mark_submitted(job.id, Accepted(881234, 3, 2), next_poll_at=clock.now + 60),
        lambda: journal.jobs.mark_finished(job.id, JobStatusReport(True, "OK", status_file=b"csv")),
    ]
    for step in steps:
        clock.now += 1
        returned = step()
        assert returned == journal.jobs.get(job.id)
    assert returned.attempts == 3 and returned.state is JobState.DELIVERED


@pytest.mark.parametrize(
    "results, expected",
    [(["OK", "OK"], JobState.DELIVERED), (["OK", "Busy"], JobState.PARTIAL), (["No Answer"], JobState.FAILED)],
)
def test_the_final_state_follows_the_status_rows(journal: Journal, results, expected) -> None:
    job, _ = add(journal)
    journal.jobs.begin_submit(job.id)
    journal.jobs.mark_submitted(job.id, Accepted(1, len(results), 1), next_poll_at=0)
    rows = tuple(StatusRow(f"+49{i}", "FAX", r) for i, r in enumerate(results))
    assert journal.jobs.mark_finished(job.id, JobStatusReport(True, "multi", rows=rows)).state is expected


def test_a_transition_the_state_does_not_allow_is_refused(journal: Journal) -> None:
    job, _ = add(journal)
    with pytest.raises(TransitionError):
        journal.jobs.mark_submitted(job.id, Accepted(1, 1, 1), next_poll_at=0)
    journal.jobs.mark_rejected(job.id, "no")
    with pytest.raises(TransitionError):
        journal.jobs.begin_submit(job.id)
    assert journal.jobs.get(job.id).state is JobState.REJECTED


def test_final_states_allow_no_transition_at_all() -> None:
    for state in JobState:
        assert state.is_final == (ALLOWED_TRANSITIONS[state] == frozenset())


def test_a_crash_during_submit_leaves_an_unknown_job_not_a_queued_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_journal(state) as journal:
        job, _ = add(journal)
        journal.jobs.begin_submit(job.id)
    # "restart": a new connection to the same file
    with open_journal(state) as journal:
        recovered = journal.jobs.recover_interrupted()
        assert [j.id for j in recovered] == [job.id]
        job = journal.jobs.get(job.id)
        assert job.state is JobState.UNKNOWN and "may have the job" in job.last_error
        assert journal.jobs.due_for_submit(now=1e12) == []
        assert journal.jobs.ambiguity(job.id) is not None


def test_due_queries_respect_times(journal: Journal, clock: FakeClock) -> None:
    job, _ = add(journal)
    journal.jobs.begin_submit(job.id)
    journal.jobs.mark_retry(job.id, "HTTP 500", None, next_attempt_at=clock.now + 60)
    assert journal.jobs.due_for_submit(clock.now) == []
    assert journal.jobs.due_for_submit(clock.now + 61) == [job.id]


@sqlite_only
def test_the_journal_is_wal_and_survives_reopening(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        add(journal)
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with open_journal(tmp_path) as journal:
        assert len(journal.jobs.recent()) == 1


@sqlite_only
def test_a_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="newer faxbridge"):
        open_journal(tmp_path)


@sqlite_only
def test_an_unwritable_state_dir_is_a_journal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError):
        open_journal(blocker / "state")


def test_inbound_records_and_pending_deletes(journal: Journal) -> None:
    fax = InboundFax(7, "+494099", None, "+4930111", "REMOTE", 2, b"II*\0")
    record = journal.inbound.record(fax, state=InboundState.STORED, path="/in/a.tif", size=4, sha256="x")
    assert record.state is InboundState.STORED
    assert [r.fax_id for r in journal.inbound.awaiting_delete()] == [7]
    journal.inbound.note_delete_failure(7, "HTTP 500")
    assert journal.inbound.get(7).delete_attempts == 1
    journal.inbound.mark_deleted(7)
    assert journal.inbound.awaiting_delete() == []
    assert journal.inbound.get(7).state is InboundState.DELETED


def test_retention_purges_only_reported_final_jobs(journal: Journal, clock: FakeClock) -> None:
    done, _ = add(journal, ref="done")
    journal.jobs.mark_rejected(done.id, "x")
    journal.jobs.mark_reported(done.id)
    waiting, _ = add(journal, ref="waiting", key="k2")
    clock.now += 10
    assert journal.jobs.purge_finished(older_than=clock.now) == 1
    assert journal.jobs.find(done.id) is None and journal.jobs.find(waiting.id) is not None


@sqlite_only
def test_group_commit_shares_fsyncs_and_never_returns_early(tmp_path: Path) -> None:
    import asyncio
    import threading

    journal = open_journal(tmp_path)
    fsyncs: list[int] = []
    real_sync = journal.sync

    def counting_sync() -> None:
        fsyncs.append(journal._commits)  # what this fsync is sure to cover
        real_sync()

    journal.sync = counting_sync  # type: ignore[method-assign]

    async def one(i: int) -> None:
        add(journal, ref=str(i), key=str(i))  # durable=True would fsync inline; use the async path:
        mine = journal._commits
        await journal.sync_async()
        assert max(fsyncs) >= mine  # an fsync that started after this commit has finished

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(50)))

    # add() syncs inline by default; make it the loop's kind of commit for this test
    original_add = journal.jobs.add
    journal.jobs.add = lambda *a, **k: original_add(*a, **{**k, "durable": False})  # type: ignore[method-assign]
    asyncio.run(main())
    assert 1 <= len(fsyncs) < 50
    assert threading.active_count() >= 1
    journal.close()


def test_the_ambiguity_counts_from_the_request_that_left_not_from_the_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Issue 14: a crash records 'unknown' only at the next start; the window must not start there."""
    state = tmp_path / "state"
    with open_journal(state, clock=clock) as journal:
        job, _ = add(journal)
        assert journal.jobs.ambiguity(job.id) is None
        journal.jobs.begin_submit(job.id)  # a transient failure first: certainly not sent
        journal.jobs.mark_retry(job.id, "HTTP 500", None, next_attempt_at=clock.now)
        clock.now += 10
        left = clock.now
        journal.jobs.begin_submit(job.id)  # this request leaves, then the daemon dies
    clock.now += 300
    with open_journal(state, clock=clock) as journal:
        journal.jobs.recover_interrupted()
        ambiguity = journal.jobs.ambiguity(job.id)
        assert ambiguity is not None
        assert (ambiguity.since, ambiguity.last_sent, ambiguity.resends) == (left, left, 0)
        clock.now += 5
        journal.jobs.begin_submit(job.id)  # a reconciling re-send, dropped again
        journal.jobs.mark_unknown(job.id, "connection dropped")
        ambiguity = journal.jobs.ambiguity(job.id)
        assert ambiguity is not None
        assert (ambiguity.since, ambiguity.last_sent, ambiguity.resends) == (left, clock.now, 1)
