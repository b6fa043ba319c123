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


def _status_field(name: str) -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
    return float(match.group(1)) if match else 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
