"""Bursts into a hotfolder: 1000 PDFs at once (jobs/s), and 20 000 tiny files at once (claimed in time).

The real daemon (``faxbridge run -c CFG`` in a subprocess) watches one folder (``settle_time: 0``,
``faxde.concurrency: 4``); the simulator runs in its own process. The files are prepared in a
staging folder on the same file system and renamed into the hotfolder as fast as one thread can
(``mv staging/* folder/``): the inotify path with the most events per file.

* 1000 × 100 KB PDFs: from the first rename to the last SendJob answered (the simulator's
  ``finished_at``), next to raw HTTP POSTs of the same prebuilt envelopes at a fresh simulator with
  the same concurrency (bench.throughput.raw_run). Target: ≥ 0.5× the raw rate.
* 20 000 tiny PDFs: from the first rename until every one is claimed (moved out of the folder
  into its claim, durably: the daemon has taken it, and a crash from then on finishes it at the
  next start), and until every one is journaled (a row in the daemon's jobs table, read from a
  second, read-only SQLite connection), while the simulator accepts each SendJob at once.
  Target: all claimed within 5 s.

    .venv/bin/python -m bench.hotfolder_burst [--pdfs 1000] [--tiny 20000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.common import daemon_config, daemon_process, epoch, pdf_of_size, simulator_calls, simulator_process
from bench.throughput import make_documents, raw_run


def _folder_config(folder: Path) -> dict[str, object]:
    # rescan_interval 0: only events count (the periodic rescan would be a second way in).
    return {"path": str(folder), "recipient": "+494012345678", "settle_time": 0, "rescan_interval": 0}


def _rename_all(staging: Path, folder: Path) -> float:
    names = sorted(os.listdir(staging))
    started = time.time()
    for name in names:
        os.rename(staging / name, folder / name)
    return started


def pdf_burst(work: Path, count: int, concurrency: int, timeout: float = 300.0) -> dict[str, float]:
    staging = work / "staging"
    staging.mkdir()
    docs = make_documents(staging, count)
    with simulator_process() as url:
        raw = raw_run(url, docs, concurrency)
    folder = work / "out"
    folder.mkdir()
    with simulator_process(record_limit=str(count + 10)) as url:
        config = daemon_config(url, work, hotfolders=[_folder_config(folder)])
        config["faxde"]["concurrency"] = concurrency  # type: ignore[index]
        with daemon_process(config, work):
            started = _rename_all(staging, folder)
            sent = folder / "sent"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = sum(1 for n in os.listdir(sent) if n.endswith(".pdf")) if sent.is_dir() else 0
                if done >= count:
                    break
                time.sleep(0.1)
            calls = simulator_calls(url, "SendJob")
    accepted = [c for c in calls if c["result"] == 0]
    if len(accepted) < count:
        print(f"  (only {len(accepted)} of {count} SendJobs accepted within {timeout:.0f} s)")
    elapsed = max(epoch(c["finished_at"]) for c in accepted) - started  # type: ignore[arg-type]
    ours = len(accepted) / elapsed
    reference = count / raw
    return {"jobs": len(accepted), "jobs_per_s": ours, "raw_posts_per_s": reference, "ratio": ours / reference}


def tiny_burst(work: Path, count: int, timeout: float = 120.0) -> dict[str, float]:
    staging = work / "staging"
    staging.mkdir()
    tiny = pdf_of_size(0, tag="tiny")
    for i in range(count):
        (staging / f"tiny-{i:05d}.pdf").write_bytes(tiny)
    folder = work / "out"
    folder.mkdir()
    with simulator_process() as url:
        config = daemon_config(url, work, hotfolders=[_folder_config(folder)])
        with daemon_process(config, work):
            db = sqlite3.connect(f"file:{work / 'state' / 'journal.sqlite3'}?mode=ro", uri=True, timeout=10)
            started = _rename_all(staging, folder)
            renamed = time.time() - started
            journaled, at_5s, elapsed, claimed = 0, None, float("nan"), float("nan")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                journaled = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
                now = time.time() - started
                if claimed != claimed and not _left_in(folder):  # nan: not all claimed yet
                    claimed = now
                if at_5s is None and now >= 5.0:
                    at_5s = journaled
                if journaled >= count:
                    elapsed = now
                    break
                time.sleep(0.05)
            db.close()
    return {"files": count, "rename_s": renamed, "all_claimed_s": claimed, "all_journaled_s": elapsed,
            "journaled_at_5s": float(at_5s if at_5s is not None else journaled), "journaled": journaled}


def _left_in(folder: Path) -> bool:
    """Whether any dropped file is still in the folder itself (not yet claimed)."""
    with os.scandir(folder) as entries:
        return any(e.name.endswith(".pdf") and e.is_file() for e in entries)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", type=int, default=1000, help="100 KB PDFs in the first burst (0: skip)")
    parser.add_argument("--tiny", type=int, default=20_000, help="tiny files in the second burst (0: skip)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    if args.pdfs:
        with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
            r = results["pdfs"] = pdf_burst(Path(tmp), args.pdfs, args.concurrency)
        print(f"{args.pdfs} × 100 KB PDFs renamed in at once, concurrency {args.concurrency}: "
              f"{r['jobs_per_s']:.0f} jobs/s, raw POSTs {r['raw_posts_per_s']:.0f}/s → {r['ratio']:.2f}× "
              f"(target ≥ 0.5×)")
    if args.tiny:
        with tempfile.TemporaryDirectory(prefix="bench-tiny-") as tmp:
            r = results["tiny"] = tiny_burst(Path(tmp), args.tiny)
        print(f"{args.tiny} tiny files renamed in at once ({r['rename_s']:.1f} s to rename): all claimed after "
              f"{r['all_claimed_s']:.1f} s (target ≤ 5 s), all journaled after {r['all_journaled_s']:.1f} s "
              f"({r['journaled_at_5s']:.0f} after 5 s)")
    return results


if __name__ == "__main__":
    main()
