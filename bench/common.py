"""Shared bench plumbing: a simulator in its own process, documents of a given size, RSS readings."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

PASSWORD = "bench-password"
ACCOUNT = "12345"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def simulator_process(**options: str) -> Iterator[str]:
    """A simulator in a separate process, so its memory and CPU are not the daemon's. Yields its URL."""
    port = free_port()
    args = [sys.executable, "-m", "faxbridge.simulator", "--port", str(port), "--account", ACCOUNT,
            "--password", PASSWORD, "--record-limit", "10", "--duplicate-window", "0"]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", value]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(base + "/wsdl", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the simulator did not start")
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def pdf_of_size(size: int, tag: str = "") -> bytes:
    """A valid one-page PDF of about ``size`` bytes (an incompressible attachment makes the bulk)."""
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(595, 842)
    if size > 2000:
        writer.add_attachment(f"payload{tag}.bin", os.urandom(size - 1500))
    elif tag:
        writer.add_metadata({"/Title": tag})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def rss_mb() -> float:
    return _status_field("VmRSS") / 1024


def peak_rss_mb() -> float:
    return _status_field("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_field(name: str, pid: int | str = "self") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
    return float(match.group(1)) if match else 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- the real daemon in a subprocess ------------------------------------------------------


def daemon_config(url: str, work: Path, **sections: object) -> dict[str, object]:
    """A config for ``faxbridge run`` against the simulator at ``url``; ``sections`` are added."""
    password_file = work / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    config: dict[str, object] = {
        "faxde": {"account": ACCOUNT, "password_file": str(password_file), "wsdl": url + "/wsdl",
                  "concurrency": 4},
        "state_dir": str(work / "state"),
        "journal": {"duplicate_window": 0},
    }
    config.update(sections)
    return config


class DaemonProcess:
    """``faxbridge run -c CFG`` in a subprocess, started under a NOTIFY_SOCKET as systemd would."""

    def __init__(self, config: dict[str, object], work: Path) -> None:
        import yaml

        self.work = work
        self.config_path = work / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = work / "daemon.log"
        self._notify_path = work / "notify.sock"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faxbridge", "run", "-c", str(self.config_path)],
            env={**os.environ, "NOTIFY_SOCKET": str(self._notify_path)},
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.ready_seconds = float("nan")

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from the exec to READY=1 (what systemd's Type=notify waits for)."""
        self._notify.settimeout(timeout)
        while True:
            try:
                message = self._notify.recv(4096).decode()
            except socket.timeout:
                raise RuntimeError(f"the daemon sent no READY=1 within {timeout} s; see {self.log_path}")
            if any(line == "READY=1" for line in message.splitlines()):
                self.ready_seconds = time.monotonic() - self.started
                return self.ready_seconds

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._notify.close()
        self._log.close()

    def rss_mb(self) -> float:
        return _status_field("VmRSS", self.pid) / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextmanager
def daemon_process(config: dict[str, object], work: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config, work)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


def simulator_calls(url: str, operation: str | None = None) -> list[dict[str, object]]:
    """The simulator's call record (GET /admin/calls): started_at is when the request body had
    arrived whole, finished_at when the answer was ready."""
    query = f"?operation={operation}" if operation else ""
    response = requests.get(f"{url}/admin/calls{query}", timeout=120)
    response.raise_for_status()
    return response.json()


def epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()
