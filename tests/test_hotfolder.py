"""Hotfolders end to end: real files in tmp_path, real inotify events, the simulator over HTTP."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.model import JobState
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import PASSWORD, RunningDaemon, wait_until
from journal_backend import open_journal

NUMBER = "+494012345678"
OTHER = "+493012345678"
SETTLE = 0.15  # short, so the tests are quick; long enough for a sidecar written right after


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def start(make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon], folder: Path):
    """``start(**hotfolder_keys)`` runs the daemon with one hotfolder at ``folder``."""

    def start_daemon(config_overrides: dict[str, Any] | None = None, **keys: Any) -> RunningDaemon:
        hotfolder = {"path": str(folder), "settle_time": f"{SETTLE}s", **keys}
        return run_daemon(make_config(hotfolders=[hotfolder], **(config_overrides or {})))

    return start_daemon


def drop(path: Path, data: bytes) -> Path:
    """Write a file the way most programs do: create, write, close."""
    path.write_bytes(data)
    return path


def sendjobs(simulator: Simulator) -> list[Any]:
    return simulator.calls_for("SendJob")


def jobs_of(tmp_path: Path) -> list[Any]:
    with open_journal(tmp_path / "state") as journal:
        return journal.jobs.recent(1000)


def pdfs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.pdf")} if folder.exists() else set()


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# -- the basic path ----------------------------------------------------------------------


def test_a_dropped_pdf_becomes_one_sendjob_then_sent_and_a_status_report(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    simulator.polls_until_done = 0  # the first JobStatus finds it done
    simulator.set_result(OTHER, "Busy")
    start(options={"STATIONID": "ACME", "FAXHEADER": "ACME GmbH"})
    pdf = make_pdf(2, tag="basic")
    drop(folder / f"{NUMBER} [INV-42] Invoice.pdf", pdf)
    drop(folder / f"{OTHER}_busy.pdf", make_pdf(1, tag="busy"))

    sent = folder / "sent" / f"{NUMBER} [INV-42] Invoice.pdf"
    wait_until(sent.exists, what="the original in sent/")
    [call] = [c for c in sendjobs(simulator) if c.params["Recipient"].startswith(NUMBER)]
    assert call.params["SendFile1"] == pdf
    assert call.params["SendFilename1"] == f"{NUMBER} [INV-42] Invoice.pdf"
    assert call.params["Recipient"] == f"{NUMBER}[INV-42]"
    assert call.params["Options"] == "STATIONID=ACME;FAXHEADER=ACME GmbH"
    assert sent.read_bytes() == pdf

    report = folder / "sent" / f"{NUMBER} [INV-42] Invoice.status.csv"
    wait_until(report.exists, what="the status report")
    rows = list(csv.reader(io.StringIO(report.read_text("utf-8-sig"))))
    assert rows[0][:3] == ["RECIPIENT", "JOBTYPE", "RESULT"]
    assert rows[0][-2:] == ["FAXBRIDGE_JOB", "FAXDE_JOBID"]
    [job] = [j for j in jobs_of(tmp_path) if j.request.recipients[0].address == NUMBER]
    assert rows[1][0] == NUMBER and rows[1][2] == "OK" and rows[1][7] == "INV-42"  # REFID
    assert rows[1][-2:] == [str(job.id), str(job.faxde_job_id)]
    assert job.state is JobState.DELIVERED
    # A delivery that failed (Busy, No Answer …) is reported the same way, and journaled as failed.
    busy = folder / "sent" / f"{OTHER}_busy.status.csv"
    wait_until(busy.exists, what="the report of the busy one")
    assert list(csv.reader(io.StringIO(busy.read_text("utf-8-sig"))))[1][2] == "Busy"
    assert {j.state for j in jobs_of(tmp_path)} == {JobState.DELIVERED, JobState.FAILED}
    assert visible(folder) == {"sent"}
    assert len(sendjobs(simulator)) == 2


# -- recipients: sidecar, list, file name, folder ---------------------------------------------


def test_a_sidecar_written_just_after_the_document_gives_recipients_options_and_text(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    start(options={"STATIONID": "ACME"})
    pdf = make_pdf(1, tag="sidecar")
    drop(folder / "Offer.pdf", pdf)
    drop(folder / "Offer.yaml", (
        "recipients:\n"
        "  - '040 12345678'\n"
        "  - {number: '+49 30 12345678', reference: BERLIN}\n"
        "reference: HAMBURG\n"
        "options: {FAXHEADER: 'Offer 7', STATIONID: SALES}\n"
        "text: Please see the attached offer.\n"
    ).encode())

    wait_until((folder / "sent" / "Offer.pdf").exists, what="the original in sent/")
    [call] = sendjobs(simulator)
    assert call.params["SendFile1"] == pdf
    assert call.params["Recipient"] == ""
    assert call.params["RecipientFile"] == f"{NUMBER},HAMBURG\n{OTHER},BERLIN\n".encode()
    assert call.params["Options"] == "STATIONID=SALES;FAXHEADER=Offer 7"
    assert call.params["SendText"] == "Please see the attached offer."
    assert (folder / "sent" / "Offer.yaml").exists()  # the instructions go along with it


def test_a_sidecar_written_before_the_document_counts_too(folder: Path, simulator: Simulator, start: Any) -> None:
    start()
    drop(folder / "Early.yaml", b"recipient: '+49 40 12345678'\nreference: R-1\n")
    drop(folder / "Early.pdf", make_pdf(1, tag="early"))
    wait_until((folder / "sent" / "Early.pdf").exists, what="the original in sent/")
    [call] = sendjobs(simulator)
    assert call.params["Recipient"] == f"{NUMBER}[R-1]"


def test_a_csv_list_sends_one_job_to_many_recipients(folder: Path, simulator: Simulator, start: Any) -> None:
    start()
    drop(folder / "Newsletter.csv", "Fax;Reference\n040 12345678;HH\n\n+49 30 12345678;B\n".encode("cp1252"))
    drop(folder / "Newsletter.pdf", make_pdf(1, tag="list"))
    wait_until((folder / "sent" / "Newsletter.pdf").exists, what="the original in sent/")
    [call] = sendjobs(simulator)
    assert call.params["RecipientFile"] == f"{NUMBER},HH\n{OTHER},B\n".encode()
    assert (folder / "sent" / "Newsletter.csv").exists()


def test_the_number_at_the_start_of_the_file_name(folder: Path, simulator: Simulator, start: Any) -> None:
    start()
    expected = {
        "0049 40 12345678 - Invoice.pdf": NUMBER,
        f"{OTHER} [INV-42] Invoice.pdf": f"{OTHER}[INV-42]",
        "040 12345678_Reminder.pdf": NUMBER,
    }
    for name in expected:
        drop(folder / name, make_pdf(1, tag=name))
    wait_until(lambda: len(pdfs(folder / "sent")) == 3, what="three files in sent/")
    assert {c.params["SendFilename1"]: c.params["Recipient"] for c in sendjobs(simulator)} == expected


def test_precedence_sidecar_over_file_name_over_folder_recipient(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    start(recipient="+49 89 12345678")
    drop(folder / f"{NUMBER}_a.yaml", b"recipient: '+49 30 12345678'\n")
    drop(folder / f"{NUMBER}_a.pdf", make_pdf(1, tag="a"))
    drop(folder / f"{NUMBER}_b.pdf", make_pdf(1, tag="b"))
    drop(folder / "c.pdf", make_pdf(1, tag="c"))
    wait_until(lambda: len(sendjobs(simulator)) == 3, what="three SendJobs")
    by_file = {c.params["SendFilename1"]: c.params["Recipient"] for c in sendjobs(simulator)}
    assert by_file == {f"{NUMBER}_a.pdf": OTHER, f"{NUMBER}_b.pdf": NUMBER, "c.pdf": "+498912345678"}


def test_a_bundle_sidecar_sends_up_to_three_documents_in_one_job(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    letter, terms = make_pdf(1, tag="letter"), make_tiff(2, tag="terms")
    drop(folder / "batch.yaml", b"recipient: '+49 40 12345678'\nfiles: [letter.pdf, terms.tif]\n")
    drop(folder / "letter.pdf", letter)
    drop(folder / "terms.tif", terms)
    wait_until((folder / "sent" / "terms.tif").exists, what="the bundle in sent/")
    [call] = sendjobs(simulator)
    assert (call.params["SendFilename1"], call.params["SendFile1"]) == ("letter.pdf", letter)
    assert (call.params["SendFilename2"], call.params["SendFile2"]) == ("terms.tif", terms)
    assert call.params["Recipient"] == NUMBER


def test_an_sms_folder_sends_text_files_as_the_message(folder: Path, simulator: Simulator, start: Any) -> None:
    start(job_type="sms")
    drop(folder / "+4917612345678_reminder.txt", "Ihr Termin morgen um 9 Uhr.\n".encode())
    wait_until((folder / "sent" / "+4917612345678_reminder.txt").exists, what="the text in sent/")
    [call] = sendjobs(simulator)
    assert call.params["JobType"] == 1
    assert call.params["SendText"] == "Ihr Termin morgen um 9 Uhr."
    assert call.params["Recipient"] == "+4917612345678"
    assert call.params["SendFilename1"] == ""


# -- picking files up safely ---------------------------------------------------------------


def test_a_file_written_slowly_is_not_taken_before_it_is_closed(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    pdf = make_pdf(3, tag="slow")
    path = folder / f"{NUMBER}_slow.pdf"
    chunk = len(pdf) // 3 + 1
    with open(path, "wb") as f:
        for i in range(0, len(pdf), chunk):
            f.write(pdf[i : i + chunk])
            f.flush()
            if i + chunk < len(pdf):
                # A pause far longer than the settle time, the file open all along: nothing happens.
                wait_for_nothing(3 * SETTLE)
                assert path.exists() and not sendjobs(simulator)
    wait_until((folder / "sent" / path.name).exists, what="the complete file in sent/")
    [call] = sendjobs(simulator)
    assert call.params["SendFile1"] == pdf


def wait_for_nothing(seconds: float) -> None:
    """Let time pass to show that something does NOT happen (there is no event to await)."""
    import time

    time.sleep(seconds)


def test_rename_into_place_and_move_in_from_elsewhere(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    renamed, moved = make_pdf(1, tag="renamed"), make_pdf(1, tag="moved")
    part = drop(folder / f"{NUMBER}_renamed.pdf.part", renamed)
    os.rename(part, folder / f"{NUMBER}_renamed.pdf")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = drop(elsewhere / f"{OTHER}_moved.pdf", moved)
    os.rename(outside, folder / outside.name)
    wait_until(lambda: len(visible(folder / "sent")) == 2 if (folder / "sent").exists() else False,
               what="both files in sent/")
    assert sorted(c.params["SendFile1"] for c in sendjobs(simulator)) == sorted([renamed, moved])


def test_temporary_and_hidden_names_are_left_alone(folder: Path, simulator: Simulator, start: Any) -> None:
    start(recipient=NUMBER)
    ignored = [".hidden.pdf", "scan.pdf.part", "~$Offer.doc", ".~lock.Offer.doc#", "copy.tmp", "Offer.pdf~"]
    for name in ignored:
        drop(folder / name, make_pdf(1, tag=name))
    drop(folder / "real.pdf", make_pdf(1, tag="real"))
    wait_until((folder / "sent" / "real.pdf").exists, what="the real file in sent/")
    assert len(sendjobs(simulator)) == 1
    assert set(ignored) <= {p.name for p in folder.iterdir()}


def test_files_present_at_start_are_sent_once_also_across_a_restart(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    for i in range(3):
        drop(folder / f"{NUMBER}_waiting {i}.pdf", make_pdf(1, tag=f"waiting {i}"))
    daemon = start()
    wait_until(lambda: (folder / "sent").exists() and len(visible(folder / "sent")) == 3, what="3 files in sent/")
    daemon.stop()
    start()
    wait_until(lambda: len(jobs_of(tmp_path)) == 3 and all(j.reported_at for j in jobs_of(tmp_path)),
               what="three reported jobs")
    assert len(sendjobs(simulator)) == 3


def test_200_files_dropped_at_once_are_each_sent_once(folder: Path, simulator: Simulator, start: Any) -> None:
    # Status polling is not what this test is about: keep JobStatus out of the way.
    start({"status": {"interval": "1h", "max_interval": "1h"}}, recipient=NUMBER)
    documents = {f"doc {i:03}.pdf": make_pdf(1, tag=f"bulk {i}") for i in range(200)}
    for name, data in documents.items():
        drop(folder / name, data)
    wait_until(lambda: len(pdfs(folder / "sent")) == 200, timeout=40, what="200 files in sent/")
    assert not pdfs(folder)
    calls = sendjobs(simulator)
    assert len(calls) == 200
    assert {c.params["SendFilename1"]: c.params["SendFile1"] for c in calls} == documents


# -- checks before paying ------------------------------------------------------------------


def test_bad_documents_go_to_failed_with_a_reason_and_no_sendjob(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    pdf = make_pdf(1, tag="bad")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    bad = {
        f"{NUMBER}_photo.pdf": (png, "is a PNG image"),
        f"{NUMBER}_empty.pdf": (b"", "empty"),
        f"{NUMBER}_cut.pdf": (pdf[: len(pdf) // 2], "truncated"),
        f"{NUMBER}_secret.pdf": (encrypted(pdf), "the PDF needs a password to open"),
        f"{NUMBER}_letter.zip": (b"PK\x03\x04" + b"\x00" * 64, "this type cannot be faxed"),
        "+4990012345678_premium.pdf": (pdf, "premium-rate"),
        "Invoice.pdf": (pdf, "no recipient"),
        "0049 40 12 - Invoice.pdf": (pdf, "not a valid number"),
    }
    drop(folder / "Broken.yaml", b"recipient: [unclosed\n")
    drop(folder / "Broken.pdf", pdf)
    for name, (data, _) in bad.items():
        drop(folder / name, data)

    failed = folder / "failed"
    for name, (_, reason) in {**bad, "Broken.pdf": (b"", "not valid YAML")}.items():
        error = failed / (name.rpartition(".")[0] + ".error.txt")
        wait_until(error.exists, what=f"{error.name}")
        text = error.read_text()
        assert reason in text, text
        assert "What to do:" in text
        assert (failed / name).exists()
    assert (failed / "Broken.yaml").exists()
    assert not sendjobs(simulator)
    assert visible(folder) == {"failed"}


def encrypted(pdf: bytes) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_the_same_document_again_is_refused_as_a_duplicate(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    pdf = make_pdf(1, tag="twice")
    drop(folder / f"{NUMBER}_twice.pdf", pdf)
    wait_until((folder / "sent" / f"{NUMBER}_twice.pdf").exists, what="the first in sent/")
    drop(folder / f"{NUMBER}_twice.pdf", pdf)
    error = folder / "failed" / f"{NUMBER}_twice.error.txt"
    wait_until(error.exists, what="the duplicate refused")
    assert "submitted as job" in error.read_text()
    assert len(sendjobs(simulator)) == 1


# -- after SendJob ---------------------------------------------------------------------------


def test_the_simulator_down_for_a_while_then_back_sends_everything_once(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    simulator.stop()
    for i in range(3):
        drop(folder / f"{NUMBER}_outage {i}.pdf", make_pdf(1, tag=f"outage {i}"))
    wait_until(lambda: len(jobs_of(tmp_path)) == 3 and all(j.attempts >= 2 for j in jobs_of(tmp_path)),
               what="three jobs retried")
    # Waiting: queued for another attempt, or (a kept-alive connection cut mid-request) unknown
    # and to be reconciled; the files stay claimed either way.
    assert {j.state for j in jobs_of(tmp_path)} <= {JobState.QUEUED, JobState.SUBMITTING, JobState.UNKNOWN}
    assert not pdfs(folder) and not pdfs(folder / "sent") and not pdfs(folder / "failed")
    simulator.start()
    wait_until(lambda: len(pdfs(folder / "sent")) == 3, what="three files in sent/")
    assert len(simulator.jobs) == 3  # each fax exactly once at FAX.de


def test_a_permanent_error_sends_the_file_to_failed_with_the_faxde_code(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    simulator.set_refusal(NUMBER, 9)
    start()
    drop(folder / f"{NUMBER}_blocked.pdf", make_pdf(1, tag="blocked"))
    error = folder / "failed" / f"{NUMBER}_blocked.error.txt"
    wait_until(error.exists, what="the error file")
    text = error.read_text()
    assert "FAX.de result: 9 (RECIPIENT_BLACKLISTED)" in text
    assert "do not send again" in text
    assert (folder / "failed" / f"{NUMBER}_blocked.pdf").exists()
    assert len(sendjobs(simulator)) == 1


def test_a_wrong_password_pauses_sending_visibly_and_the_file_waits(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    simulator.password = "changed-at-fax.de"
    daemon = start()
    drop(folder / f"{NUMBER}_paused.pdf", make_pdf(1, tag="paused"))
    notice = folder / "FAXBRIDGE-PAUSED.txt"
    wait_until(notice.exists, what="the pause notice")
    assert "Invalid/wrong password" in notice.read_text()
    [job] = jobs_of(tmp_path)
    assert job.state is JobState.QUEUED
    assert not (folder / "failed").exists()

    simulator.password = PASSWORD
    daemon.loop.call_soon_threadsafe(daemon.services.outbound.resume)  # what a restart would do
    wait_until((folder / "sent" / f"{NUMBER}_paused.pdf").exists, what="the file sent after all")
    wait_until(lambda: not notice.exists(), what="the notice removed")
    assert [c.result for c in sendjobs(simulator)] == [-1, 0]


def test_an_unknown_outcome_is_reconciled_and_reported_without_a_second_fax(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    # The first SendJob is processed but its answer lost: faxbridge re-sends the identical job,
    # which FAX.de refuses as a duplicate (-77): the document stays claimed until then.
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls={1}))
    start()
    drop(folder / f"{NUMBER}_lost answer.pdf", make_pdf(1, tag="lost"))
    report = folder / "sent" / f"{NUMBER}_lost answer.status.csv"
    wait_until(report.exists, what="the report")
    assert "FAX.de has the job" in report.read_text("utf-8-sig")
    assert [c.result for c in sendjobs(simulator)][1:] == [-77]  # the re-send: "duplicate"
    assert len(simulator.jobs) == 1


def test_faxbridge_cancel_works_for_a_scheduled_hotfolder_job(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any, make_config: Any
) -> None:
    import argparse

    from faxbridge import cli

    start()
    drop(folder / f"{NUMBER}_later.yaml", b"send_at: 2099-01-01T08:00:00+01:00\n")
    drop(folder / f"{NUMBER}_later.pdf", make_pdf(1, tag="later"))
    wait_until((folder / "sent" / f"{NUMBER}_later.pdf").exists, what="accepted, in sent/")
    [job] = jobs_of(tmp_path)
    config_path = tmp_path / "config.yaml"
    assert cli.cmd_cancel(argparse.Namespace(config=str(config_path), job_id=job.id)) == 0

    error = folder / "failed" / f"{NUMBER}_later.error.txt"
    wait_until(error.exists, what="the cancelled job in failed/")
    assert "cancelled" in error.read_text()
    assert (folder / "failed" / f"{NUMBER}_later.pdf").exists()
    assert (folder / "failed" / f"{NUMBER}_later.yaml").exists()
    assert not pdfs(folder / "sent")
    assert len(simulator.calls_for("CancelJob")) == 1


# -- the watcher survives ------------------------------------------------------------------


@pytest.mark.expected_traceback("handling a file-system event failed")
def test_the_watcher_survives_bad_names_and_failing_handlers(
    folder: Path, simulator: Simulator, start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faxbridge.edges.hotfolder import files, watcher

    # One event handler that fails, one claim that fails (as a permission error would): the
    # rescan catches both up, the watcher keeps going.
    original_event, original_claim = watcher.FolderWatcher.on_event, files._move_in
    failed_once: set[str] = set()

    def on_event(self: Any, kind: str, name: str, closes: bool) -> None:
        if name == "lost event.pdf" and "event" not in failed_once:
            failed_once.add("event")
            raise RuntimeError("handler bug")
        original_event(self, kind, name, closes)

    def claim(folder_: Path, token: str, key: str, *args: Any) -> Any:
        if key == "locked.pdf" and "claim" not in failed_once:
            failed_once.add("claim")
            raise PermissionError(13, "Permission denied")
        return original_claim(folder_, token, key, *args)

    monkeypatch.setattr(watcher.FolderWatcher, "on_event", on_event)
    monkeypatch.setattr(files, "_move_in", claim)  # one unit's moves, whether claimed alone or in a batch
    start(recipient=NUMBER, rescan_interval="300ms")

    latin1 = os.fsencode(folder) + b"/Rechnung M\xfcller.pdf"  # not UTF-8: an old Windows share
    with open(latin1, "wb") as f:
        f.write(make_pdf(1, tag="latin1"))
    drop(folder / "two\nlines.pdf", make_pdf(1, tag="newline"))
    drop(folder / "lost event.pdf", make_pdf(1, tag="lost"))
    drop(folder / "locked.pdf", make_pdf(1, tag="locked"))

    wait_until(lambda: len(sendjobs(simulator)) == 4 and not pdfs(folder), what="all four sent")
    names = {c.params["SendFilename1"] for c in sendjobs(simulator)}
    assert names == {"Rechnung Müller.pdf", "two_lines.pdf", "lost event.pdf", "locked.pdf"}
    wait_until(lambda: os.path.exists(os.fsencode(folder) + b"/sent/Rechnung M\xfcller.pdf"),
               what="the original name kept in sent/")
    assert failed_once == {"event", "claim"}


@pytest.mark.parametrize("keys", [{"polling": True}, {"watch": "poll"}])
def test_polling_mode_for_folders_without_inotify(
    folder: Path, simulator: Simulator, start: Any, keys: dict[str, Any]
) -> None:
    daemon = start(poll_interval="100ms", **keys)
    [edge] = [e for e in daemon.daemon.edges if e.name == "hotfolders"]
    assert edge.watchers[0].watch.description == "polling every 0.1 s"
    drop(folder / f"{NUMBER}_polled.pdf", make_pdf(1, tag="polled"))
    wait_until((folder / "sent" / f"{NUMBER}_polled.pdf").exists, what="the file in sent/")
    assert len(sendjobs(simulator)) == 1


# -- crashes and restarts ------------------------------------------------------------------


def test_a_claim_left_by_a_crash_before_journaling_is_sent_once_at_start(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    from faxbridge.edges.hotfolder import files

    pdf = make_pdf(1, tag="crash")
    drop(folder / f"{NUMBER}_crash.pdf", pdf)
    drop(folder / f"{NUMBER}_crash.yaml", b"reference: CRASH\n")
    # The process died right after claiming: the files are in the claim, the journal knows nothing.
    files.claim(folder, "crashed", f"{NUMBER}_crash.pdf", [f"{NUMBER}_crash.pdf"], [f"{NUMBER}_crash.yaml"])
    # And another died half-way through its claim: that one goes back into the folder.
    drop(folder / f"{OTHER}_half.pdf", make_pdf(1, tag="half"))
    half = files.claim(folder, "half", f"{OTHER}_half.pdf", [f"{OTHER}_half.pdf"], [])
    assert half is not None
    os.rename(half.dir / f"{OTHER}_half.pdf", folder / f"{OTHER}_half.pdf")

    start()
    wait_until(lambda: len(pdfs(folder / "sent")) == 2, what="both in sent/")
    calls = sendjobs(simulator)
    assert sorted(c.params["Recipient"] for c in calls) == sorted([f"{NUMBER}[CRASH]", OTHER])
    assert [c.params["SendFile1"] for c in calls if c.params["Recipient"] != OTHER] == [pdf]
    assert not list((folder / ".faxbridge" / "processing").iterdir()) or wait_until(
        lambda: not list((folder / ".faxbridge" / "processing").iterdir()), what="claims released")


def test_a_job_queued_at_shutdown_is_sent_once_after_the_restart(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    simulator.stop()
    daemon = start()
    pdf = make_pdf(1, tag="restart")
    drop(folder / f"{NUMBER}_restart.pdf", pdf)
    wait_until(lambda: len(jobs_of(tmp_path)) == 1 and jobs_of(tmp_path)[0].attempts >= 1,
               what="the job journaled and tried")
    daemon.stop()
    simulator.start()
    start()
    wait_until((folder / "sent" / f"{NUMBER}_restart.pdf").exists, what="the file in sent/")
    [call] = [c for c in sendjobs(simulator) if c.result == 0]
    assert call.params["SendFile1"] == pdf
    assert len(jobs_of(tmp_path)) == 1


def test_a_folder_removed_and_created_again_is_watched_again(
    folder: Path, simulator: Simulator, start: Any
) -> None:
    import shutil

    daemon = start(recipient=NUMBER, rescan_interval="200ms")
    [edge] = [e for e in daemon.daemon.edges if e.name == "hotfolders"]
    [watcher] = edge.watchers
    shutil.rmtree(folder)
    wait_until(lambda: not edge._watch_alive(watcher), what="the watch ended with the folder")
    folder.mkdir()
    wait_until(lambda: edge._watch_alive(watcher), what="the folder watched again")
    drop(folder / "again.pdf", make_pdf(1, tag="again"))
    wait_until((folder / "sent" / "again.pdf").exists, what="the file in sent/")
    assert len(sendjobs(simulator)) == 1


def test_files_whose_events_the_kernel_dropped_are_found_without_a_rescan(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    # inotify's queue holds 16 384 events; past that the kernel drops them and says so once, and
    # watchdog drops that notice. The watch recognises the overflow and the folder is looked at.
    daemon = start(recipient=NUMBER, rescan_interval="0s", settle_time="0s")
    [edge] = [e for e in daemon.daemon.edges if e.name == "hotfolders"]
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(3):
        (staging / f"late {i}.pdf").write_bytes(make_pdf(1, tag=f"late {i}"))
    reading = edge.watchers[0].watch._inotify._lock  # held, the reading thread waits: the queue fills
    with reading:
        for i in range(9000):  # created and closed: two events each, ignored names
            open(folder / f"{i:05d}.part", "wb").close()
        for i in range(3):  # their events are dropped
            os.rename(staging / f"late {i}.pdf", folder / f"late {i}.pdf")
    wait_until(lambda: len(pdfs(folder / "sent")) == 3, what="the three in sent/", timeout=30)
    assert len(sendjobs(simulator)) == 3


def test_a_burst_is_taken_out_of_the_folder_before_its_files_are_checked(
    folder: Path, simulator: Simulator, start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claiming and checking both hammer the file system's journal: with claims first, 20 000
    # files renamed in at once were all out of the folder 4× sooner (issue 7, bench.hotfolder_burst).
    import threading

    from faxbridge.edges.hotfolder import files, watcher

    claimed, checked = [], []
    lock = threading.Lock()
    original_move, original_handle = files._move_in, watcher.FolderWatcher.handle_claim

    def slow_move(*args: Any) -> Any:
        time.sleep(0.004)  # a busy disk
        result = original_move(*args)
        with lock:
            claimed.append(time.monotonic())
        return result

    async def handle(self: Any, claim: Any) -> None:
        with lock:
            checked.append(len(claimed))
        await original_handle(self, claim)

    monkeypatch.setattr(files, "_move_in", slow_move)
    monkeypatch.setattr(watcher.FolderWatcher, "handle_claim", handle)
    # The whole burst is there before the daemon starts, so its start-up scan finds it at once:
    # renaming the files in one by one from here raced the claimer on a loaded machine (it could
    # drain the queue between two renames, and a check then rightly came early).
    count = 250  # more than one claim batch
    for i in range(count):
        (folder / f"{NUMBER}_{i:03d}.pdf").write_bytes(make_pdf(1, tag=f"burst {i}"))
    start(settle_time="0s")
    wait_until(lambda: len(checked) == count, what="every file checked", timeout=60)
    # The first check came once the last batch was being claimed, not after the first one.
    assert checked[0] >= count - watcher._CLAIM_BATCH


def test_a_restart_that_finds_a_backlog_takes_each_file_once_without_an_error(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression (issue 14): each claimed batch started up to 32 handlers however few units it
    # had; each saw the queue non-empty, waited while claims went first, then popped from a
    # queue the others had emptied: "hotfolder: a background task failed" (IndexError), 25 to 61
    # times on each restart that found a backlog.
    from faxbridge.edges.hotfolder import files

    original_move = files._move_in

    def busy_disk(*args: Any) -> Any:
        time.sleep(0.01)  # claims go on while the first claimed units wait to be handled
        return original_move(*args)

    monkeypatch.setattr(files, "_move_in", busy_disk)
    count = 150
    for i in range(count):  # what piled up while the daemon was down, each with its sidecar
        (folder / f"{NUMBER}_{i:03d}.pdf").write_bytes(make_pdf(1, tag=f"backlog {i}"))
        (folder / f"{NUMBER}_{i:03d}.yaml").write_bytes(f"reference: B{i}\n".encode())
    simulator.polls_until_done = 1000  # JobStatus is not what this test is about
    with caplog.at_level(logging.INFO, logger="faxbridge"):
        start(settle_time="0s")
        wait_until(lambda: len(pdfs(folder / "sent")) == count, what="every file in sent/", timeout=50)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    names = sorted(j.request.documents[0].filename for j in jobs_of(tmp_path))
    assert names == sorted(f"{NUMBER}_{i:03d}.pdf" for i in range(count))  # each journaled once
    assert len(sendjobs(simulator)) == count


def test_handlers_that_outnumber_the_claimed_units_take_each_once_and_end_quietly(tmp_path: Path) -> None:
    # The root of the issue-14 race, made certain: handlers waited while claims went first, then
    # each popped a unit it had seen before the wait, from a queue the others had emptied.
    import asyncio
    from types import SimpleNamespace

    from faxbridge.edges.hotfolder import watcher as watcher_module
    from faxbridge.edges.hotfolder.plan import Unit
    from faxbridge.config import HotfolderConfig

    async def main() -> tuple[list[str], list[BaseException | None], int]:
        tasks: list[asyncio.Task[Any]] = []
        context = SimpleNamespace(spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)),
                                  slots=asyncio.Semaphore(32), active_claims=set())
        watcher = watcher_module.FolderWatcher(context, 0, HotfolderConfig(path=tmp_path))  # type: ignore[arg-type]
        handled: list[str] = []

        async def handle(taking: Any) -> None:
            handled.append(taking.token)
            await asyncio.sleep(0)

        watcher._handle_taken = handle  # type: ignore[method-assign]
        units = [Unit(f"{i}.pdf", (f"{i}.pdf",), ()) for i in range(3)]
        watcher._to_handle.extend(watcher_module._Taking(u, u.key, {}, u.key) for u in units)
        watcher._to_claim.append(watcher_module._Taking(Unit("x.pdf", ("x.pdf",), ()), "x", {}, "x"))
        for _ in range(8):  # more handlers than units, all waiting while a claim is pending
            watcher._handlers += 1
            context.spawn(watcher._handle_claimed())
        await asyncio.sleep(0.02)
        watcher._to_claim.clear()  # the claim is made: the handlers go
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return handled, results, watcher._handlers

    handled, results, handlers = asyncio.run(main())
    assert results == [None] * 8  # none failed (it was IndexError: pop from an empty deque)
    assert sorted(handled) == ["0.pdf", "1.pdf", "2.pdf"]
    assert handlers == 0


def test_jobs_of_a_hotfolder_removed_from_the_configuration_still_get_their_report(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any, make_config: Any, run_daemon: Any
) -> None:
    simulator.polls_until_done = 1000  # still running at FAX.de when the folder is removed
    daemon = start(settle_time="0s")
    drop(folder / f"{NUMBER}_late.pdf", make_pdf(1, tag="late"))
    wait_until((folder / "sent" / f"{NUMBER}_late.pdf").exists, what="the original in sent/")
    daemon.stop()
    [job] = simulator.jobs
    simulator.finish_job(job.job_id)
    run_daemon(make_config(hotfolders=[]))
    report = folder / "sent" / f"{NUMBER}_late.status.csv"
    wait_until(report.exists, what="the status report written without any hotfolder configured")
    assert [j.state for j in jobs_of(tmp_path)] == [JobState.DELIVERED]
