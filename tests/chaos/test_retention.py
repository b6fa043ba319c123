"""journal.retention applied by the running daemon: old final jobs (with their events) and old
deleted faxes are forgotten; anything still in progress, recent, unreported or quarantined stays."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from faxbridge.journal import Journal
from faxbridge.journal.inbound import InboundState
from faxbridge.model import Document, InboundFax, JobType, Recipient, SendRequest

from conftest import RunningDaemon, wait_until

DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(tag: str) -> SendRequest:
    return SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(f"{tag}.pdf", Path(f"/x/{tag}.pdf")),))


def test_the_daemon_forgets_final_jobs_and_deleted_faxes_after_the_retention(
    tmp_path: Path, make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon]
) -> None:
    state = tmp_path / "state"
    clock = Clock(time.time() - 40 * DAY)
    with Journal.open(state, clock=clock) as journal:
        def job(tag: str, *, final: bool = True, reported: bool = True) -> int:
            added, _ = journal.jobs.add(request(tag), source="test", source_ref=tag, content_key=tag)
            if final:
                journal.jobs.mark_rejected(added.id, "refused")
                if reported:
                    journal.jobs.mark_reported(added.id)
            return added.id

        def fax(fax_id: int, state_: InboundState) -> None:
            inbound = InboundFax(fax_id, "+4930555000", None, "+4930111", "", 1, b"II*\x00")
            journal.inbound.record(inbound, state=state_, path=f"/in/{fax_id}.tif", size=4, sha256="-")
            if state_ is InboundState.DELETED:
                journal.inbound.mark_deleted(fax_id)

        old = [job(f"old-{i}") for i in range(3)]
        unreported = job("old-unreported", reported=False)
        waiting = job("old-queued", final=False)
        fax(1, InboundState.DELETED)
        fax(2, InboundState.QUARANTINED)
        fax(3, InboundState.STORED)
        clock.now = time.time() - 10 * DAY  # inside the retention
        recent = job("recent")
        fax(4, InboundState.DELETED)

    daemon = run_daemon(make_config(journal={"retention": "30d"}))
    with Journal.open(state) as journal:
        wait_until(lambda: journal.jobs.find(old[0]) is None, what="the retention run")
        kept = {j.id for j in journal.jobs.recent(100)}
        assert kept == {unreported, waiting, recent}
        assert {r.fax_id for r in journal.inbound.all()} == {2, 3, 4}
        events = journal.query("SELECT DISTINCT job_id FROM job_events")
        assert {r["job_id"] for r in events} == kept  # the events went with their jobs
    assert daemon.call(daemon.services.apply_retention) == 0  # nothing more to forget


def test_a_large_backlog_is_forgotten_in_short_transactions(tmp_path: Path, make_config: Callable[..., Path],
                                                             run_daemon: Callable[..., RunningDaemon]) -> None:
    state = tmp_path / "state"
    clock = Clock(time.time() - 100 * DAY)
    with Journal.open(state, clock=clock) as journal:
        for i in range(700):
            added, _ = journal.jobs.add(request(f"j{i}"), source="test", source_ref=f"j{i}", content_key=f"j{i}",
                                        durable=False)
            journal.jobs.mark_cancelled(added.id)
            journal.jobs.mark_reported(added.id)
    daemon = run_daemon(make_config())  # the default retention: 90 days
    with Journal.open(state) as journal:
        wait_until(lambda: not journal.jobs.recent(1), what="the backlog forgotten")
    assert daemon.call(daemon.services.apply_retention) == 0
