"""Idle: start → READY, then RSS and CPU of a daemon with nothing to do.

The real daemon (``faxbridge run -c CFG`` in a subprocess, as systemd runs it, under a
NOTIFY_SOCKET) with three hotfolders (inotify) and the SMTP listener configured, against the
simulator in its own process. start → READY is from the exec to the READY=1 datagram (what a
Type=notify unit waits for: the interpreter, imports, config, journal, WSDL, edges). Then, with
nothing dropped or mailed, its RSS at the end and its CPU time (user + system, all threads) over
``--seconds``. Targets: RSS ≤ 60 MB, CPU ~0 % (≤ 0.5 % here), READY ≤ 1.5 s.

    .venv/bin/python -m bench.idle [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import daemon_config, daemon_process, free_port, simulator_process


def measure(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        with simulator_process() as url:
            config = daemon_config(
                url, work,
                hotfolders=[{"path": str(work / name), "recipient": "+494012345678"}
                            for name in ("out-fax", "out-sales", "out-billing")],
                smtp={"listen": f"127.0.0.1:{free_port()}", "domains": {"fax.example.com": "fax"},
                      "allowed_senders": ["*@example.com"]},
            )
            with daemon_process(config, work) as daemon:
                ready = daemon.ready_seconds
                time.sleep(1.0)  # let start-up work (first scans, first scheduler runs) finish
                cpu_before, wall_before = daemon.cpu_seconds(), time.monotonic()
                rss_start = daemon.rss_mb()
                time.sleep(seconds)
                cpu = daemon.cpu_seconds() - cpu_before
                wall = time.monotonic() - wall_before
                rss = daemon.rss_mb()
    return {"ready_s": ready, "rss_mb": rss, "rss_start_mb": rss_start, "cpu_percent": 100 * cpu / wall,
            "cpu_s": cpu, "seconds": wall}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to watch the idle daemon")
    args = parser.parse_args(argv)
    r = measure(args.seconds)
    print(f"idle with 3 hotfolders + SMTP: start → READY {r['ready_s']:.2f} s (target ≤ 1.5 s); "
          f"RSS {r['rss_mb']:.1f} MB (target ≤ 60 MB); CPU {r['cpu_percent']:.2f} % "
          f"({r['cpu_s'] * 1000:.0f} ms in {r['seconds']:.0f} s; target ~0 %)")
    return r


if __name__ == "__main__":
    main()
