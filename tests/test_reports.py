"""Writing reports, notices and spooled files atomically — and what a crash in the middle leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from faxbridge.fsutil import discard, temporary_path, write_atomically
from faxbridge.crashpoints import ENVIRONMENT_VARIABLE, EXIT_STATUS


def crash_while_writing(target: Path, data: bytes) -> None:
    """write_atomically in a process that dies after the temporary file, before the rename."""
    code = ("import sys; from pathlib import Path; from faxbridge.reports import write_atomically;"
            " write_atomically(Path(sys.argv[1]), sys.argv[2].encode())")
    env = {**os.environ, ENVIRONMENT_VARIABLE: "reports.during_write"}
    done = subprocess.run([sys.executable, "-c", code, str(target), data.decode()], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_STATUS, done.stderr


def test_a_write_cut_short_leaves_one_temporary_file_which_the_next_write_takes_away(tmp_path: Path) -> None:
    # Regression (issue 8 campaign): temporary names were random, so every crash between write and
    # rename left a ".faxbridge-XXXX.tmp" in sent/, failed/ or the mail archive for good.
    target = tmp_path / "Invoice 42.status.csv"
    crash_while_writing(target, b"first")
    crash_while_writing(target, b"second")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".Invoice 42.status.csv.faxbridge-tmp"]

    write_atomically(target, b"third")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Invoice 42.status.csv"]
    assert target.read_bytes() == b"third"
    assert target.stat().st_mode & 0o777 == 0o600  # as with tempfile.mkstemp before


def test_discard_removes_a_notice_and_what_a_crash_left_of_it(tmp_path: Path) -> None:
    notice = tmp_path / "FAXBRIDGE-PAUSED.txt"
    crash_while_writing(notice, b"paused")
    write_atomically(notice, b"paused")
    crash_while_writing(notice, b"paused again")
    discard(notice)
    assert list(tmp_path.iterdir()) == []


def test_a_name_too_long_for_a_temporary_twin_gets_a_short_hidden_one(tmp_path: Path) -> None:
    long_name = "Ä" * 120 + ".csv"  # 244 bytes: with the dot and suffix over 255
    temporary = temporary_path(tmp_path / long_name)
    assert temporary.name.startswith(".") and len(os.fsencode(temporary.name)) <= 255
    assert temporary == temporary_path(tmp_path / long_name)  # the same every time
    write_atomically(tmp_path / long_name, b"x")
    assert [p.name for p in tmp_path.iterdir()] == [long_name]


def test_unsynced_writes_leave_durability_to_the_caller(tmp_path: Path, monkeypatch) -> None:
    import os

    from faxbridge import fsutil

    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    write_atomically(tmp_path / "a.eml", b"mail", sync=False)
    assert (tmp_path / "a.eml").read_bytes() == b"mail" and fsyncs == []
    write_atomically(tmp_path / "b.eml", b"mail")
    assert len(fsyncs) == 2  # the file, then its folder
    # one syncfs instead: everything written on that file system is on disk when it returns
    assert fsutil.sync_file_system(tmp_path) is True
