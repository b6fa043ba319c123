"""250 means stored: a daemon killed right after it answered 250 sends the fax after its restart,
exactly once — and a report that could not reach the relay goes out once the relay is back."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import faxbridge.relay as relay_module
from faxbridge.model import JobState
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from test_smtp_support import (  # noqa: F401 (fixtures)
    SENDER,
    Rig,
    RelayServer,
    free_port,
    mail,
    relay,
    smtp_section,
    start_rig,
    wire,
)
from journal_backend import open_journal

FAX = "+494012345678@fax.example.com"
ROOT = Path(__file__).resolve().parents[1]


def _start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "faxbridge.cli", "run", "-c", str(config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
        )


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited: {log.read_text()}")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2):
                return True
        except OSError:
            return False

    wait_until(up, timeout=20, what="the daemon's SMTP port")


def test_the_daemon_killed_right_after_250_sends_the_fax_after_restart_exactly_once(
    tmp_path, simulator, make_config, relay
) -> None:
    port = free_port()
    config = make_config(smtp=smtp_section(relay.port, listen=f"127.0.0.1:{port}"))
    log = tmp_path / "daemon.log"
    pdf = make_pdf(3, tag="crash")
    daemon = _start_daemon(config, log)
    try:
        _wait_listening(port, daemon, log)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            client.mail(SENDER)
            client.rcpt(FAX)
            code, reply = client.data(wire(mail(attachments=[("a.pdf", pdf, "application/pdf")])))
            os.kill(daemon.pid, signal.SIGKILL)  # right after 250: no time to process anything
        assert code == 250, reply
        daemon.wait(10)
        sent_before_restart = len(simulator.calls_for("SendJob"))

        daemon = _start_daemon(config, log)
        _wait_listening(port, daemon, log)
        with open_journal(tmp_path / "state") as journal:
            def finished():
                jobs = [j for j in journal.jobs.recent() if j.source == "smtp"]
                return jobs if jobs and all(j.state.is_final for j in jobs) else None

            [job] = wait_until(finished, what="the mail's job to finish after the restart")
            [row] = journal.query("SELECT state, key FROM smtp_mails")
        assert job.state is JobState.DELIVERED
        assert row["state"] == "processed" and job.source_ref == f"{row['key']}:0"
        [call] = simulator.calls_for("SendJob")  # exactly once, whatever the kill interrupted
        assert call.params["SendFile1"] == pdf
        print(f"SendJob calls before the restart: {sent_before_restart}")
        relay.sink.wait_for(1)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()


def test_a_spooled_mail_left_unprocessed_is_processed_at_the_next_start(
    tmp_path, simulator, make_config, run_daemon, relay
) -> None:
    """The deterministic twin of the kill test: processing fails after 250, the daemon stops."""
    config = make_config(smtp=smtp_section(relay.port))
    daemon = run_daemon(config)
    rig = Rig(daemon, tmp_path / "state", simulator)

    async def crash(mail_row):  # as if the process died before reading the spool
        raise OSError("simulated crash before processing")

    rig.edge._process = crash
    rig.send(mail(), [FAX])
    wait_until(lambda: rig.journal.query("SELECT attempts FROM smtp_mails")[0]["attempts"] >= 1,
               what="the failed processing attempt")
    assert simulator.calls_for("SendJob") == []
    daemon.stop()
    rig.close()

    again = Rig(run_daemon(config), tmp_path / "state", simulator)
    try:
        [job] = again.wait_final(1)
        assert job.state is JobState.DELIVERED
        assert len(simulator.calls_for("SendJob")) == 1
        relay.sink.wait_for(1)
    finally:
        again.close()


def test_reports_wait_while_the_relay_is_down_and_go_out_when_it_is_back(
    start_rig, monkeypatch
) -> None:
    monkeypatch.setattr(relay_module, "DEFAULT_SETTINGS",
                        relay_module.RelaySettings(initial_delay=0.2, max_delay=0.2, tick=0.2))
    port = free_port()  # the relay is down: nothing listens here
    rig = start_rig(port)
    rig.send(mail(), [FAX])
    rig.wait_final(1)
    wait_until(lambda: rig.journal.query("SELECT attempts FROM mail_outbox WHERE attempts > 0"),
               what="a failed delivery attempt")
    [row] = rig.journal.query("SELECT state FROM mail_outbox")
    assert row["state"] == "queued"
    server = RelayServer(port).start()
    try:
        [report] = server.sink.wait_for(1)
        assert report.message["Subject"] == "Fax delivered: Angebot"
        wait_until(lambda: rig.journal.query("SELECT 1 FROM mail_outbox WHERE state = 'sent'"),
                   what="the outbox row marked sent")
    finally:
        server.stop()


def test_a_mail_that_keeps_failing_or_vanished_is_given_up_with_a_report(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    edge = rig.edge
    process = edge._process

    async def bug(mail_row):
        raise RuntimeError("a bug in faxbridge")

    edge._process = bug
    rig.send(mail(subject="kaputt"), [FAX])
    for attempt in range(1, 5):
        wait_until(lambda: rig.mail_rows()[0]["attempts"] >= attempt, what=f"attempt {attempt}")
        rig.daemon.call(edge._tick)
    [row] = rig.wait_processed(1)
    assert row["state"] == "rejected"
    [report] = relay.sink.wait_for(1)
    assert report.message["Subject"] == "Fax NOT sent"
    assert "an error in faxbridge" in report.message.get_content()

    async def crash(mail_row):
        raise OSError("disk trouble")

    edge._process = crash
    rig.send(mail(subject="weg"), [FAX])
    wait_until(lambda: rig.mail_rows()[1]["attempts"] >= 1, what="a postponed attempt")
    for spooled in (rig.state_dir / "spool").glob("*.eml"):
        spooled.unlink()  # the operator "cleaned up"
    edge._process = process
    rig.daemon.call(edge._tick)
    rows = rig.wait_processed(2)
    assert rows[1]["state"] == "rejected"
    reports = relay.sink.wait_for(2)
    assert "was lost on the fax server" in reports[1].message.get_content()
    assert rig.simulator.calls_for("SendJob") == []
