"""Issue 14: a crash must never pay for a fax twice. The daemon dies while FAX.de holds a job whose
JobId never reached the journal; what it does at the next start depends only on when that request
left, never on how long the daemon was down or how often it was restarted.

The provider's duplicate window and the bridge's reconcile window are a few seconds here (a minute
in the long campaign): the test waits them out for real, since elapsed time is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from test_regressions import NUMBER, ROOT, Life

WINDOW = 2.0  # the provider's duplicate window and the bridge's reconcile window alike


def _setup(tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
           bridge_window: float = WINDOW) -> tuple[Path, Path]:
    simulator.duplicate_window = WINDOW
    folder = tmp_path / "out"
    folder.mkdir()
    config = make_config(
        hotfolders=[{"path": str(folder), "settle_time": "50ms", "rescan_interval": "300ms"}],
        faxde={"reconcile_window": f"{bridge_window}s", "retry": {"initial_delay": "100ms", "max_delay": "200ms"}},
        status={"interval": "200ms", "max_interval": "300ms"},
    )
    (folder / f"{NUMBER}_Invoice.pdf").write_bytes(make_pdf(1))
    return folder, config


def _jobs(config: Path) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "faxbridge", "jobs", "-c", str(config), "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_daemon_down_longer_than_the_window_leaves_the_job_to_the_operator_never_resends(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # The deterministic reproduction of issue 14: SendJob reached FAX.de, the daemon died before it
    # journaled the JobId and stayed down past the window. The old code counted the window from the
    # restart, re-sent, and FAX.de — no longer recognising the twin — made and billed a second job.
    folder, config = _setup(tmp_path, simulator, make_config)
    log = tmp_path / "daemon.log"
    Life(config, log, crash_at="outbound.after_sendjob").crashed("outbound.after_sendjob")
    assert len(simulator.jobs) == 1
    time.sleep(WINDOW + 1.0)  # the outage: longer than FAX.de's duplicate window

    final = tmp_path / "final.log"
    life = Life(config, final)
    try:
        wait_until(lambda: "needs the operator" in final.read_text() and "faxbridge ready" in final.read_text(),
                   what="the job left to the operator")
        [job] = _jobs(config)
        assert job["state"] == "unknown" and job["needs_operator"] is True
        text = subprocess.run([sys.executable, "-m", "faxbridge", "jobs", "-c", str(config)],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
        assert "need the operator" in text and "unknown!" in text
        assert (folder / ".faxbridge").is_dir() and not (folder / "sent").exists()
    finally:
        life.stop()
    assert len(simulator.jobs) == 1, "a second FAX.de job: the fax was paid twice"
    assert [c.result for c in simulator.calls_for("SendJob")] == [0]


def test_a_crash_loop_longer_than_the_window_does_not_stretch_it(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # Every start re-armed the delay and counted the window from that start: a daemon restarted
    # again and again re-sent only after the loop, long after FAX.de had forgotten the first job.
    folder, config = _setup(tmp_path, simulator, make_config)
    log = tmp_path / "daemon.log"
    Life(config, log, crash_at="outbound.after_sendjob").crashed("outbound.after_sendjob")
    crashed = time.monotonic()
    time.sleep(WINDOW * 0.6)  # a first outage, shorter than the window
    lives = 0
    while time.monotonic() < crashed + WINDOW + 0.5:  # restarts that die before any re-send leaves
        life = Life(config, log, crash_at="outbound.before_sendjob")
        try:
            life.process.wait(2)
        except subprocess.TimeoutExpired:
            life.process.kill()
            life.process.wait(10)
        lives += 1
    assert lives >= 1
    final = tmp_path / "final.log"
    life = Life(config, final)
    try:
        wait_until(lambda: "needs the operator" in final.read_text() and "faxbridge ready" in final.read_text(),
                   what="the job left to the operator")
    finally:
        life.stop()
    assert len(simulator.jobs) == 1, "a second FAX.de job: the fax was paid twice"
    assert [job["state"] for job in _jobs(config)] == ["unknown"]


def test_a_daemon_back_within_the_window_reconciles_through_the_duplicate_answer(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    # Back before the window closed: the identical re-send goes at once (the delay counts from the
    # request that left, not from the start), FAX.de answers -77, and nothing is paid twice.
    folder, config = _setup(tmp_path, simulator, make_config, bridge_window=20.0)
    simulator.duplicate_window = 20.0
    log = tmp_path / "daemon.log"
    Life(config, log, crash_at="outbound.after_sendjob").crashed("outbound.after_sendjob")
    life = Life(config, log)
    try:
        wait_until(lambda: [j["state"] for j in _jobs(config)] == ["confirmed"], what="confirmed by -77")
        wait_until(lambda: (folder / "sent").is_dir() and any((folder / "sent").iterdir()),
                   what="the document in sent/")
    finally:
        life.stop()
    assert len(simulator.jobs) == 1
    assert [c.result for c in simulator.calls_for("SendJob")] == [0, -77]
