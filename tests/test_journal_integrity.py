"""`faxbridge journal check` and `faxbridge journal backup` on real SQLite files, and a backup taken
while the real daemon keeps journaling jobs it sends to the simulator."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faxbridge.cli import main
from faxbridge.errors import JournalError
from faxbridge.journal import JOURNAL_NAME, Journal
from faxbridge.journal import integrity
from faxbridge.model import (
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
from faxbridge.journal.inbound import InboundState

from conftest import RunningDaemon, wait_until


def fax(document: Path, text: str = "") -> SendRequest:
    return SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(document.name, document),), text)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A journal with a job in most states, a received fax and its file: a sound one."""
    state = tmp_path / "state"
    document = tmp_path / "Angebot.pdf"
    document.write_bytes(b"%PDF-1.4 stand-in")
    tif = tmp_path / "in" / "fax.tif"
    tif.parent.mkdir()
    tif.write_bytes(b"II*\x00 stand-in")
    with Journal.open(state) as journal:
        jobs = journal.jobs
        queued, _ = jobs.add(fax(document, "1"), source="cli", source_ref="queued", content_key="1")
        sent, _ = jobs.add(fax(document, "2"), source="cli", source_ref="sent", content_key="2")
        jobs.begin_submit(sent.id)
        jobs.mark_submitted(sent.id, Accepted(881234, 1, 2), next_poll_at=0.0)
        row = StatusRow("+494012345678", "FAX", "OK", pages="2")
        jobs.mark_finished(sent.id, JobStatusReport(True, "OK", rows=(row,)))
        jobs.mark_reported(sent.id)
        lost, _ = jobs.add(fax(document, "3"), source="cli", source_ref="lost", content_key="3")
        jobs.begin_submit(lost.id)
        jobs.mark_unknown(lost.id, "timed out")
        refused, _ = jobs.add(fax(document, "4"), source="cli", source_ref="refused", content_key="4")
        jobs.mark_rejected(refused.id, "premium number")
        received = InboundFax(fax_id=77, called_number="+4940", received_at=None, originator="+4930",
                              remote_id="ACME", pages=1, image=tif.read_bytes())
        journal.inbound.record(received, state=InboundState.STORED, path=str(tif), size=10, sha256="x")
        assert queued.state is JobState.QUEUED
    yield state


def raw(state_dir: Path, sql: str, *params: Any) -> None:
    """Change the file behind the journal's back, as a bug or a hand edit would."""
    db = sqlite3.connect(state_dir / JOURNAL_NAME, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(sql, params)
    finally:
        db.close()


def config_for(tmp_path: Path, state_dir: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "faxde:\n  account: '12345'\n  password: x\n"
        f"state_dir: {state_dir}\n"
    )
    return path


def test_a_sound_journal_passes(state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert integrity.check(state_dir / JOURNAL_NAME) == []
    assert main(["journal", "check", "-c", str(config_for(tmp_path, state_dir))]) == 0
    assert capsys.readouterr().out.strip() == f"{state_dir / JOURNAL_NAME}: OK"


@pytest.mark.parametrize(
    ("sql", "finding"),
    [
        ("UPDATE jobs SET state = 'lost-in-space' WHERE source_ref = 'queued'",
         "job 1 is in state 'lost-in-space', which faxbridge does not know"),
        ("UPDATE jobs SET finished_at = NULL WHERE source_ref = 'sent'",
         "job 2 is delivered (final) but has no finish time"),
        ("UPDATE jobs SET reported_at = 1 WHERE source_ref = 'queued'",
         "job 1 is queued (not final) but is marked as reported"),
        ("UPDATE jobs SET faxde_job_id = NULL WHERE source_ref = 'sent'",
         "job 2 is delivered but has no FAX.de JobId"),
        ("UPDATE jobs SET attempts = 0 WHERE source_ref = 'lost'",
         "job 3 is unknown but no SendJob attempt is counted"),
        ("UPDATE jobs SET state = 'submitted', faxde_job_id = 5, attempts = 1 WHERE source_ref = 'queued'",
         "job 1 is submitted, but its last recorded transition went to queued"),
        ("DELETE FROM job_events WHERE job_id = 4", "job 4 has no history (job_events)"),
        ("UPDATE jobs SET request = '{' WHERE source_ref = 'refused'", "job 4: its request cannot be read"),
        ("INSERT INTO job_events (job_id, at, to_state) VALUES (999, 0, 'queued')",
         "job_events row 11 refers to a row of jobs that does not exist"),
        ("UPDATE inbound SET state = 'deleted' WHERE fax_id = 77",
         "received fax 77 is deleted on FAX.de but has no deletion time"),
        ("DELETE FROM meta", "the journal does not say which schema version it has"),
    ],
)
def test_each_broken_invariant_is_one_plain_finding(state_dir: Path, sql: str, finding: str) -> None:
    raw(state_dir, sql)
    found = integrity.check(state_dir / JOURNAL_NAME)
    assert any(f.startswith(finding) for f in found), found


def test_files_the_journal_still_needs_are_looked_for(state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "Angebot.pdf").unlink()  # queued and unknown jobs still need it; the others do not
    (tmp_path / "in" / "fax.tif").unlink()  # stored: DeleteReceived would remove the only copy left
    assert integrity.check(state_dir / JOURNAL_NAME) == [
        f"job 1 is queued and still needs {tmp_path / 'Angebot.pdf'}, which is missing",
        f"job 3 is unknown and still needs {tmp_path / 'Angebot.pdf'}, which is missing",
        f"received fax 77 is stored, but its file {tmp_path / 'in' / 'fax.tif'} is missing",
    ]


@pytest.mark.parametrize("where", ["header", "pages"])
def test_a_corrupted_journal_file_is_reported_with_exit_code_1(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    path = state_dir / JOURNAL_NAME
    with Journal.open(state_dir) as journal:  # enough rows for pages beyond the first few
        for n in range(300):
            journal.jobs.add(fax(tmp_path / "Angebot.pdf", f"filler {n} " + "x" * 200), source="cli",
                             source_ref=f"filler-{n}", content_key=f"f{n}")
    # Closed: the write-ahead log is checkpointed into the file, which is all there is now.
    assert not Path(f"{path}-wal").exists()
    data = bytearray(path.read_bytes())
    if where == "header":
        data[0:16] = b"this is no db!!\0"
    else:
        page = 4096
        for n in range(3, len(data) // page, 2):  # every other page from the fourth on
            data[n * page + 8:n * page + 200] = b"\xa5" * 192
    path.write_bytes(bytes(data))

    assert main(["journal", "check", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ") and "problem(s) found" in out
    assert ("file is not a database" in out) if where == "header" else ("integrity check" in out or "malformed" in out)


def test_check_of_a_missing_journal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "check", "--file", str(tmp_path / "nothing.sqlite3")]) == 1
    assert capsys.readouterr().err.strip() == f"faxbridge: there is no journal at {tmp_path / 'nothing.sqlite3'}"


def test_a_backup_is_one_checked_file_that_opens_as_a_journal(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    assert main(["journal", "backup", "-c", str(config_for(tmp_path, state_dir)), str(backups)]) == 0
    [copy] = backups.iterdir()
    assert copy.name.startswith("journal-") and copy.suffix == ".sqlite3"
    assert capsys.readouterr().out.startswith(f"{copy}: ")
    assert integrity.check(copy) == []
    assert list(backups.iterdir()) == [copy]  # no -wal, no temporary file beside it
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(copy, restored / JOURNAL_NAME)
    with Journal.open(restored) as journal:
        assert journal.jobs.counts_by_state() == {"queued": 1, "delivered": 1, "unknown": 1, "rejected": 1}
        assert journal.inbound.get(77) is not None


def test_a_backup_never_overwrites_the_journal_itself(state_dir: Path) -> None:
    with pytest.raises(JournalError, match="overwrite the journal itself"):
        integrity.backup(state_dir / JOURNAL_NAME, state_dir / JOURNAL_NAME)


@pytest.mark.timeout(120)
def test_a_backup_taken_while_the_daemon_journals_jobs_is_consistent_and_opens(
    tmp_path: Path, simulator: Any, make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon]
) -> None:
    config = make_config()
    daemon = run_daemon(config)
    outbound = daemon.services.outbound
    submitted: list[int] = []
    stop = threading.Event()

    def keep_submitting() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (), f"note {n} {uuid.uuid4()}")
            job = daemon.call(lambda: outbound.submit(request, source="cli", source_ref=f"bk-{n}"))
            submitted.append(job.id)

    writer = threading.Thread(target=keep_submitting, name="journal-writer")
    writer.start()
    try:
        copies = []
        for n in range(4):
            wait_until(lambda: len(submitted) >= 5 * (n + 1), what="more jobs journaled")
            before = len(submitted)
            target = tmp_path / f"backup-{n}.sqlite3"
            assert main(["journal", "backup", "-c", str(config), str(target)]) == 0
            copies.append((before, target))
        wait_until(lambda: len(submitted) > copies[-1][0], what="jobs journaled after the last backup")
    finally:
        stop.set()
        writer.join(30)
    for before, copy in copies:
        assert integrity.check(copy) == [], copy
        restored = tmp_path / f"restored-{copy.stem}"
        restored.mkdir()
        shutil.copy(copy, restored / JOURNAL_NAME)
        with Journal.open(restored) as journal:
            jobs = journal.jobs.recent(100_000)
            assert len(jobs) >= before  # every job journaled before the backup began is in it
            for job in jobs:  # and each one whole: its history ends where its state is
                assert job.request.text.startswith("note ")
                assert journal.jobs.events(job.id)[-1][1] == job.state.value
