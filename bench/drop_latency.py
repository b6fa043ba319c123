"""Drop → SendJob latency: how long after a file is in place in a hotfolder FAX.de has its SendJob.

The real daemon (``faxbridge run -c CFG`` in a subprocess, as systemd runs it) watches one folder
with ``settle_time: 0`` (a folder's settle time, 2 s by default, waits for late sidecars and adds to
this figure exactly). 100 KB PDFs are dropped one at a time, every ``--interval`` seconds, in two
ways writers use: written and closed in place (inotify IN_CLOSE_WRITE), and written elsewhere and
renamed into the folder (IN_MOVED_TO). The clock starts when close() / rename() returns and stops
at the simulator's ``started_at`` for that SendJob (the moment its request body had arrived
whole), read afterwards from GET /admin/calls; both are the same machine's wall clock.
The simulator runs in its own process. Target: p50 ≤ 20 ms.

    .venv/bin/python -m bench.drop_latency [--files 500] [--interval 0.04]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import daemon_config, daemon_process, epoch, pdf_of_size, percentile, simulator_calls, simulator_process

MODES = ("close", "rename")


def drop_files(folder: Path, staging: Path, mode: str, payloads: list[bytes], interval: float) -> dict[str, float]:
    """Drop each payload (open loop: one every ``interval`` s); returns name → time it was in place."""
    placed: dict[str, float] = {}
    next_at = time.monotonic()
    for i, data in enumerate(payloads):
        name = f"{mode}-{i:05d}.pdf"
        if mode == "close":
            with open(folder / name, "wb") as f:
                f.write(data)
        else:
            tmp = staging / name
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, folder / name)
        placed[name] = time.time()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return placed


def wait_for_calls(url: str, count: int, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = simulator_calls(url, "SendJob")
        if len(calls) >= count or time.monotonic() > deadline:
            return calls
        time.sleep(0.5)


def measure(files: int, interval: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-drop-") as tmp:
        work = Path(tmp)
        payloads = [pdf_of_size(100_000, tag=str(i)) for i in range(files)]
        for mode in MODES:
            run = work / mode
            folder, staging = run / "out", run / "staging"
            for d in (folder, staging):
                d.mkdir(parents=True)
            with simulator_process(record_limit=str(files + 10)) as url:
                config = daemon_config(url, run, hotfolders=[{
                    "path": str(folder), "recipient": "+494012345678", "settle_time": 0,
                }])
                with daemon_process(config, run):
                    placed = drop_files(folder, staging, mode, [p + mode.encode() for p in payloads], interval)
                    calls = wait_for_calls(url, files, timeout=60)
            latencies = []
            for call in calls:
                name = call["params"]["SendFilename1"]  # type: ignore[index]
                if name in placed:
                    latencies.append(epoch(call["started_at"]) - placed[name])  # type: ignore[arg-type]
            if len(latencies) < files:
                print(f"  ({mode}: only {len(latencies)} of {files} SendJobs arrived within 60 s)")
            results[mode] = {
                "files": files,
                "received": len(latencies),
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": max(latencies, default=float("nan")) * 1000,
            }
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.04, help="seconds between two drops")
    args = parser.parse_args(argv)
    results = measure(args.files, args.interval)
    for mode, r in results.items():
        print(f"drop → SendJob ({mode:<6}) {r['received']:.0f}/{r['files']:.0f} files: p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms   (target p50 ≤ 20 ms)")
    return results


if __name__ == "__main__":
    main()
