"""Hotfolders end to end: real files in tmp_path, real inotify events, the simulator over HTTP."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.journal import Journal
from faxbridge.model import JobState
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import RunningDaemon, wait_until

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
    with Journal.open(tmp_path / "state") as journal:
        return journal.jobs.recent(1000)


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# -- the basic path ----------------------------------------------------------------------


def test_a_dropped_pdf_becomes_one_sendjob_then_sent_and_a_status_report(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start(options={"STATIONID": "ACME", "FAXHEADER": "ACME GmbH"})
    pdf = make_pdf(2, tag="basic")
    drop(folder / f"{NUMBER}_Invoice 42.pdf", pdf)

    sent = folder / "sent" / f"{NUMBER}_Invoice 42.pdf"
    wait_until(sent.exists, what="the original in sent/")
    [call] = sendjobs(simulator)
    assert call.params["SendFile1"] == pdf
    assert call.params["SendFilename1"] == f"{NUMBER}_Invoice 42.pdf"
    assert call.params["Recipient"] == NUMBER
    assert call.params["Options"] == "STATIONID=ACME;FAXHEADER=ACME GmbH"
    assert sent.read_bytes() == pdf

    report = folder / "sent" / f"{NUMBER}_Invoice 42.status.csv"
    wait_until(report.exists, what="the status report")
    rows = list(csv.reader(io.StringIO(report.read_text("utf-8-sig"))))
    assert rows[0][:3] == ["RECIPIENT", "JOBTYPE", "RESULT"]
    assert rows[0][-2:] == ["FAXBRIDGE_JOB", "FAXDE_JOBID"]
    [job] = jobs_of(tmp_path)
    assert rows[1][0] == NUMBER and rows[1][2] == "OK"
    assert rows[1][-2:] == [str(job.id), str(job.faxde_job_id)]
    assert job.state is JobState.DELIVERED
    assert visible(folder) == {"sent"}
    assert len(sendjobs(simulator)) == 1
