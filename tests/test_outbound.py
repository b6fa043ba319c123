"""The outbound core with a real journal and the simulator: sent once, retried, reconciled, reported."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.faxde.client import FaxDeClient
from faxbridge.errors import DuplicateJobError, FaxbridgeError, NumberError
from faxbridge.model import Document, Job, JobState, JobType, Recipient, SendRequest
from faxbridge.numbers import NumberPolicy
from faxbridge.outbound import Outbound, OutboundSettings, backoff, content_key, number_check
from faxbridge.provider import ProviderCalls
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import ACCOUNT, PASSWORD
from journal_backend import open_journal

FAST = OutboundSettings(
    max_attempts=3, initial_delay=0.01, max_delay=0.05, duplicate_window=3600,
    status_interval=0.01, status_max_interval=0.02, reconcile_window=5.0, account_pause=0.05,
)


def run(simulator: Simulator, tmp_path: Path, body: Callable[[Outbound], Awaitable[Any]],
        settings: OutboundSettings = FAST, timeout: float = 3.0) -> Any:
    """Run ``body(outbound)`` on a fresh loop with a real journal and FAX.de client."""

    async def main() -> Any:
        client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url,
                             timeout=timeout, connect_timeout=1.0)
        calls = ProviderCalls(client, concurrency=2)
        with open_journal(tmp_path / "state") as journal:
            outbound = Outbound(journal, calls, settings=settings,
                                check_recipient=number_check(NumberPolicy()))
            try:
                return await body(outbound)
            finally:
                await outbound.stop(5)
                await calls.close()

    return asyncio.run(main())


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "letter.pdf"
    path.write_bytes(make_pdf(2))
    return path


def fax(pdf: Path, number: str = "+49 40 12345678", **kwargs: Any) -> SendRequest:
    return SendRequest(JobType.FAX, (Recipient(number),), (Document(pdf.name, pdf),), **kwargs)


async def until_final(outbound: Outbound, job_id: int, timeout: float = 10) -> Job:
    async def loop() -> Job:
        while True:
            job = outbound.journal.jobs.get(job_id)
            if job.state.is_final:
                return job
            if job.state is JobState.SUBMITTED:
                await outbound.poll_due()
            await asyncio.sleep(0.01)
    return await asyncio.wait_for(loop(), timeout)


def test_a_job_is_sent_once_polled_and_reported_once(simulator, tmp_path, pdf) -> None:
    reported: list[Job] = []

    async def body(outbound: Outbound) -> Job:
        async def reporter(job: Job) -> None:
            reported.append(job)
        outbound.add_reporter("test", reporter)
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        assert job.request.recipients[0].address == "+494012345678"  # normalised by the core
        job = await outbound.send_now(job.id)
        assert job.state is JobState.SUBMITTED and job.faxde_job_id
        return await until_final(outbound, job.id)

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.DELIVERED and job.reported_at is not None
    assert [j.id for j in reported] == [job.id]
    assert len(simulator.calls_for("SendJob")) == 1
    assert b'"OK"' in job.status_file


def test_the_core_refuses_a_premium_number_whatever_the_edge_did(simulator, tmp_path, pdf) -> None:
    async def body(outbound: Outbound) -> None:
        with pytest.raises(NumberError, match="premium"):
            await outbound.submit(fax(pdf, "+49 900 1234567"), source="test", source_ref="a")
    run(simulator, tmp_path, body)
    assert simulator.calls_for("SendJob") == []


def test_nothing_to_send_is_refused(simulator, tmp_path) -> None:
    async def body(outbound: Outbound) -> None:
        with pytest.raises(FaxbridgeError, match="nothing to send"):
            await outbound.submit(SendRequest(JobType.FAX, (Recipient("+494012345678"),)),
                                  source="test", source_ref="a")
    run(simulator, tmp_path, body)


def test_transient_errors_are_retried_with_backoff_and_sent_once(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob", calls=frozenset({1, 2})))

    async def body(outbound: Outbound) -> Job:
        sender = asyncio.create_task(outbound.run())
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        while outbound.journal.jobs.get(job.id).state is not JobState.SUBMITTED:
            await asyncio.sleep(0.01)
        sender.cancel()
        return outbound.journal.jobs.get(job.id)

    job = run(simulator, tmp_path, body)
    assert job.attempts == 3
    assert [c.http_status for c in simulator.calls_for("SendJob")] == [500, 500, 200]
    assert len(simulator.jobs) == 1


def test_retries_are_limited_then_the_job_is_rejected_with_the_reason(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob"))

    async def body(outbound: Outbound) -> Job:
        sender = asyncio.create_task(outbound.run())
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        job = await until_final(outbound, job.id)
        sender.cancel()
        return job

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.REJECTED and "gave up after 3 attempts" in job.last_error
    assert len(simulator.calls_for("SendJob")) == 3


def test_a_permanent_error_rejects_at_once_with_the_code(simulator, tmp_path) -> None:
    disguised = tmp_path / "scan.pdf"
    disguised.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)

    async def body(outbound: Outbound) -> Job:
        job = await outbound.submit(fax(disguised), source="test", source_ref="a")
        return await outbound.send_now(job.id)

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.REJECTED and job.last_error_code == -7
    assert "Error converting document" in job.last_error


def test_a_wrong_password_pauses_all_sending_and_keeps_jobs_queued(simulator, tmp_path, pdf) -> None:
    simulator.password = "changed-at-fax.de"

    async def body(outbound: Outbound) -> tuple[Job, Job]:
        first = await outbound.submit(fax(pdf), source="test", source_ref="a")
        first = await outbound.send_now(first.id)
        second = await outbound.submit(fax(pdf, "+493012345678"), source="test", source_ref="b")
        await outbound.send_due()
        await asyncio.sleep(0.1)  # give a wrongly started send every chance to happen
        assert "Invalid/wrong password" in (outbound.paused or "")
        return first, outbound.journal.jobs.get(second.id)

    first, second = run(simulator, tmp_path, body)
    assert first.state is JobState.QUEUED and first.last_error_code == -1
    assert second.state is JobState.QUEUED and second.attempts == 0
    assert len(simulator.calls_for("SendJob")) == 1  # retrying would only burn the account


def test_a_dropped_answer_is_reconciled_by_faxde_duplicate_check(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))

    async def body(outbound: Outbound) -> Job:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        job = await outbound.send_now(job.id)
        assert job.state is JobState.UNKNOWN
        while not outbound.journal.jobs.get(job.id).state.is_final:
            await asyncio.sleep(0.01)
        return outbound.journal.jobs.get(job.id)

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.CONFIRMED
    assert len(simulator.jobs) == 1  # sent once, paid once
    assert [c.result for c in simulator.calls_for("SendJob")] == [0, -77]


def test_a_request_lost_before_processing_is_sent_by_the_reconciliation(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_BEFORE, operation="SendJob", calls=frozenset({1})))

    async def body(outbound: Outbound) -> Job:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        await outbound.send_now(job.id)
        while outbound.journal.jobs.get(job.id).state in (JobState.UNKNOWN, JobState.SUBMITTING):
            await asyncio.sleep(0.01)
        return outbound.journal.jobs.get(job.id)

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.SUBMITTED and job.faxde_job_id == simulator.jobs[0].job_id
    assert len(simulator.jobs) == 1


def test_past_the_reconcile_window_only_the_operator_resends(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))
    manual = OutboundSettings(**{**FAST.__dict__, "reconcile_window": 0.0})

    async def body(outbound: Outbound) -> tuple[Job, Job]:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        job = await outbound.send_now(job.id)
        await asyncio.sleep(0.1)  # nothing may happen on its own
        waiting = outbound.journal.jobs.get(job.id)
        return waiting, await outbound.retry_unknown(job.id)

    waiting, retried = run(simulator, tmp_path, body, settings=manual)
    assert waiting.state is JobState.UNKNOWN and len(simulator.calls_for("SendJob")) == 2
    assert retried.state is JobState.CONFIRMED


def test_a_crash_during_sendjob_is_never_resent_blindly(simulator, tmp_path, pdf) -> None:
    manual = OutboundSettings(**{**FAST.__dict__, "reconcile_window": 0.0})

    async def crashed(outbound: Outbound) -> Job:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        return outbound.journal.jobs.begin_submit(job.id)  # …and the process dies here

    async def restarted(outbound: Outbound) -> Job:
        recovered = outbound.recover()
        await outbound.send_due()
        await asyncio.sleep(0.05)
        assert [j.id for j in recovered] == [1]
        return outbound.journal.jobs.get(1)

    run(simulator, tmp_path, crashed)
    job = run(simulator, tmp_path, restarted, settings=manual)
    assert job.state is JobState.UNKNOWN and "stopped while SendJob was in flight" in job.last_error
    assert simulator.calls_for("SendJob") == []


def test_a_fresh_crash_is_reconciled_automatically(simulator, tmp_path, pdf) -> None:
    async def crashed(outbound: Outbound) -> None:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        outbound.journal.jobs.begin_submit(job.id)

    async def restarted(outbound: Outbound) -> Job:
        outbound.recover()
        while outbound.journal.jobs.get(1).state in (JobState.UNKNOWN, JobState.SUBMITTING):
            await asyncio.sleep(0.01)
        return outbound.journal.jobs.get(1)

    run(simulator, tmp_path, crashed)
    job = run(simulator, tmp_path, restarted)
    assert job.state is JobState.SUBMITTED and len(simulator.jobs) == 1


def test_the_same_content_twice_is_refused_but_can_be_forced(simulator, tmp_path, pdf) -> None:
    async def body(outbound: Outbound) -> None:
        first = await outbound.submit(fax(pdf), source="test", source_ref="a")
        with pytest.raises(DuplicateJobError) as err:
            await outbound.submit(fax(pdf), source="test", source_ref="b")
        assert err.value.existing_job_id == first.id
        forced = await outbound.submit(fax(pdf), source="test", source_ref="c", allow_duplicate=True)
        assert forced.id != first.id
    run(simulator, tmp_path, body)


def test_cancel_a_queued_and_a_scheduled_job(simulator, tmp_path, pdf) -> None:
    import datetime as dt

    later = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)

    async def body(outbound: Outbound) -> tuple[Job, Job]:
        queued = await outbound.submit(fax(pdf), source="test", source_ref="a")
        scheduled = await outbound.submit(fax(pdf, "+493012345678", send_at=later), source="test", source_ref="b")
        await outbound.send_now(scheduled.id)
        return await outbound.cancel(queued.id), await outbound.cancel(scheduled.id)

    queued, scheduled = run(simulator, tmp_path, body)
    assert queued.state is JobState.CANCELLED and scheduled.state is JobState.CANCELLED
    assert len(simulator.calls_for("SendJob")) == 1 and len(simulator.calls_for("CancelJob")) == 1


def test_a_failing_reporter_is_retried_until_it_succeeds(simulator, tmp_path, pdf) -> None:
    attempts: list[int] = []

    async def body(outbound: Outbound) -> Job:
        async def flaky(job: Job) -> None:
            attempts.append(job.id)
            if len(attempts) == 1:
                raise OSError("disk full")
        outbound.add_reporter("test", flaky)
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        job = await outbound.cancel(job.id)
        assert job.reported_at is None
        await outbound.report_pending()
        assert attempts == [job.id]  # not at once: the retry waits its backoff
        await asyncio.sleep(0.35)
        await outbound.report_pending()
        return outbound.journal.jobs.get(job.id)

    # a backoff long enough that a loaded machine cannot reach it between two calls
    slow = OutboundSettings(**{**FAST.__dict__, "status_interval": 0.3, "status_max_interval": 0.3})
    job = run(simulator, tmp_path, body, settings=slow)
    assert job.reported_at is not None and attempts == [job.id, job.id]


def test_shutdown_waits_for_a_slow_sendjob_and_records_it(simulator, tmp_path, pdf) -> None:
    simulator.set_faults(Fault(FaultKind.DELAY, operation="SendJob", seconds=0.5))

    async def body(outbound: Outbound) -> Job:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        task = asyncio.create_task(outbound.send_now(job.id))
        while outbound.journal.jobs.get(job.id).state is not JobState.SUBMITTING:
            await asyncio.sleep(0.01)
        await outbound.stop(timeout=5)
        assert task.done()
        return outbound.journal.jobs.get(job.id)

    job = run(simulator, tmp_path, body)
    assert job.state is JobState.SUBMITTED


def test_a_backlog_starts_only_the_sends_that_can_run_and_sends_every_job_once(simulator, tmp_path, pdf) -> None:
    # A task per due job, and every due id read again at each wake-up, made a backlog of n jobs
    # cost n² (issue 7): the sender starts 2 × concurrency at most, the next as each finishes.
    started: list[int] = []

    async def body(outbound: Outbound) -> list[Job]:
        for i in range(30):
            await outbound.submit(fax(pdf, text=f"page {i}"), source="test", source_ref=str(i))
        original = outbound._start_send

        def start(job_id: int) -> Any:
            started.append(len(outbound._in_flight))
            return original(job_id)

        outbound._start_send = start  # type: ignore[method-assign]
        sender = asyncio.create_task(outbound.run())
        try:
            while len(outbound.journal.jobs.in_states(JobState.SUBMITTED)) < 30:
                await asyncio.sleep(0.01)
        finally:
            sender.cancel()
        return outbound.journal.jobs.in_states(JobState.SUBMITTED)

    jobs = run(simulator, tmp_path, body)
    assert len(jobs) == 30 and {j.attempts for j in jobs} == {1}
    assert len(simulator.calls_for("SendJob")) == 30
    assert max(started) < 4  # concurrency 2 in run(): never more than 4 started at once


def test_content_key_depends_on_every_part(tmp_path, pdf) -> None:
    other = tmp_path / "other.pdf"
    other.write_bytes(make_pdf(2, tag="x"))
    base = content_key(fax(pdf))
    assert content_key(fax(pdf)) == base
    assert content_key(fax(pdf, "+493012345678")) != base
    assert content_key(fax(pdf, text="note")) != base
    assert content_key(SendRequest(JobType.FAX, (Recipient("+49 40 12345678"),),
                                   (Document(pdf.name, other),))) != base


@pytest.mark.parametrize("attempt, expected", [(1, 30), (2, 60), (3, 120), (8, 3600), (20, 3600)])
def test_backoff_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert backoff(attempt, 30, 3600) == expected


@pytest.mark.parametrize(
    ("since", "last_sent", "resends", "now", "due"),
    [
        (0, 0, 0, 0, 4),  # the first re-send: initial_delay after the request that left
        (0, 4, 1, 4, 12),  # then doubled: 8 s after the last one
        (30, 40, 3, 40, 56),  # capped at max_delay (16 s), never 32
        (0, 0, 0, 30, 30),  # back from a 30 s outage: at once, not initial_delay after the start
        (0, 48, 1, 50, 52.5),  # late in the window: half of what is left, not the full 8 s
        (0, 50, 1, 56, None),  # the last 5 s are a margin: a re-send must arrive, not only leave
        (0, 20, 1, 10, None),  # the clock was set back: nobody can tell how long ago it left
        (0, 0, 0, 60, None),  # the window has passed: the operator decides
        (0, 59, 5, 61, None),  # re-sends and restarts do not stretch it
    ],
)
def test_reconcile_resends_follow_the_backoff_and_never_the_restart(
    since: float, last_sent: float, resends: int, now: float, due: float | None
) -> None:
    from faxbridge.journal.jobs import Ambiguity
    from faxbridge.outbound import next_reconcile_at

    settings = OutboundSettings(initial_delay=4, max_delay=16, reconcile_window=60)
    assert next_reconcile_at(Ambiguity(since, last_sent, resends), now, settings) == due


def test_a_job_abandoned_in_submitting_is_shown_to_the_operator(tmp_path: Path) -> None:
    # Review of issue 14: a CLI command killed mid-call (or an answer lost to a full disk) left
    # a job 'submitting' that nothing looked at until a restart, and nothing flagged it.
    from faxbridge.outbound import ORPHANED_AFTER, awaiting_operator

    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf(1))
    with open_journal(tmp_path / "state") as journal:
        job, _ = journal.jobs.add(fax(pdf), source="cli", source_ref="x", content_key="k", duplicate_window=0)
        journal.jobs.begin_submit(job.id)
        now = journal.jobs.get(job.id).updated_at.timestamp()
        assert awaiting_operator(journal, 30.0, now + 60) == []
        assert awaiting_operator(journal, 30.0, now + ORPHANED_AFTER + 1) == [job.id]
        assert awaiting_operator(journal, 30.0, now + ORPHANED_AFTER + 1, busy={job.id}) == []


def test_duplicate_answer_to_a_plain_retry_confirms_the_job(simulator: Simulator, tmp_path: Path, pdf: Path) -> None:
    # Review of issue 14: an attempt that failed in a way that looked certain (HTTP 500) may still
    # have reached FAX.de; its -77 to the retry meant "I have it", and the job was 'rejected'.
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob", calls=frozenset({2})))

    async def body(outbound: Outbound) -> JobState:
        job = await outbound.submit(fax(pdf), source="test", source_ref="b")
        await outbound.provider.send_job(job.request)  # call 1: FAX.de holds the identical job
        assert (await outbound.send_now(job.id)).state is JobState.QUEUED  # call 2: HTTP 500
        return (await outbound.send_now(job.id)).state  # call 3, the retry: -77

    assert run(simulator, tmp_path, body) is JobState.CONFIRMED
    assert [c.result for c in simulator.calls_for("SendJob")][-1] == -77
    assert len(simulator.jobs) == 1


def test_an_unexpected_failure_during_sendjob_leaves_the_job_unknown_not_rejected(
    simulator: Simulator, tmp_path: Path, pdf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review of issue 14: the request may have left before a bug struck; 'rejected' told the sender
    # to send it again while FAX.de was sending it.
    calls = {"n": 0}
    real = FaxDeClient.send_job

    async def flaky(self: FaxDeClient, request: SendRequest) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            await real(self, request)  # it reached FAX.de …
            raise RuntimeError("a bug after the answer")  # … and then something broke
        return await real(self, request)

    monkeypatch.setattr(FaxDeClient, "send_job", flaky)

    async def body(outbound: Outbound) -> JobState:
        job = await outbound.submit(fax(pdf), source="test", source_ref="c")
        assert (await outbound.send_now(job.id)).state is JobState.UNKNOWN
        for _ in range(300):
            state = outbound.journal.jobs.get(job.id).state
            if state.is_final:
                return state
            await asyncio.sleep(0.01)
        return outbound.journal.jobs.get(job.id).state

    assert run(simulator, tmp_path, body) is JobState.CONFIRMED  # reconciled: -77
    assert len(simulator.jobs) == 1
