"""Run the benchmarks and print one table: figure, value, reference/target, ratio, pass/miss.

    .venv/bin/python -m bench                      # all of them (make bench), ~10 minutes
    .venv/bin/python -m bench --quick              # shorter variants, ~3 minutes
    .venv/bin/python -m bench memory stall         # a subset, by name (see --list)
    .venv/bin/python -m bench --quick --idle-seconds 5 drop smtp

Each benchmark also prints its own lines as it goes; the table comes at the end. A benchmark
that fails is a row saying so, and the others still run. Exit status 0 when every figure with a
target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = tuple[str, str, str, str, str]  # figure, value, reference / target, ratio, verdict


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("pass" if ok else "MISS")


def _memory(result: list[dict[str, Any]]) -> list[Row]:
    rows = []
    zeep = {r["size_mb"]: r for r in result if r["path"] == "zeep"}
    for r in result:
        if r["path"] != "faxbridge":
            continue
        ref = zeep.get(r["size_mb"])
        ref_text = f"zeep {ref['ratio']:.1f}× doc; ≤ 1.5× doc" if ref else "≤ 1.5× doc"
        rows.append((f"peak RSS over idle, {r['size_mb']} MB PDF sent", f"{r['extra_mb']:.1f} MB",
                     ref_text, f"{r['ratio']:.2f}× doc", _verdict(r["ratio"] <= 1.5)))
    return rows


def _stall(result: dict[str, list[float]]) -> list[Row]:
    ours = max(result["faxbridge"]) * 1000
    zeep = result.get("zeep async")
    ref = f"zeep async {max(zeep) * 1000:.0f} ms; ≤ 20 ms" if zeep else "≤ 20 ms"
    ratio = f"{ours / (max(zeep) * 1000):.3f}× zeep" if zeep else "—"
    return [("longest loop stall per 20 MB job", f"{ours:.1f} ms", ref, ratio, _verdict(ours <= 20))]


def _throughput(result: dict[str, float]) -> list[Row]:
    return [("core: 1000 × 100 KB jobs, concurrency 4", f"{result['faxbridge_jobs_per_s']:.0f} jobs/s",
             f"raw POSTs {result['raw_posts_per_s']:.0f}/s; ≥ 0.5×", f"{result['ratio']:.2f}×",
             _verdict(result["ratio"] >= 0.5))]


def _drop(result: dict[str, dict[str, float]]) -> list[Row]:
    rows = []
    for mode, r in result.items():
        how = "closed in place" if mode == "close" else "renamed in"
        rows.append((f"drop → SendJob p50, {r['files']:.0f} × 100 KB {how}",
                     f"{r['p50_ms']:.1f} ms (p99 {r['p99_ms']:.0f})", "p50 ≤ 20 ms",
                     f"{r['p50_ms'] / 20:.2f}× target", _verdict(r["p50_ms"] <= 20 and r["received"] == r["files"])))
    return rows


def _burst(result: dict[str, dict[str, float]]) -> list[Row]:
    rows = []
    if "pdfs" in result:
        r = result["pdfs"]
        rows.append((f"hotfolder: {r['jobs']:.0f} × 100 KB PDFs at once", f"{r['jobs_per_s']:.0f} jobs/s",
                     f"raw POSTs {r['raw_posts_per_s']:.0f}/s; ≥ 0.5×", f"{r['ratio']:.2f}×",
                     _verdict(r["ratio"] >= 0.5)))
    if "tiny" in result:
        r = result["tiny"]
        claimed, journaled = r["all_claimed_s"], r["all_journaled_s"]
        rows.append((f"hotfolder: {r['files']:.0f} tiny files at once, all claimed", f"{claimed:.1f} s",
                     "≤ 5 s", f"{claimed / 5:.2f}× target", _verdict(claimed <= 5)))
        journaled_text = f"{journaled:.1f} s" if journaled == journaled else f"{r['journaled']:.0f} in 120 s"
        rows.append((f"hotfolder: {r['files']:.0f} tiny files at once, all journaled", journaled_text,
                     f"{r['journaled_at_5s']:.0f} after 5 s", "—", "—"))
    return rows


def _smtp(result: dict[str, float]) -> list[Row]:
    return [(f"SMTP 250s/s, {result['mails']:.0f} × {result['mail_kb']:.0f} KB mails, 4 clients",
             f"{result['faxbridge_per_s']:.0f}/s", f"bare aiosmtpd+fsync {result['reference_per_s']:.0f}/s; ≥ 0.8×",
             f"{result['ratio']:.2f}×", _verdict(result["ratio"] >= 0.8))]


def _inbound(result: dict[str, float]) -> list[Row]:
    return [(f"inbound: {result['faxes']:.0f} faxes fetched, stored, deleted", f"{result['faxes_per_s']:.0f} faxes/s",
             f"raw RequestReceived+Delete {result['raw_per_s']:.0f}/s; no target", f"{result['ratio']:.2f}×", "—")]


def _idle(result: dict[str, float]) -> list[Row]:
    return [
        ("start → READY (3 hotfolders + SMTP)", f"{result['ready_s']:.2f} s", "≤ 1.5 s",
         f"{result['ready_s'] / 1.5:.2f}× target", _verdict(result["ready_s"] <= 1.5)),
        (f"idle RSS after {result['seconds']:.0f} s", f"{result['rss_mb']:.1f} MB", "≤ 60 MB",
         f"{result['rss_mb'] / 60:.2f}× target", _verdict(result["rss_mb"] <= 60)),
        (f"idle CPU over {result['seconds']:.0f} s", f"{result['cpu_percent']:.2f} %", "~0 % (≤ 0.5 %)",
         "—", _verdict(result["cpu_percent"] <= 0.5)),
    ]


def _photos(result: dict[str, dict[str, float]]) -> list[Row]:
    ours, img2pdf, pillow = result["faxbridge"], result["img2pdf"], result["pillow"]
    return [
        ("12 MP JPEG → fax PDF", f"{ours['photos_per_s']:.1f} photos/s",
         f"img2pdf by hand {img2pdf['photos_per_s']:.1f}/s, Pillow {pillow['photos_per_s']:.1f}/s",
         f"{ours['speed_vs_pillow']:.2f}× Pillow", "—"),
        ("12 MP JPEG → fax PDF, peak RSS over idle", f"{ours['extra_mb']:.0f} MB",
         f"Pillow by hand {pillow['extra_mb']:.0f} MB; ≤ 150 MB", f"{ours['memory_vs_pillow']:.2f}× Pillow",
         _verdict(ours["extra_mb"] <= 150)),
    ]


def _console(result: dict[str, float]) -> list[Row]:
    return [
        (f"console: /jobs with {result['jobs']:.0f} jobs, p95", f"{result['p95_ms']:.1f} ms (p50 {result['p50_ms']:.1f})",
         "≤ 200 ms", f"{result['p95_ms'] / 200:.2f}× target", _verdict(result["p95_ms"] <= 200)),
        (f"console: {result['thumbs']:.0f} page-1 images, cold", f"{result['thumbs_s']:.2f} s", "≤ 1 s",
         f"{result['thumbs_s']:.2f}× target", _verdict(result["thumbs_s"] <= 1)),
        ("console: idle RSS added", f"{result['rss_added_mb']:.1f} MB", "≤ 10 MB",
         f"{result['rss_added_mb'] / 10:.2f}× target", _verdict(result["rss_added_mb"] <= 10)),
    ]


def _postgres(result: dict[str, float]) -> list[Row]:
    lease = result["lease_s"]
    return [
        ("journal: PostgreSQL vs SQLite, core jobs", f"{result['postgresql_jobs_per_s']:.0f} jobs/s",
         f"SQLite {result['sqlite_jobs_per_s']:.0f}/s; ≥ 0.5×", f"{result['ratio']:.2f}×", _verdict(result["ratio"] >= 0.5)),
        (f"nodes: failover, holder killed → other node collects (lease {lease:.0f} s)", f"{result['failover_s']:.1f} s",
         f"≤ lease + 2 s = {lease + 2:.0f} s", f"{result['failover_s'] / (lease + 2):.2f}× target",
         _verdict(result["failover_s"] <= lease + 2)),
    ]


@dataclass(frozen=True)
class Benchmark:
    module: str
    rows: Callable[[Any], list[Row]]
    quick: tuple[str, ...] = ()  # arguments of the shorter variant


BENCHMARKS: dict[str, Benchmark] = {
    "memory": Benchmark("bench.send_memory", _memory, ("--sizes", "1,20")),
    "stall": Benchmark("bench.loop_stall", _stall, ("--jobs", "2")),
    "throughput": Benchmark("bench.throughput", _throughput, ("--jobs", "300")),
    "drop": Benchmark("bench.drop_latency", _drop, ("--files", "100")),
    "burst": Benchmark("bench.hotfolder_burst", _burst, ("--pdfs", "300", "--tiny", "5000")),
    "smtp": Benchmark("bench.smtp_rate", _smtp, ("--mails", "100")),
    "inbound": Benchmark("bench.inbound_rate", _inbound, ("--faxes", "100")),
    "idle": Benchmark("bench.idle", _idle, ("--seconds", "10")),
    "photos": Benchmark("bench.photo_convert", _photos, ("--photos", "4")),
    "console": Benchmark("bench.console", _console, ("--jobs", "20000", "--requests", "100")),
    "postgres": Benchmark("bench.postgres", _postgres, ("--jobs", "100")),
}


def print_table(rows: list[Row]) -> None:
    header: Row = ("figure", "value", "reference / target", "ratio", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if row is header:
            print(line)
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter variants (fewer jobs, files, seconds)")
    parser.add_argument("--idle-seconds", type=float, help="how long the idle benchmark watches (default 60, quick 10)")
    parser.add_argument("--list", action="store_true", help="name each benchmark and its module")
    args = parser.parse_args(argv)
    if args.list:
        for name, bench in BENCHMARKS.items():
            print(f"{name:<11} python -m {bench.module}  (quick: {' '.join(bench.quick)})")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    rows: list[Row] = []
    started = time.monotonic()
    for name in args.names or list(BENCHMARKS):
        bench = BENCHMARKS[name]
        bench_args = list(bench.quick) if args.quick else []
        if name == "idle" and args.idle_seconds is not None:
            bench_args = ["--seconds", str(args.idle_seconds)]
        print(f"\n== {name}: python -m {bench.module} {' '.join(bench_args)}".rstrip(), flush=True)
        try:
            result = importlib.import_module(bench.module).main(bench_args)
            rows += bench.rows(result)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            rows.append((name, f"failed: {type(exc).__name__}: {exc}"[:70], "", "", "MISS"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nfaxbridge benchmarks, {dt.date.today()}, {os.cpu_count()} CPU(s), "
          f"load average {load:.1f}, {time.monotonic() - started:.0f} s{' (quick)' if args.quick else ''}")
    print_table(rows)
    return 0 if all(r[4] != "MISS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
