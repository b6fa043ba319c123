"""The hold/approval stage: rules, approve → SendJob, reject → failed/, restarts, expiry, audit —
with a real journal, the simulator over HTTP and real hotfolder drops."""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest

from faxbridge.faxde.client import FaxDeClient
from faxbridge.approval import HoldPolicy, HoldRule, parse_rules, sender_matches
from faxbridge.cli import main
from faxbridge.errors import FaxbridgeError
from faxbridge.journal import Journal
from faxbridge.journal.addressbook import Contact, parse_csv
from faxbridge.model import ALLOWED_TRANSITIONS, Document, Job, JobState, JobType, Recipient, SendRequest
from faxbridge.numbers import NumberPolicy
from faxbridge.outbound import Outbound, OutboundSettings, number_check
from faxbridge.provider import ProviderCalls
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import ACCOUNT, PASSWORD, RunningDaemon, wait_until

NUMBER = "+494012345678"
FOREIGN = "+4315123456"
SETTLE = 0.15
FAST = OutboundSettings(max_attempts=2, initial_delay=0.01, max_delay=0.05, duplicate_window=0,
                        status_interval=0.01, status_max_interval=0.02)


# -- the rules, as pure logic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("always", (HoldRule("always"),)),
        (True, (HoldRule("always"),)),
        (None, ()),
        (["first_time", "pages>5"], (HoldRule("first_time"), HoldRule("more_than_pages", 5))),
        ({"more_than_pages": 3}, (HoldRule("more_than_pages", 3),)),
        ("pages > 10", (HoldRule("more_than_pages", 10),)),
        (["foreign", "not-in-address-book"], (HoldRule("foreign"), HoldRule("not_in_address_book"))),
    ],
)
def test_rules_are_read_from_the_config_forms(value: Any, expected: tuple[HoldRule, ...]) -> None:
    assert parse_rules(value) == expected


@pytest.mark.parametrize("value", ["sometimes", {"pages": 3}, {"more_than_pages": -1}, ["pages>x"], 5])
def test_a_wrong_rule_is_refused_in_words(value: Any) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_rules(value)


@pytest.mark.parametrize(
    ("pattern", "address", "matches"),
    [
        ("*@example.com", "Bob@Example.com", True),
        ("example.com", "bob@example.com", True),
        ("alice@example.com", "bob@example.com", False),
        ("*@*.example.com", "bob@mail.example.com", True),
        ("*@*.example.com", "bob@example.com", False),
    ],
)
def test_sender_patterns(pattern: str, address: str, matches: bool) -> None:
    assert sender_matches(pattern, address) is matches


def test_held_moves_only_to_queued_rejected_or_cancelled() -> None:
    assert ALLOWED_TRANSITIONS[JobState.HELD] == {JobState.QUEUED, JobState.REJECTED, JobState.CANCELLED}
    assert not JobState.HELD.is_final


def test_the_address_book_csv_is_checked_whole_before_anything_is_imported() -> None:
    policy = NumberPolicy()
    normalize = lambda n: policy.normalize(n, purpose="fax")  # noqa: E731
    assert parse_csv("name;number\nACME;040 12345678\n", normalize) == [Contact("ACME", NUMBER)]
    with pytest.raises(FaxbridgeError, match=r"line 2: '0900 123456'.*premium") as info:
        parse_csv("ACME,040 12345678\nScam,0900 123456\n", normalize)
    assert "line 1" not in str(info.value)


# -- the core, with a real journal and the simulator --------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def run(simulator: Simulator, tmp_path: Path, policy: HoldPolicy,
        body: Callable[[Outbound], Awaitable[Any]], clock: Clock | None = None, expiry: float = 0.0) -> Any:
    async def main_() -> Any:
        client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url,
                             timeout=5, connect_timeout=1.0)
        calls = ProviderCalls(client, concurrency=2)
        with Journal.open(tmp_path / "state", clock=clock or time.time) as journal:
            numbers = NumberPolicy(allowed_countries=frozenset({"DE", "AT"}))
            outbound = Outbound(journal, calls, settings=FAST, check_recipient=number_check(numbers),
                                hold_policy=policy, hold_expiry=expiry, clock=clock or time.time)
            try:
                return await body(outbound)
            finally:
                await outbound.stop(5)
                await calls.close()

    return asyncio.run(main_())


def fax(tmp_path: Path, pages: int = 1, number: str = NUMBER, tag: str = "") -> SendRequest:
    path = tmp_path / f"doc-{pages}-{tag}.pdf"
    path.write_bytes(make_pdf(pages, tag=tag or str(pages)))
    return SendRequest(JobType.FAX, (Recipient(number),), (Document(path.name, path),))


def test_each_rule_holds_what_it_names_and_lets_the_rest_pass(simulator, tmp_path) -> None:
    async def states(outbound: Outbound, cases: list[tuple[SendRequest, str, dict[str, Any]]]) -> list[str]:
        out = []
        for i, (request, source, meta) in enumerate(cases):
            job = await outbound.submit(request, source=source, source_ref=str(i), meta=meta)
            if job.state is JobState.QUEUED:
                job = await outbound.send_now(job.id)  # reaches FAX.de: "sent to" from now on
            out.append(job.state.value if job.state is JobState.HELD else "sent")
        return out

    policy = HoldPolicy(
        hotfolders={"/in/hold": parse_rules("always")},
        senders=(("*@careful.example", parse_rules(["first_time"])),),
        everywhere=parse_rules(["pages>3", "foreign"]),
    )

    async def body(outbound: Outbound) -> list[str]:
        return await states(outbound, [
            (fax(tmp_path, 1), "hotfolder", {"folder": "/in/hold"}),  # the folder's rule: always
            (fax(tmp_path, 1, tag="b"), "hotfolder", {"folder": "/in/other"}),  # no rule there
            (fax(tmp_path, 4), "cli", {}),  # more than 3 pages
            (fax(tmp_path, 3, tag="c"), "cli", {}),  # 3 is not more than 3
            (fax(tmp_path, 1, FOREIGN, tag="d"), "cli", {}),  # outside DE
            (fax(tmp_path, 1, "+493012345678", tag="e"), "smtp", {"sender": "a@careful.example"}),  # first time
            (fax(tmp_path, 1, NUMBER, tag="f"), "smtp", {"sender": "a@careful.example"}),  # sent to before
            (fax(tmp_path, 1, "+493012345678", tag="g"), "smtp", {"sender": "a@other.example"}),  # no rule
        ])

    got = run(simulator, tmp_path, policy, body)
    assert got == ["held", "sent", "held", "sent", "held", "held", "sent", "sent"]
    assert len(simulator.calls_for("SendJob")) == 4


def test_not_in_the_address_book_holds_until_the_number_is_in_it(simulator, tmp_path) -> None:
    async def body(outbound: Outbound) -> tuple[Job, Job]:
        first = await outbound.submit(fax(tmp_path, tag="a"), source="cli", source_ref="a")
        outbound.journal.address_book.put([Contact("ACME", NUMBER)])
        second = await outbound.submit(fax(tmp_path, tag="b"), source="cli", source_ref="b")
        return first, second

    first, second = run(simulator, tmp_path, HoldPolicy(everywhere=parse_rules("not_in_address_book")), body)
    assert first.state is JobState.HELD and second.state is JobState.QUEUED
    with Journal.open(tmp_path / "state") as journal:
        assert "is not in the address book" in journal.jobs.held_reason(first.id)
        assert journal.address_book.name_for(NUMBER) == "ACME"


def test_approve_sends_and_reject_reports_both_audited_and_only_for_held_jobs(simulator, tmp_path) -> None:
    reported: list[Job] = []

    async def body(outbound: Outbound) -> tuple[Job, Job]:
        async def reporter(job: Job) -> None:
            reported.append(job)
        outbound.add_reporter("cli", reporter)
        a = await outbound.submit(fax(tmp_path, tag="a"), source="cli", source_ref="a")
        b = await outbound.submit(fax(tmp_path, tag="b"), source="cli", source_ref="b")
        assert (a.state, b.state) == (JobState.HELD, JobState.HELD)
        assert outbound.journal.jobs.due_for_submit(time.time() + 3600) == []  # the sender never picks them
        await outbound.approve(a.id, "alice")
        a = await outbound.send_now(a.id)
        b = await outbound.reject(b.id, "bob", "wrong recipient")
        with pytest.raises(FaxbridgeError, match=f"job {a.id} is submitted, not held; there is nothing to approve"):
            await outbound.approve(a.id, "alice")
        with pytest.raises(FaxbridgeError, match="not held; there is nothing to reject"):
            await outbound.reject(b.id, "bob", "again")
        return a, b

    a, b = run(simulator, tmp_path, HoldPolicy(everywhere=parse_rules("always")), body)
    assert a.state is JobState.SUBMITTED and len(simulator.calls_for("SendJob")) == 1
    assert b.state is JobState.REJECTED and b.last_error == "rejected by bob: wrong recipient"
    assert [j.id for j in reported] == [b.id]
    with Journal.open(tmp_path / "state") as journal:
        [approved] = journal.audit.for_job(a.id)
        [rejected] = journal.audit.for_job(b.id)
        events = [to for _, to, _ in journal.jobs.events(a.id)]
    assert (approved.user, approved.action) == ("alice", "approve")
    assert (rejected.user, rejected.action, rejected.detail) == ("bob", "reject", "wrong recipient")
    assert approved.at <= rejected.at
    assert events[:3] == ["held", "queued", "submitting"]


def test_a_held_job_expires_into_rejected_with_that_reason(simulator, tmp_path) -> None:
    clock = Clock()

    async def body(outbound: Outbound) -> tuple[list[Job], list[Job]]:
        job = await outbound.submit(fax(tmp_path), source="cli", source_ref="a")
        assert job.state is JobState.HELD
        clock.now += 3599
        early = await outbound.expire_held()
        clock.now += 2
        return early, await outbound.expire_held()

    early, late = run(simulator, tmp_path, HoldPolicy(everywhere=parse_rules("always")), body, clock, expiry=3600)
    assert early == []
    [job] = late
    assert job.state is JobState.REJECTED and "not approved within 1 hours" in job.last_error
    assert simulator.calls_for("SendJob") == []
    with Journal.open(tmp_path / "state") as journal:
        assert [(e.user, e.action) for e in journal.audit.for_job(job.id)] == [("faxbridge", "expire")]


def test_login_failures_are_counted_per_user_since_a_time(tmp_path) -> None:
    with Journal.open(tmp_path / "state") as journal:
        start = time.time()
        journal.audit.record("mallory", "login_failed", None, "from 127.0.0.1")
        journal.audit.record("mallory", "login_failed", None, "from 127.0.0.1")
        journal.audit.record("alice", "login_failed", None, "")
    with Journal.open(tmp_path / "state") as journal:  # survives a restart
        assert journal.audit.login_failures("mallory", start - 1) == 2
        assert journal.audit.login_failures("mallory", time.time() + 1) == 0
        assert [e.user for e in journal.audit.recent(2)] == ["alice", "mallory"]


# -- a hotfolder with hold: always, end to end -------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def start(make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon], folder: Path):
    def start_daemon(**overrides: Any) -> RunningDaemon:
        hotfolder = {"path": str(folder), "settle_time": f"{SETTLE}s", "hold": "always"}
        return run_daemon(make_config(hotfolders=[hotfolder], **overrides))

    return start_daemon


def held_jobs(tmp_path: Path) -> list[Job]:
    with Journal.open(tmp_path / "state") as journal:
        return journal.jobs.in_states(JobState.HELD)


def test_a_hold_folder_holds_approve_sends_reject_fails_with_the_reason(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    simulator.polls_until_done = 0
    daemon = start()
    good, bad = make_pdf(1, tag="good"), make_pdf(1, tag="bad")
    (folder / f"{NUMBER}_good.pdf").write_bytes(good)
    (folder / f"{NUMBER}_bad.pdf").write_bytes(bad)
    wait_until(lambda: len(held_jobs(tmp_path)) == 2, what="two held jobs")
    assert simulator.calls_for("SendJob") == []
    by_name = {j.meta["label"]: j for j in held_jobs(tmp_path)}
    [good_job] = [j for name, j in by_name.items() if "good" in name]
    [bad_job] = [j for name, j in by_name.items() if "bad" in name]

    outbound = daemon.services.outbound
    daemon.call(lambda: outbound.approve(good_job.id, "alice"))
    wait_until((folder / "sent" / f"{NUMBER}_good.pdf").exists, what="the approved one in sent/")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == good

    daemon.call(lambda: outbound.reject(bad_job.id, "bob", "not to this customer"))
    error = folder / "failed" / f"{NUMBER}_bad.error.txt"
    wait_until(error.exists, what="the rejected one in failed/")
    assert "rejected by bob: not to this customer" in error.read_text()
    assert "held for approval and not approved, so nothing was sent" in error.read_text()
    assert (folder / "failed" / f"{NUMBER}_bad.pdf").read_bytes() == bad
    assert len(simulator.calls_for("SendJob")) == 1


def test_a_held_job_survives_a_restart_and_is_sent_once_approved(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    daemon = start()
    (folder / f"{NUMBER}_restart.pdf").write_bytes(make_pdf(1, tag="restart"))
    [job] = wait_until(lambda: held_jobs(tmp_path), what="the held job")
    daemon.stop()
    daemon = start()
    assert [j.id for j in held_jobs(tmp_path)] == [job.id]
    assert simulator.calls_for("SendJob") == []
    assert visible(folder) == set()  # waiting in the claim area, not dropped in again
    daemon.call(lambda: daemon.services.outbound.approve(job.id, "alice"))
    wait_until((folder / "sent" / f"{NUMBER}_restart.pdf").exists, what="sent after the restart")
    assert len(simulator.calls_for("SendJob")) == 1


def test_a_rejection_from_the_cli_is_reported_by_the_running_daemon(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any, make_config: Callable[..., Path]
) -> None:
    start()
    (folder / f"{NUMBER}_cli.pdf").write_bytes(make_pdf(1, tag="cli-reject"))
    [job] = wait_until(lambda: held_jobs(tmp_path), what="the held job")
    config = tmp_path / "config.yaml"  # the daemon's own file (make_config wrote it)
    assert main(["reject", "-c", str(config), str(job.id), "--reason", "not today"]) == 0
    error = folder / "failed" / f"{NUMBER}_cli.error.txt"
    wait_until(error.exists, what="failed/ written by the daemon")
    assert f"rejected by {getpass.getuser()}: not today" in error.read_text()
    assert simulator.calls_for("SendJob") == []


def test_the_daemon_expires_a_held_document_into_failed(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start(approval={"expiry": "1s"})
    (folder / f"{NUMBER}_late.pdf").write_bytes(make_pdf(1, tag="late"))
    error = folder / "failed" / f"{NUMBER}_late.error.txt"
    wait_until(error.exists, what="the expired document in failed/")
    assert "not approved within 1 seconds (approval.expiry)" in error.read_text()
    assert simulator.calls_for("SendJob") == []


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# -- the command line --------------------------------------------------------------------------


def test_cli_lists_held_jobs_approves_and_rejects_with_the_os_user_audited(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path], capsys: Any
) -> None:
    config = make_config(approval={"hold": "always"})
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(make_pdf(1, tag="cli"))
    assert main(["send", "-c", str(config), "--to", NUMBER, str(pdf)]) == 0
    assert main(["send", "-c", str(config), "--to", "+493012345678", str(pdf)]) == 0
    capsys.readouterr()
    assert main(["jobs", "-c", str(config), "--state", "held"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("held") == 2 and simulator.calls_for("SendJob") == []

    assert main(["approve", "-c", str(config), "1"]) == 0
    assert "job 1: submitted" in capsys.readouterr().out
    assert len(simulator.calls_for("SendJob")) == 1
    report = tmp_path / "1.pdf"
    assert main(["report", "-c", str(config), "1", "-o", str(report)]) == 0
    assert "Handed over to FAX.de" in pypdf.PdfReader(report).pages[0].extract_text()
    assert main(["reject", "-c", str(config), "2", "--reason", "duplicate"]) == 0
    assert main(["approve", "-c", str(config), "2"]) == 1
    assert "job 2 is rejected, not held" in capsys.readouterr().err
    with Journal.open(tmp_path / "state") as journal:
        assert [(e.user, e.action) for e in journal.audit.for_job(1)] == [(getpass.getuser(), "approve")]
        assert journal.jobs.get(2).last_error == f"rejected by {getpass.getuser()}: duplicate"
    assert len(simulator.calls_for("SendJob")) == 1


def test_cli_imports_an_address_book(tmp_path: Path, make_config: Callable[..., Path], capsys: Any) -> None:
    config = make_config()
    book = tmp_path / "book.csv"
    book.write_text("name,number\nACME GmbH,040 12345678\nBüro Süd,+49 30 12345678\n", encoding="utf-8")
    assert main(["addressbook", "import", "-c", str(config), str(book)]) == 0
    assert main(["addressbook", "list", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ACME GmbH,+494012345678" in out and "Büro Süd,+493012345678" in out
    book.write_text("Scam,0900 123456\n", encoding="utf-8")
    assert main(["addressbook", "import", "-c", str(config), str(book)]) == 1
    assert "premium" in capsys.readouterr().err


# -- the config ---------------------------------------------------------------------------------


def _config(tmp_path: Path, **sections: Any) -> Any:
    from faxbridge.config import parse_config

    base = {"faxde": {"account": "1", "password_env": "PW"}}
    return parse_config({**base, **sections}, tmp_path, environ={"PW": "x"})


def test_the_config_names_the_key_of_a_wrong_rule_and_rules_per_channel(tmp_path: Path) -> None:
    from faxbridge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^hotfolders\[0\]\.hold: expected one of always"):
        _config(tmp_path, hotfolders=[{"path": "in", "hold": "sometimes"}])
    smtp = {"domains": {"fax.example.com": "fax"}, "allowed_senders": ["*@example.com"]}
    with pytest.raises(ConfigError, match=r"^smtp\.hold\.not an address: expected a sender"):
        _config(tmp_path, smtp={**smtp, "hold": {"not an address": "always"}})
    with pytest.raises(ConfigError, match=r"^approval\.notify: needs smtp\.relay"):
        _config(tmp_path, approval={"notify": ["a@example.com"]})
    with pytest.raises(ConfigError, match=r"^alerts\.mail_to: required"):
        _config(tmp_path, alerts={"held_after": "1h"})
    config = _config(tmp_path, hotfolders=[{"path": "in", "hold": ["first_time", "pages>2"]}],
                     smtp={**smtp, "hold": {"example.com": "always"}}, approval={"hold": "foreign", "expiry": "2d"})
    from faxbridge.daemon import hold_policy

    policy = hold_policy(config)
    assert policy.hotfolders == {str(tmp_path / "in"): (HoldRule("first_time"), HoldRule("more_than_pages", 2))}
    assert policy.senders == (("*@example.com", (HoldRule("always"),)),)
    assert policy.everywhere == (HoldRule("foreign"),) and config.approval.expiry == 2 * 86400
    assert config.alerts is None and not config.hotfolders[0].report_pdf


# -- alert conditions ---------------------------------------------------------------------------


def test_alert_conditions_by_threshold_and_provider(tmp_path: Path) -> None:
    from faxbridge.alerts import find_incidents
    from faxbridge.config import AlertsConfig

    clock = Clock()
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),), text="hello")
    alerts = AlertsConfig(mail_to=("admin@example.com",), queued_after=600, held_after=3600,
                          unknown_after=0, provider_failing_after=300)
    with Journal.open(tmp_path / "state", clock=clock) as journal:
        journal.jobs.add(request, source="t", source_ref="q", content_key="q")
        journal.jobs.add(request, source="t", source_ref="h", content_key="h", hold="always")
        assert find_incidents(journal, alerts, clock.now, unreachable_since=None, paused=None) == {}
        clock.now += 601
        assert set(find_incidents(journal, alerts, clock.now, unreachable_since=None, paused=None)) == {"queued"}
        clock.now += 3000
        found = find_incidents(journal, alerts, clock.now, unreachable_since=clock.now - 299, paused=None)
        assert set(found) == {"queued", "held"}
        assert "Jobs: 2" in found["held"].detail and "faxbridge approve" in found["held"].detail
        found = find_incidents(journal, alerts, clock.now, unreachable_since=clock.now - 300, paused=None)
        assert found["provider"].summary.startswith("FAX.de keeps failing: FAX.de unreachable for 5 min")
        paused = find_incidents(journal, alerts, clock.now, unreachable_since=None, paused="wrong password")
        assert paused["provider"].summary == "FAX.de keeps failing: wrong password"
        job = journal.jobs.begin_submit(1)
        journal.jobs.mark_unknown(job.id, "timeout")
        assert set(find_incidents(journal, alerts, clock.now, unreachable_since=None, paused=None)) == {
            "held", "unknown"}
