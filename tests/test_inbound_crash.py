"""Crash safety of inbound collection: the process is killed at a named step (FAXBRIDGE_CRASH_AT) and
started again without it. Whatever the step, afterwards each fax is on disk exactly once, whole,
indexed once, and gone from the server — and DeleteReceived never went out before the file was in place.

Real subprocesses (`python -m faxbridge receive --once`, and the daemon `faxbridge run`) against the
in-test simulator over HTTP.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.crashpoints import ENVIRONMENT_VARIABLE, EXIT_STATUS
from faxbridge.journal.inbound import InboundState
from faxbridge.model import InboundFax
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import wait_until
from test_inbound import mail_sink  # noqa: F401  (a fixture)
from journal_backend import open_journal

SALES = "+494012345"


def faxbridge(*args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_VARIABLE}
    if crash_at:
        env[ENVIRONMENT_VARIABLE] = crash_at
    return subprocess.run([sys.executable, "-m", "faxbridge", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture
def config_path(tmp_path: Path, make_config: Callable[..., Path]) -> Path:
    return make_config(inbound={
        "output": str(tmp_path / "in"), "interval": "200ms",
        "routes": [{"called_number": SALES, "output": str(tmp_path / "sales"), "pdf": True}],
    })


def two_faxes(simulator: Simulator) -> list[InboundFax]:
    return [
        simulator.add_inbound(make_tiff(3, tag="one"), called_number=SALES, originator="+4930111"),
        simulator.add_inbound(make_tiff(2, tag="two"), originator="+4930222"),
    ]


def check_recovered(tmp_path: Path, simulator: Simulator, faxes: list[InboundFax]) -> None:
    """Exactly one whole file per fax, indexed once, journaled deleted; the server's inbox empty;
    every DeleteReceived after its file was in place."""
    assert simulator.inbox == []
    on_disk = {}
    for folder in (tmp_path / "sales", tmp_path / "in"):
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"
        text = (folder / "received.csv").read_text(encoding="utf-8-sig")
        ids = [row["FaxId"] for row in csv.DictReader(io.StringIO(text))]
        assert len(ids) == len(set(ids)), f"a fax indexed twice in {folder}"
        for tif in folder.glob("*.tif"):
            fax_id = int(tif.stem.rsplit("_", 1)[1])
            assert fax_id not in on_disk, f"fax {fax_id} written twice"
            on_disk[fax_id] = tif
            assert str(fax_id) in ids
            assert tif.with_suffix(".json").is_file()
    assert {fax_id: tif.read_bytes() for fax_id, tif in on_disk.items()} == {f.fax_id: f.image for f in faxes}
    assert (on_disk[faxes[0].fax_id].with_suffix(".pdf")).is_file()  # the sales route's PDF
    deletes = simulator.calls_for("DeleteReceived")
    assert {c.params["FaxId"] for c in deletes} == {f.fax_id for f in faxes}
    for call in deletes:
        assert on_disk[call.params["FaxId"]].stat().st_ctime <= call.started_at.timestamp()
    with open_journal(tmp_path / "state") as journal:
        assert {r.fax_id: r.state for r in journal.inbound.all()} == {
            f.fax_id: InboundState.DELETED for f in faxes}


@pytest.mark.parametrize(
    ("point", "deleted_before_crash"),
    [
        ("inbound.after_begin", 0),  # the name is journaled, nothing written yet
        ("inbound.after_link", 0),  # the TIFF under its name and its temporary one (chaos found it)
        ("inbound.after_rename", 0),  # the TIFF is in place; no PDF, sidecar or index row yet
        ("inbound.after_files", 0),  # every file in place, not yet journaled as stored
        ("inbound.after_journal", 0),  # journaled as stored, DeleteReceived not sent
        ("inbound.after_delete", 1),  # deleted on FAX.de, not yet journaled as deleted
        ("inbound.after_rename:2", 1),  # the second fax, after the first went through
    ],
)
def test_a_crash_at_any_step_leaves_one_file_per_fax_after_a_restart(
    tmp_path: Path, simulator: Simulator, config_path: Path, point: str, deleted_before_crash: int
) -> None:
    faxes = two_faxes(simulator)

    crashed = faxbridge("receive", "-c", str(config_path), "--once", crash_at=point)
    name = point.split(":")[0]
    assert crashed.returncode == EXIT_STATUS, crashed.stderr
    assert f"crash point {name} reached" in crashed.stderr
    assert len(simulator.calls_for("DeleteReceived")) == deleted_before_crash
    assert len(simulator.inbox) == 2 - deleted_before_crash

    restarted = faxbridge("receive", "-c", str(config_path), "--once")
    assert restarted.returncode == 0, restarted.stderr
    assert "inbox empty" in restarted.stdout
    check_recovered(tmp_path, simulator, faxes)


def test_the_daemon_killed_between_write_and_delete_recovers_on_restart(
    tmp_path: Path, simulator: Simulator, config_path: Path
) -> None:
    faxes = two_faxes(simulator)
    env = {**os.environ, ENVIRONMENT_VARIABLE: "inbound.after_journal"}
    daemon = subprocess.Popen([sys.executable, "-m", "faxbridge", "run", "-c", str(config_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == EXIT_STATUS, stderr
    assert "crash point inbound.after_journal reached" in stderr
    assert simulator.calls_for("DeleteReceived") == []
    [written] = (tmp_path / "sales").glob("*.tif")  # on disk and journaled, still on the server
    assert written.read_bytes() == faxes[0].image

    env.pop(ENVIRONMENT_VARIABLE)
    daemon = subprocess.Popen([sys.executable, "-m", "faxbridge", "run", "-c", str(config_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: not simulator.inbox, what="the restarted daemon to empty the inbox")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    check_recovered(tmp_path, simulator, faxes)


def test_receive_once_exit_codes_and_release_from_the_command_line(
    tmp_path: Path, simulator: Simulator, config_path: Path
) -> None:
    bad = simulator.add_inbound(make_pdf(1), pages=1)
    blocked = faxbridge("receive", "-c", str(config_path), "--once")
    assert blocked.returncode == 3
    assert f"blocked: fax {bad.fax_id} is in quarantine" in blocked.stdout

    released = faxbridge("receive", "-c", str(config_path), "--release", str(bad.fax_id))
    assert released.returncode == 0, released.stderr
    assert f"fax {bad.fax_id}: deleted on FAX.de" in released.stdout
    assert simulator.inbox == []

    again = faxbridge("receive", "-c", str(config_path), "--release", str(bad.fax_id))
    assert again.returncode == 1
    assert f"fax {bad.fax_id} is not in quarantine (deleted)" in again.stderr


def test_a_crash_after_queueing_the_mail_sends_it_once(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path], mail_sink: Any
) -> None:
    sink, port = mail_sink
    config_path = make_config(
        inbound={"output": str(tmp_path / "in"),
                 "routes": [{"called_number": SALES, "mail_to": ["sales@example.com"]}]},
        smtp={"listen": "127.0.0.1:0", "domains": {"fax.example.com": "fax"},
              "allowed_senders": ["*@example.com"], "relay": f"127.0.0.1:{port}"},
    )
    fax = simulator.add_inbound(make_tiff(2), called_number=SALES)

    crashed = faxbridge("receive", "-c", str(config_path), "--once", crash_at="inbound.after_mail")
    assert crashed.returncode == EXIT_STATUS, crashed.stderr
    assert simulator.calls_for("DeleteReceived") == []

    restarted = faxbridge("receive", "-c", str(config_path), "--once")
    assert restarted.returncode == 0, restarted.stderr
    wait_until(lambda: sink.messages, what="the mail at the relay")
    assert simulator.inbox == [] and len(list((tmp_path / "in").glob("*.tif"))) == 1
    assert len(sink.messages) == 1 and str(fax.fax_id) in sink.messages[0][1].decode()
