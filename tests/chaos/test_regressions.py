"""Defects the issue 8 campaign found, each pinned down by a deterministic test of its own: the
daemon (`faxbridge run`, a subprocess) dies at a named crash point, is started again, and the
outcome must be what it would have been without the crash."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.crashpoints import ENVIRONMENT_VARIABLE, EXIT_STATUS
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
NUMBER = "+494012345678"


class Life:
    """One run of `faxbridge run -c CONFIG`, optionally with a crash point."""

    def __init__(self, config: Path, log: Path, crash_at: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_VARIABLE}
        if crash_at:
            env[ENVIRONMENT_VARIABLE] = crash_at
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "faxbridge", "run", "-c", str(config)],
                                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    def crashed(self, point: str, timeout: float = 30) -> None:
        assert self.process.wait(timeout) == EXIT_STATUS, self.log.read_text()
        assert f"crash point {point} reached" in self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(30) == 0, self.log.read_text()


@pytest.fixture
def hotfolder(tmp_path: Path, make_config: Callable[..., Path]) -> tuple[Path, Path]:
    folder = tmp_path / "out"
    folder.mkdir()
    config = make_config(hotfolders=[{"path": str(folder), "settle_time": "100ms", "rescan_interval": "300ms"}])
    return folder, config


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_a_refusal_cut_short_before_its_error_file_is_finished_after_the_restart(
    tmp_path: Path, hotfolder: tuple[Path, Path], simulator: Simulator
) -> None:
    # Regression (issue 8 campaign): the files of a refused document were moved to failed/ first
    # and NAME.error.txt written after; a crash in between left the document in failed/ with no
    # reason at all, and the claim was forgotten at the next start.
    folder, config = hotfolder
    (folder / f"{NUMBER}_empty.pdf").write_bytes(b"")
    life = Life(config, tmp_path / "daemon.log", crash_at="reports.during_write")
    life.crashed("reports.during_write")

    life = Life(config, tmp_path / "daemon.log")
    try:
        error = folder / "failed" / f"{NUMBER}_empty.error.txt"
        wait_until(error.exists, what="the error file after the restart")
        wait_until(lambda: not (folder / ".faxbridge" / "processing").exists()
                   or not list((folder / ".faxbridge" / "processing").iterdir()), what="the claim released")
    finally:
        life.stop()
    assert "empty" in error.read_text()
    assert visible(folder / "failed") == {f"{NUMBER}_empty.pdf", f"{NUMBER}_empty.error.txt"}
    assert visible(folder) == {"failed", ".faxbridge"}
    assert simulator.calls_for("SendJob") == []


def test_a_reconciliation_due_while_its_send_is_still_finishing_is_not_dropped(
    simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (issue 8 resource run): the reconciling re-send of an unknown job is a timer; when
    # the loop was busy at that moment, the timer could fire before the task that made the job
    # unknown had left the in-flight table, and _reconcile returned without sending — the job sat
    # in 'unknown' (its document hidden in the claim, nobody told) until the daemon restarted.
    import asyncio
    import time

    from faxbridge.faxde.client import FaxDeClient
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
    from faxbridge.numbers import NumberPolicy
    from faxbridge.outbound import Outbound, OutboundSettings, number_check
    from faxbridge.provider import ProviderCalls
    from faxbridge.simulator import Fault, FaultKind

    from conftest import ACCOUNT, PASSWORD

    settings = OutboundSettings(initial_delay=0.05, max_delay=0.1, reconcile_window=30.0)
    schedule = Outbound._schedule_reconcile

    def stalled(self: Outbound, job: object) -> None:
        schedule(self, job)  # type: ignore[arg-type]
        time.sleep(0.1)  # the loop busy elsewhere (fsyncs, hashing) past the re-send's delay

    monkeypatch.setattr(Outbound, "_schedule_reconcile", stalled)
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(make_pdf(1))

    async def main() -> JobState:
        client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url, timeout=5)
        calls = ProviderCalls(client, concurrency=2)
        with Journal.open(tmp_path / "state") as journal:
            outbound = Outbound(journal, calls, settings=settings, check_recipient=number_check(NumberPolicy()))
            request = SendRequest(JobType.FAX, (Recipient(NUMBER),), (Document(pdf.name, pdf),))
            job = await outbound.submit(request, source="test", source_ref="a")
            assert (await outbound.send_now(job.id)).state is JobState.UNKNOWN
            for _ in range(300):
                if journal.jobs.get(job.id).state.is_final:
                    break
                await asyncio.sleep(0.01)
            await outbound.stop(5)
            await calls.close()
            return journal.jobs.get(job.id).state

    assert asyncio.run(main()) is JobState.CONFIRMED
    assert [c.result for c in simulator.calls_for("SendJob")] == [0, -77]


def test_the_sidecar_cache_forgets_sidecars_that_left_the_folder(tmp_path: Path) -> None:
    # Regression (issue 8 resource bounds): each folder watcher cached the `files:` list of every
    # YAML sidecar it ever read, by name, and never let go — memory growing with every sidecar for
    # as long as the daemon ran.
    from faxbridge.edges.hotfolder.watcher import FolderWatcher
    from faxbridge.config import HotfolderConfig

    watcher = FolderWatcher(None, 0, HotfolderConfig(path=tmp_path))  # type: ignore[arg-type]
    for i in range(50):
        (tmp_path / f"batch {i}.yaml").write_text(f"files: [letter {i}.pdf]\n")
    names = [f"batch {i}.yaml" for i in range(50)]
    assert watcher._read_bundles(names)["batch 7.yaml"] == ("letter 7.pdf",)
    for name in names[:45]:  # taken into claims
        (tmp_path / name).unlink()
    assert set(watcher._read_bundles(names[45:])) == set(names[45:])
    assert set(watcher._bundle_cache) == set(names[45:])


def test_names_that_differ_only_in_unicode_composition_form_one_unit() -> None:
    # Regression (issue 8 bad input): "Müller.pdf" saved by a Mac (u + U+0308) and "Müller.yaml"
    # saved on Windows (ü) did not meet: the document went out to the number in its name,
    # ignoring the sidecar's recipient, and the sidecar waited for ever.
    import unicodedata

    from faxbridge.edges.hotfolder.plan import Unit, plan_units

    nfd = unicodedata.normalize("NFD", "Müller.pdf")
    nfc_yaml = unicodedata.normalize("NFC", "Müller.yaml")
    assert plan_units({nfd, nfc_yaml}, set(), {nfc_yaml: ()}) == [Unit(nfd, (nfd,), (nfc_yaml,))]
    # A bundle lists names as typed (composed); the files on disk are decomposed.
    bundle = "Bündel.yaml"
    files = (unicodedata.normalize("NFC", "Brief für Jörg.pdf"), "AGB.pdf")
    on_disk = {unicodedata.normalize("NFD", files[0]), "AGB.pdf", bundle}
    [unit] = plan_units(on_disk, set(), {bundle: files})
    assert unit.documents == (unicodedata.normalize("NFD", files[0]), "AGB.pdf") and not unit.problem


def test_a_mail_killed_between_spool_and_journal_leaves_nothing_in_the_spool(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # Regression (issue 8 campaign): a crash after the mail's bytes were spooled and before its row
    # was journaled (no 250 was sent) left KEY.eml in the spool for good: nothing knew it.

    from test_smtp_support import free_port, mail, wire

    port = free_port()
    config = make_config(smtp={"listen": f"127.0.0.1:{port}", "domains": {"fax.example.com": "fax"},
                               "allowed_senders": ["*@example.com"]})
    spool = tmp_path / "state" / "spool"

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@example.com", [f"{NUMBER}@fax.example.com"],
                            wire(mail(attachments=[("a.pdf", make_pdf(1), "application/pdf")])))

    life = Life(config, tmp_path / "daemon.log", crash_at="smtp.after_spool")
    wait_until(lambda: _smtp_listening(port), what="the SMTP port")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send()
    life.crashed("smtp.after_spool")
    assert [p.suffix for p in spool.iterdir()] == [".eml"]

    life = Life(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: _smtp_listening(port), what="the SMTP port after the restart")
        assert list(spool.iterdir()) == []
        assert "removed 1 mail(s) a crash left" in life.log.read_text()
        send()  # the sending server's retry: sent once
        wait_until(lambda: simulator.calls_for("SendJob"), what="the fax")
    finally:
        life.stop()
    assert len(simulator.calls_for("SendJob")) == 1


def test_a_mail_written_to_the_outbox_but_not_journaled_is_not_left_behind(tmp_path: Path) -> None:
    # Regression (issue 8 campaign): each queued mail got a random file name; a crash between the
    # write and the row left a file nothing knew about, and the caller's second attempt after the
    # restart wrote another one.
    import asyncio
    from email.message import EmailMessage

    from faxbridge.relay import Relay
    from faxbridge.config import RelayConfig
    from faxbridge.journal import Journal
    from faxbridge.journal.mail import OutboxTable

    message = EmailMessage()
    message["To"], message["Subject"] = "alice@example.com", "Fax delivered"
    message.set_content("delivered\n")
    outbox = tmp_path / "state" / "outbox"
    with Journal.open(tmp_path / "state") as journal:
        relay = Relay(RelayConfig(host="127.0.0.1", port=9), journal, outbox, default_from="fax@example.com")

        def dies(*args: object, **kwargs: object) -> None:
            raise SystemExit("killed between the file and its row")

        original = OutboxTable.add
        OutboxTable.add = dies  # type: ignore[method-assign]
        try:
            with pytest.raises(SystemExit):
                asyncio.run(relay.send(message, key="smtp-job:42"))
        finally:
            OutboxTable.add = original  # type: ignore[method-assign]
        assert len(list(outbox.iterdir())) == 1
        row = asyncio.run(relay.send(message, key="smtp-job:42"))  # the report, written again
        assert list(outbox.iterdir()) == [row.path]
        again = asyncio.run(relay.send(message, key="smtp-job:42"))  # queued once: the same row
        assert again.id == row.id and list(outbox.iterdir()) == [row.path]


def test_a_fax_stored_but_not_yet_mailed_is_mailed_before_its_delete_after_a_crash(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # Regression (issue 8 long campaign): a crash after a fax was journaled 'stored' and before its
    # route's mail was queued; at the next start the run began with the faxes awaiting their
    # delete — and deleted it at FAX.de without queueing the mail, which was then lost for good.
    from faxbridge.simulator.samples import make_tiff

    from test_smtp_support import RelayServer

    relay = RelayServer().start()
    try:
        config = make_config(
            inbound={"output": str(tmp_path / "in"),
                     "routes": [{"called_number": "+494012345", "mail_to": ["sales@example.com"]}]},
            smtp={"listen": "127.0.0.1:0", "domains": {"fax.example.com": "fax"},
                  "allowed_senders": ["*@example.com"], "relay": f"127.0.0.1:{relay.port}"},
        )
        fax = simulator.add_inbound(make_tiff(2, tag="mail me"), called_number="+494012345")
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_VARIABLE}
        receive = [sys.executable, "-m", "faxbridge", "receive", "-c", str(config), "--once"]
        crashed = subprocess.run(receive, env={**env, ENVIRONMENT_VARIABLE: "inbound.after_journal"},
                                 capture_output=True, text=True, timeout=60)
        assert crashed.returncode == EXIT_STATUS, crashed.stderr
        assert simulator.inbox and simulator.calls_for("DeleteReceived") == []

        again = subprocess.run(receive, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        [mailed] = relay.sink.wait_for(1)
        assert str(fax.fax_id) in mailed.message.get_body(("plain",)).get_content()
        assert simulator.inbox == [] and len(simulator.calls_for("DeleteReceived")) == 1
    finally:
        relay.stop()


def test_a_mail_refused_just_before_a_crash_still_gets_its_report(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # Regression (issue 8 campaign): a refused mail was marked processed first and its report
    # queued after; a crash in between lost the report — nothing processes a marked mail again.

    from test_smtp_support import RelayServer, free_port, mail, wire

    relay = RelayServer().start()
    port = free_port()
    config = make_config(smtp={"listen": f"127.0.0.1:{port}", "domains": {"fax.example.com": "fax"},
                               "allowed_senders": ["*@example.com"], "relay": f"127.0.0.1:{relay.port}"})

    life = Life(config, tmp_path / "daemon.log", crash_at="smtp.after_processed")
    try:
        wait_until(lambda: _smtp_listening(port), what="the SMTP port")
        docx = ("Angebot.docx", b"PK\x03\x04" + b"\0" * 64, "application/octet-stream")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@example.com", [f"{NUMBER}@fax.example.com"], wire(mail(attachments=[docx])))
        life.crashed("smtp.after_processed")
        life = Life(config, tmp_path / "daemon.log")
        [report] = relay.sink.wait_for(1)
        assert report.message["Subject"].startswith("Fax NOT sent")
        assert simulator.calls_for("SendJob") == []
    finally:
        life.stop()
        relay.stop()


def test_a_job_left_unknown_past_the_reconcile_window_makes_the_daemon_unhealthy(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path], run_daemon: Callable[..., Any]
) -> None:
    # Issue 8: an input is sent exactly once or visibly marked. A job whose outcome stayed unknown
    # was visible only in one log line: its hotfolder document sat hidden in the claim, /healthz
    # and `faxbridge health` said all was well.
    import json
    import urllib.request

    from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
    from faxbridge.simulator import Fault, FaultKind

    from test_smtp_support import free_port

    port = free_port()
    daemon = run_daemon(make_config(metrics={"listen": f"127.0.0.1:{port}"}, faxde={"reconcile_window": "0s"}))
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob"))
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(make_pdf(1))
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),), (Document(pdf.name, pdf),))
    job = daemon.call(lambda: daemon.services.outbound.submit(request, source="test", source_ref="u"))
    wait_until(lambda: daemon.services.journal.jobs.get(job.id).state is JobState.UNKNOWN, what="unknown")

    def health() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = wait_until(lambda: (lambda h: h if h[0] == 503 else None)(health()), what="unhealthy")
    assert any(f"1 job(s) need the operator, SendJob's outcome unknown: {job.id}" in p for p in body["problems"])
    daemon.call(lambda: daemon.services.outbound.cancel(job.id))
    assert wait_until(lambda: health()[0] == 200, what="healthy again once the operator decided")


def _smtp_listening(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2):
            return True
    except OSError:
        return False
