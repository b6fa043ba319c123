"""A full disk (ENOSPC) on a real, small file system: a 4 MB tmpfs mounted for the test and filled up.

Nothing is lost and nothing is refused for good: SMTP answers 451 4.3.1 (the sending server retries),
a hotfolder document stays in its folder, a received fax stays on FAX.de; once there is room again,
each goes its way. Every failure is one log line in words, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import smtplib
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faxbridge import cli_inbox as inbox
from faxbridge.cli import main
from faxbridge.config import load_config
from faxbridge.journal import Journal
from faxbridge.model import JobState, JobType, Recipient, SendRequest
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import RunningDaemon, wait_until
from test_smtp_support import SENDER, Rig, mail, relay, smtp_section  # noqa: F401 (fixture)

FAX = "+494012345678@fax.example.com"
NUMBER = "+494012345678"


class SmallDisk:
    """A tmpfs of a few MB; ``fill()`` takes every free byte, ``free()`` gives them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as f:
            for size in (65536, 1):  # big blocks, then byte by byte until not one more fits
                try:
                    while f.write(b"\0" * size):
                        pass
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root and CAP_SYS_ADMIN): "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield SmallDisk(mount)
    finally:
        # The daemon is stopped by now (run_daemon is set up after this fixture, so torn down
        # before it); a lazy unmount only in case a file is still open somewhere.
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def job_count(state_dir: Path) -> int:
    """Read-only: opening the journal for writing would itself need room."""
    db = sqlite3.connect(f"file:{state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        db.close()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A full disk is reported in words: no ERROR (or any) record carries a traceback."""
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert not with_traceback, [r.getMessage() for r in with_traceback]


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


# -- SMTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("full", ["spool and journal", "journal only"])
def test_smtp_answers_451_4_3_1_while_the_disk_is_full_and_takes_the_retried_mail(
    small_disk: SmallDisk, tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], relay: Any, caplog: pytest.LogCaptureFixture, full: str,
) -> None:
    state_dir = small_disk.root / "state"
    smtp = smtp_section(relay.port)
    if full == "journal only":  # the spool elsewhere: the journal's row is what cannot be written
        smtp["spool_dir"] = str(tmp_path / "spool")
    daemon = run_daemon(make_config(state_dir=str(state_dir), smtp=smtp))
    rig = Rig(daemon, state_dir, simulator)
    try:
        small_disk.fill()
        message = mail(subject="Voll")
        with caplog.at_level(logging.INFO):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                rig.send(message, [FAX])
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.1 ")
        assert rig.mail_rows() == []  # nothing accepted, so nothing half-accepted either
        spool = Path(smtp.get("spool_dir", state_dir / "spool"))
        assert [p.name for p in spool.iterdir()] == []  # no stub of the mail left behind
        [line] = said(caplog, "not stored: the disk is full")
        assert line.levelno == logging.WARNING
        assert_no_traceback(caplog)
        assert simulator.calls_for("SendJob") == []

        small_disk.free()  # the sending server tries again, as 451 asked it to
        rig.send(message, [FAX])
        [job] = rig.wait_final(1)
        assert job.state is JobState.DELIVERED
        assert len(simulator.calls_for("SendJob")) == 1
        assert_no_traceback(caplog)
    finally:
        rig.close()


# -- hotfolders --------------------------------------------------------------------------------


def test_a_hotfolder_document_stays_in_its_folder_while_the_disk_is_full_then_goes_out(
    small_disk: SmallDisk, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], caplog: pytest.LogCaptureFixture,
) -> None:
    folder = small_disk.root / "out"
    state_dir = small_disk.root / "state"
    folder.mkdir()
    config = make_config(
        state_dir=str(state_dir),
        hotfolders=[{"path": str(folder), "settle_time": "100ms", "rescan_interval": "300ms"}],
    )
    run_daemon(config)
    # Written while there was room, then moved in (a rename needs none) once the disk is full.
    staged = small_disk.root / f"{NUMBER} Rechnung.pdf"
    pdf = make_pdf(1, tag="disk-full")
    staged.write_bytes(pdf)
    small_disk.fill()
    with caplog.at_level(logging.INFO):
        staged.rename(folder / staged.name)
        wait_until(lambda: len(said(caplog, "left in the folder: the disk is full")) >= 2,
                   what="two attempts to take the document, both put back")
        assert (folder / staged.name).read_bytes() == pdf  # in place, whole
        assert not (folder / "failed").exists()
        assert list((folder / ".faxbridge" / "processing").iterdir()) == []
        assert simulator.calls_for("SendJob") == []
        assert job_count(state_dir) == 0
        # The journal is opened without writing: the commands an operator reaches for still work.
        assert main(["jobs", "-c", str(config)]) == 0
        assert main(["journal", "check", "-c", str(config)]) == 0
        assert all(r.levelno == logging.WARNING for r in said(caplog, "the disk is full"))
        assert_no_traceback(caplog)

        small_disk.free()
        sent = folder / "sent" / staged.name
        wait_until(lambda: (folder / "sent" / f"{NUMBER} Rechnung.status.csv").exists(),
                   what="the document sent and its status report written")
    assert sent.read_bytes() == pdf
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == pdf
    assert not (folder / "failed").exists()
    assert_no_traceback(caplog)


def test_a_document_with_its_sidecar_is_not_taken_while_its_folder_is_full(
    small_disk: SmallDisk, tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], caplog: pytest.LogCaptureFixture,
) -> None:
    # The journal has room; the folder has none, so the claim's manifest cannot be written.
    folder = small_disk.root / "out"
    folder.mkdir()
    run_daemon(make_config(hotfolders=[{"path": str(folder), "settle_time": "100ms",
                                        "rescan_interval": "300ms"}]))
    staging = small_disk.root / "staging"
    staging.mkdir()
    pdf = make_pdf(1, tag="with-sidecar")
    (staging / "Angebot.pdf").write_bytes(pdf)
    (staging / "Angebot.yaml").write_text(f"recipient: '{NUMBER}'\n")
    small_disk.fill()
    with caplog.at_level(logging.INFO):
        for name in ("Angebot.yaml", "Angebot.pdf"):
            (staging / name).rename(folder / name)
        wait_until(lambda: said(caplog, "cannot take Angebot.pdf: No space left on device"),
                   what="the claim to fail for the full disk")
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
            "Angebot.pdf", "Angebot.yaml"]
        assert (folder / "Angebot.pdf").read_bytes() == pdf
        assert simulator.calls_for("SendJob") == []
        assert_no_traceback(caplog)
        small_disk.free()
        wait_until(lambda: (folder / "sent" / "Angebot.pdf").exists(), what="the unit sent once there is room")
    [call] = simulator.calls_for("SendJob")
    assert call.params["Recipient"] == NUMBER and call.params["SendFile1"] == pdf
    assert not (folder / "failed").exists()
    # The claim begun on the full disk (a directory, a torn manifest) is cleared by the rescan.
    wait_until(lambda: not list((folder / ".faxbridge" / "processing").iterdir()),
               what="the failed claim's directory gone")
    assert_no_traceback(caplog)


def test_a_status_report_that_finds_the_disk_full_is_written_once_there_is_room(
    small_disk: SmallDisk, tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], caplog: pytest.LogCaptureFixture,
) -> None:
    folder = small_disk.root / "out"  # the folder is full; the journal (state_dir) is elsewhere
    folder.mkdir()
    simulator.polls_until_done = 1
    daemon = run_daemon(make_config(hotfolders=[{"path": str(folder), "settle_time": "100ms"}]))
    staged = small_disk.root / f"{NUMBER} Brief.pdf"
    staged.write_bytes(make_pdf(1, tag="report"))
    small_disk.fill()
    with caplog.at_level(logging.INFO):
        staged.rename(folder / staged.name)
        wait_until(lambda: said(caplog, "writing the report failed, the disk is full"),
                   what="the report to fail for the full disk")
        assert (folder / "sent" / staged.name).exists()
        with Journal.open(tmp_path / "state") as journal:
            [job] = journal.jobs.recent(10)
        assert job.state is JobState.DELIVERED and job.reported_at is None
        small_disk.free()
        report = folder / "sent" / f"{NUMBER} Brief.status.csv"
        wait_until(report.exists, what="the status report, written on a later attempt")
    assert '"OK"' in report.read_text("utf-8-sig")
    assert len(simulator.calls_for("SendJob")) == 1
    assert_no_traceback(caplog)
    daemon.stop()


def test_a_queued_job_waits_while_the_journal_disk_is_full_then_is_sent_once(
    small_disk: SmallDisk, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], caplog: pytest.LogCaptureFixture,
) -> None:
    # FAX.de fails for now, so the job keeps coming back to be sent while the disk fills.
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob"))
    daemon = run_daemon(make_config(state_dir=str(small_disk.root / "state")))
    outbound = daemon.services.outbound
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),), (), "Bitte zurückrufen")
    with caplog.at_level(logging.INFO):
        job = daemon.call(lambda: outbound.submit(request, source="cli", source_ref="waits"))
        wait_until(lambda: len(simulator.calls_for("SendJob")) >= 2, what="two failed attempts")
        small_disk.fill()
        wait_until(lambda: said(caplog, "sending waits: "), what="the sender to notice the full disk")
        tried = len(simulator.calls_for("SendJob"))
        simulator.set_faults()
        # Nothing is sent while no job can be marked 'submitting' first (at most one call that
        # was marked before the disk filled), and the job is still there to be sent.
        assert len(simulator.calls_for("SendJob")) <= tried + 1

        async def state_now() -> JobState:  # read on the daemon's loop, as its own code does
            return outbound.journal.jobs.get(job.id).state

        assert daemon.call(state_now) is JobState.QUEUED
        small_disk.free()
        wait_until(lambda: said(caplog, "sending resumes"), timeout=30, what="sending to resume")
        accepted = wait_until(lambda: [c for c in simulator.calls_for("SendJob") if c.processed], what="the job sent")
    assert len(accepted) == 1
    assert len(said(caplog, "sending waits: ")) == 1  # one line, not one per turn of the loop
    assert said(caplog, "sending waits: ")[0].levelno == logging.WARNING
    assert_no_traceback(caplog)
    assert job.id == 1


def test_the_relay_keeps_its_mail_queued_while_the_journal_disk_is_full(
    small_disk: SmallDisk, relay: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    from email.message import EmailMessage

    from faxbridge.relay import Relay, RelaySettings
    from faxbridge.config import RelayConfig
    from faxbridge.journal.mail import OutboxState

    state = small_disk.root / "state"
    report = EmailMessage()
    report["From"], report["To"], report["Subject"] = "faxbridge@example.com", SENDER, "Fax delivered"
    report.set_content("Your fax was delivered.\n")

    async def scenario() -> list[OutboxState]:
        with Journal.open(state) as journal:
            outbox = Relay(RelayConfig(host="127.0.0.1", port=relay.port), journal, state / "outbox",
                           default_from="faxbridge@example.com", settings=RelaySettings(tick=3600))
            row = await outbox.send(report)  # queued; delivery not started (start() not called)
            small_disk.fill()
            assert await outbox.deliver_due() == 0  # claiming it needs a write: it waits
            waiting = outbox.outbox.get(row.id).state
            small_disk.free()
            assert await outbox.deliver_due() == 1
            return [waiting, outbox.outbox.get(row.id).state]

    with caplog.at_level(logging.INFO):
        assert asyncio.run(scenario()) == [OutboxState.QUEUED, OutboxState.SENT]
    [line] = said(caplog, "relay: delivery waits, the journal cannot be written")
    assert line.levelno == logging.WARNING and "is full" in line.getMessage()
    assert len(relay.sink.wait_for(1)) == 1
    assert_no_traceback(caplog)


def test_a_backup_onto_a_full_disk_fails_in_one_line_and_leaves_nothing(
    small_disk: SmallDisk, tmp_path: Path, make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config()
    with Journal.open(tmp_path / "state"):
        pass
    small_disk.fill()
    assert main(["journal", "backup", "-c", str(config), str(small_disk.root)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("faxbridge: cannot write the backup ") and err.endswith(f"the disk holding {small_disk.root} is full")
    assert [p.name for p in small_disk.root.iterdir()] == ["filler"]
    small_disk.free()
    assert main(["journal", "backup", "-c", str(config), str(small_disk.root)]) == 0
    [backup] = small_disk.root.iterdir()
    assert main(["journal", "check", "--file", str(backup)]) == 0


# -- inbound faxes ---------------------------------------------------------------------------


def test_a_received_fax_stays_on_fax_de_while_its_folder_is_full_then_is_fetched_once(
    small_disk: SmallDisk, tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    output = small_disk.root / "in"
    config = load_config(make_config(inbound={"output": str(output), "pdf": True}))
    fax = simulator.add_inbound(make_tiff(3, tag="inbound-full"), originator="+4930111222")
    small_disk.fill()

    with caplog.at_level(logging.INFO):
        report = asyncio.run(inbox.receive(config, once=True))
    assert (report.end, report.stored, report.deleted) == ("error", 0, 0)
    assert f"cannot write fax {fax.fax_id} into {output}: No space left on device" in (report.error or "")
    assert report.error and report.error.endswith("it stays on FAX.de")
    assert simulator.calls_for("DeleteReceived") == []
    assert [f.fax_id for f in simulator.inbox] == [fax.fax_id]
    assert not list(output.glob("*.tif"))
    assert [r.levelname for r in said(caplog, "No space left")] == ["ERROR"]  # one line, in words
    assert_no_traceback(caplog)

    small_disk.free()
    report = asyncio.run(inbox.receive(config, once=True))
    assert (report.stored, report.deleted, report.error) == (1, 1, None)
    [tif] = output.glob("*.tif")
    assert tif.read_bytes() == fax.image
    index = (output / "received.csv").read_text("utf-8-sig").splitlines()
    assert len(index) == 2 and index[1].startswith(f'"{fax.fax_id}",')  # one whole row, no stub
    assert simulator.inbox == []
    assert len(simulator.calls_for("DeleteReceived")) == 1


def test_a_received_fax_stays_on_fax_de_while_the_journal_disk_is_full(
    small_disk: SmallDisk, tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
    run_daemon: Callable[..., RunningDaemon], caplog: pytest.LogCaptureFixture,
) -> None:
    output = tmp_path / "in"  # room for the fax; none for the journal that must record it
    daemon = run_daemon(make_config(state_dir=str(small_disk.root / "state"),
                                    inbound={"output": str(output), "interval": "200ms"}))
    [edge] = [e for e in daemon.daemon.edges if e.name == "inbox"]
    small_disk.fill()
    with caplog.at_level(logging.INFO):
        fax = simulator.add_inbound(make_tiff(2, tag="journal-full"))
        problem = wait_until(edge.health, what="the inbox edge to report the full disk")
        assert f"fax {fax.fax_id}: " in problem and "is full" in problem
        assert problem.endswith("it stays on FAX.de")
        assert simulator.calls_for("DeleteReceived") == []
        assert [f.fax_id for f in simulator.inbox] == [fax.fax_id]
        assert_no_traceback(caplog)

        small_disk.free()
        wait_until(lambda: simulator.inbox == [], what="the fax fetched and deleted once there is room")
    [tif] = output.glob("*.tif")
    assert tif.read_bytes() == fax.image
    assert len(simulator.calls_for("DeleteReceived")) == 1
    assert_no_traceback(caplog)
