"""FAX.de's status callback (STATURL): a JobId lost with a SendJob answer is found again (issue 14)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.faxde.client import FaxDeClient
from faxbridge.callbacks import STATURL_LIMIT, CallbackTokens, check_base_url, parse_callback
from faxbridge.model import JobState
from faxbridge.numbers import NumberPolicy
from faxbridge.outbound import Outbound, OutboundSettings, number_check
from faxbridge.provider import ProviderCalls
from faxbridge.simulator import Fault, FaultKind, Simulator

from conftest import ACCOUNT, PASSWORD
from test_outbound import FAST, fax, pdf  # noqa: F401  (pdf is a fixture)
from journal_backend import open_journal

BASE = "https://fax.example.com:8025/faxde/status"


def run(simulator: Simulator, tmp_path: Path, body: Callable[[Outbound, CallbackTokens], Awaitable[Any]],
        settings: OutboundSettings = FAST) -> Any:
    async def main() -> Any:
        client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url, timeout=3.0,
                             connect_timeout=1.0)
        calls = ProviderCalls(client, concurrency=2)
        tokens = CallbackTokens.load(tmp_path / "state", BASE)
        with open_journal(tmp_path / "state") as journal:
            outbound = Outbound(journal, calls, settings=settings, callbacks=tokens,
                                check_recipient=number_check(NumberPolicy()))
            try:
                return await body(outbound, tokens)
            finally:
                await outbound.stop(5)
                await calls.close()

    (tmp_path / "state").mkdir(exist_ok=True)
    return asyncio.run(main())


def staturl_of(simulator: Simulator) -> str:
    [option] = [o for o in simulator.jobs[-1].options.split(";") if o.startswith("STATURL=")]
    return option[len("STATURL="):]


def test_every_send_of_a_job_carries_the_same_staturl_so_the_duplicate_check_still_holds(
    simulator: Simulator, tmp_path: Path, pdf: Path  # noqa: F811
) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))

    async def body(outbound: Outbound, tokens: CallbackTokens) -> JobState:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        assert (await outbound.send_now(job.id)).state is JobState.UNKNOWN
        return (await outbound.retry_unknown(job.id)).state

    assert run(simulator, tmp_path, body) is JobState.CONFIRMED  # -77: the re-send was identical
    assert [c.result for c in simulator.calls_for("SendJob")] == [0, -77]
    url = staturl_of(simulator)
    assert url.startswith(BASE + "/1/") and len(url) <= STATURL_LIMIT
    assert "$JID" in url and "$STAT" in url


def test_a_callback_turns_an_unknown_job_into_a_reported_one_without_a_resend(
    simulator: Simulator, tmp_path: Path, pdf: Path  # noqa: F811
) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob"))
    manual = OutboundSettings(**{**FAST.__dict__, "reconcile_window": 0.0})  # never re-sent

    async def body(outbound: Outbound, tokens: CallbackTokens) -> tuple[JobState, int | None, list[str]]:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        assert (await outbound.send_now(job.id)).state is JobState.UNKNOWN
        assert outbound.awaiting_operator() == [job.id]
        [sim_job] = simulator.jobs
        simulator.finish_job(sim_job.job_id)
        # What FAX.de would call, checked as the HTTP route checks it.
        filled = urllib.parse.urlsplit(simulator.wait_for_status_calls(1)[0][0])
        job_id, token = filled.path.rsplit("/", 2)[-2:]
        assert int(job_id) == job.id and tokens.check(job.id, job.content_key, token)
        assert not tokens.check(job.id + 1, job.content_key, token)
        assert not tokens.check(job.id, "another content", token)
        parsed = parse_callback(dict(urllib.parse.parse_qsl(filled.query)))
        assert parsed is not None
        await outbound.on_callback(job.id, parsed[0], parsed[1])
        await outbound.on_callback(job.id, parsed[0], parsed[1])  # FAX.de may call again: harmless
        final = outbound.journal.jobs.get(job.id)
        return final.state, final.faxde_job_id, [e[2] for e in outbound.journal.jobs.events(job.id)]

    state, faxde_job_id, events = run(simulator, tmp_path, body, settings=manual)
    assert state is JobState.DELIVERED
    assert faxde_job_id == simulator.jobs[0].job_id
    assert any("status callback: JobId" in e for e in events)
    assert len(simulator.calls_for("SendJob")) == 1  # found, not re-sent


def test_a_callback_completes_the_report_of_a_confirmed_job(
    simulator: Simulator, tmp_path: Path, pdf: Path  # noqa: F811
) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))
    reported: list[tuple[JobState, int | None, bytes]] = []

    async def report(job: Any) -> None:
        reported.append((job.state, job.faxde_job_id, job.status_file))

    async def body(outbound: Outbound, tokens: CallbackTokens) -> None:
        outbound.add_reporter("test", report)
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        await outbound.send_now(job.id)
        assert (await outbound.retry_unknown(job.id)).state is JobState.CONFIRMED
        simulator.finish_job(simulator.jobs[0].job_id)
        await outbound.on_callback(job.id, simulator.jobs[0].job_id, "OK")

    run(simulator, tmp_path, body)
    assert [(state, job_id) for state, job_id, _ in reported] == [
        (JobState.CONFIRMED, None), (JobState.CONFIRMED, simulator.jobs[0].job_id)]
    assert b"OK" in reported[-1][2]  # the provider's status file: the report is complete now


def test_the_key_survives_a_restart_and_tokens_differ_per_job(tmp_path: Path) -> None:
    first = CallbackTokens.load(tmp_path, BASE)
    again = CallbackTokens.load(tmp_path, BASE)
    assert first.token(7, "k") == again.token(7, "k") != first.token(8, "k")
    assert first.token(7, "k") != first.token(7, "other")  # a restored journal reuses ids, not content
    assert (tmp_path / "callback.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "elsewhere").mkdir()
    assert CallbackTokens.load(tmp_path / "elsewhere", BASE).token(7, "k") != first.token(7, "k")  # a key each


@pytest.mark.parametrize(("url", "problem"), [
    (BASE, None),
    ("ftp://fax.example.com/x", "must start with http"),
    ("https://fax.example.com/x?a=1", "must not contain"),
    ("https://fax.example.com/" + "x" * 100, "at most"),
])
def test_the_callback_address_is_checked(url: str, problem: str | None) -> None:
    found = check_base_url(url)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("query", "expected"), [
    ({"j": "881234", "s": "OK", "r": "+4940123"}, (881234, "OK", "+4940123")),
    ({"j": "abc"}, None),
    ({"j": "-3"}, None),
    ({}, None),
])
def test_a_callback_query_is_read_strictly(query: dict[str, str], expected: Any) -> None:
    assert parse_callback(query) == expected


def test_a_resend_after_the_callback_address_changed_is_still_the_identical_request(
    simulator: Simulator, tmp_path: Path, pdf: Path  # noqa: F811
) -> None:
    # Review of issue 14: STATURL was built from the configuration of the moment, so a re-send
    # after callback_url was added (or its key lost) differed from the first request, and FAX.de
    # made a second job. What left first is journaled; every re-send is exactly that.
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))

    async def first(outbound: Outbound, tokens: CallbackTokens) -> int:
        outbound.callbacks = None  # no callback_url yet
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        assert (await outbound.send_now(job.id)).state is JobState.UNKNOWN
        return job.id

    job_id = run(simulator, tmp_path, first)

    async def after_reload(outbound: Outbound, tokens: CallbackTokens) -> JobState:
        return (await outbound.retry_unknown(job_id)).state  # now with callback_url configured

    assert run(simulator, tmp_path, after_reload) is JobState.CONFIRMED
    assert [c.result for c in simulator.calls_for("SendJob")] == [0, -77]
    assert len(simulator.jobs) == 1 and "STATURL" not in simulator.jobs[0].options


def test_a_callback_naming_a_job_fax_de_does_not_know_changes_nothing(
    simulator: Simulator, tmp_path: Path, pdf: Path  # noqa: F811
) -> None:
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob"))
    manual = OutboundSettings(**{**FAST.__dict__, "reconcile_window": 0.0})

    async def body(outbound: Outbound, tokens: CallbackTokens) -> JobState:
        job = await outbound.submit(fax(pdf), source="test", source_ref="a")
        await outbound.send_now(job.id)
        await outbound.on_callback(job.id, 999_999, "OK")  # a replayed URL with another JobId
        return outbound.journal.jobs.get(job.id).state

    assert run(simulator, tmp_path, body, settings=manual) is JobState.UNKNOWN


def test_the_daemon_takes_fax_de_s_call_and_finishes_the_unknown_job(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path], run_daemon: Callable[..., Any]
) -> None:
    # End to end: a hotfolder document whose SendJob answer was lost, FAX.de's real HTTP call to
    # the daemon's status server, and the document in sent/ with its report — one FAX.de job.
    import urllib.error
    import urllib.request

    from conftest import wait_until
    from faxbridge.simulator.samples import make_pdf
    from test_smtp_support import free_port

    port = free_port()
    folder = tmp_path / "out"
    folder.mkdir()
    config = make_config(
        metrics={"listen": f"127.0.0.1:{port}"},
        faxde={"reconcile_window": "0s", "callback_url": f"http://127.0.0.1:{port}/faxde/status"},
        hotfolders=[{"path": str(folder), "settle_time": "50ms"}],
    )
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob"))
    daemon = run_daemon(config)
    (folder / "+494012345678_Invoice.pdf").write_bytes(make_pdf(1))
    wait_until(lambda: daemon.services.outbound.awaiting_operator(), what="the job left to the operator")
    [job_id] = daemon.services.outbound.awaiting_operator()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert "faxbridge_jobs_awaiting_operator 1.0" in answer.read().decode()

    forged = f"http://127.0.0.1:{port}/faxde/status/{job_id}/aaaaaaaaaaaaaaaa?j=5&s=OK"
    try:
        urllib.request.urlopen(forged, timeout=5)
        raise AssertionError("a forged callback was taken")
    except urllib.error.HTTPError as error:
        assert error.code == 404

    simulator.finish_job(simulator.jobs[0].job_id)  # FAX.de sends the fax and calls STATURL
    [(url, status)] = simulator.wait_for_status_calls(1)
    assert status == 200 and url.startswith(f"http://127.0.0.1:{port}/faxde/status/{job_id}/")
    wait_until(lambda: (folder / "sent" / "+494012345678_Invoice.status.csv").exists(), what="the report")
    job = daemon.services.journal.jobs.get(job_id)
    assert job.state is JobState.DELIVERED and job.faxde_job_id == simulator.jobs[0].job_id
    assert len(simulator.jobs) == 1 and len(simulator.calls_for("SendJob")) == 1
