"""The PostgreSQL journal: jobs/s against SQLite's, and failover time between two nodes.

Jobs/s: the core path of bench.throughput (each 100 KB PDF journaled, hashed, marked submitting,
sent and recorded) once on SQLite in the state dir and once on a throwaway PostgreSQL cluster on this
machine. Target: PostgreSQL ≥ 0.5× SQLite (issue 19).

Failover: two `faxbridge run` nodes on one PostgreSQL with inbound collection; the node holding the
inbound lease is killed with SIGKILL; measured is the time until the other node holds the lease and
has called RequestReceived. Target: ≤ lease time + 2 s.

    .venv/bin/python -m bench.postgres [--jobs 300] [--concurrency 4] [--lease 3]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ACCOUNT, DaemonProcess, daemon_config, simulator_calls, simulator_process
from bench.throughput import make_documents

# The throwaway cluster the tests use (initdb as an unprivileged user, a free loopback port).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postgres_server import PASSWORD as PG_PASSWORD  # noqa: E402
from postgres_server import PostgresServer, find_bindir  # noqa: E402


async def jobs_per_second(url: str, docs: list[Path], work: Path, concurrency: int, journal_url: str | None) -> float:
    from faxbridge.faxde.client import FaxDeClient
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
    from faxbridge.numbers import NumberPolicy
    from faxbridge.outbound import Outbound, OutboundSettings, number_check
    from faxbridge.provider import ProviderCalls

    from bench.common import PASSWORD

    client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=url + "/wsdl", timeout=60,
                         pool_size=concurrency * 2)
    calls = ProviderCalls(client, concurrency=concurrency)
    password = PG_PASSWORD if journal_url else None
    with Journal.open(work / "state", url=journal_url, password=password) as journal:
        outbound = Outbound(journal, calls, settings=OutboundSettings(duplicate_window=0),
                            check_recipient=number_check(NumberPolicy()))
        started = time.perf_counter()
        sender = asyncio.create_task(outbound.run())
        for i, path in enumerate(docs):
            await outbound.submit(
                SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(path.name, path),)),
                source="bench", source_ref=str(i))
        while journal.jobs.counts_by_state().get(JobState.SUBMITTED.value, 0) < len(docs):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        sender.cancel()
    await calls.close()
    return len(docs) / elapsed


def failover_seconds(server: PostgresServer, work: Path, lease: float) -> float:
    import psycopg

    database = server.create_database()
    journal_url = server.url(database)
    with simulator_process() as url:
        nodes = {}
        for name in ("node1", "node2"):
            folder = work / name
            folder.mkdir()
            config = daemon_config(
                url, folder,
                journal={"url": journal_url, "password_file": str(server.password_file), "node": name,
                         "lease": f"{lease}s"},
                inbound={"output": str(work / "in"), "interval": "200ms"},
            )
            nodes[name] = DaemonProcess(config, folder)
        try:
            for node in nodes.values():
                node.wait_ready()
            with psycopg.connect(journal_url, password=PG_PASSWORD, autocommit=True) as db:

                def holder() -> str | None:
                    row = db.execute("SELECT holder FROM leases WHERE name = %s", (f"inbound:{ACCOUNT}",)).fetchone()
                    return row[0] if row else None

                while holder() is None:
                    time.sleep(0.05)
                first = holder()
                assert first is not None
                nodes[first].process.send_signal(signal.SIGKILL)
                killed = time.time()
                while holder() == first:
                    time.sleep(0.05)
                while True:
                    # The killed node calls nothing any more: the first RequestReceived after the
                    # kill is the new holder's.
                    after = [_epoch(str(c["started_at"])) for c in simulator_calls(url, "RequestReceived")]
                    after = [t for t in after if t > killed]
                    if after:
                        return min(after) - killed
                    time.sleep(0.05)
        finally:
            for node in nodes.values():
                node.stop()


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    server = PostgresServer(bindir).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            work = Path(tmp)
            docs = make_documents(work, args.jobs)
            with simulator_process() as url:
                sqlite = asyncio.run(jobs_per_second(url, docs, work / "sqlite", args.concurrency, None))
            with simulator_process() as url:
                postgresql = asyncio.run(jobs_per_second(
                    url, docs, work / "postgresql", args.concurrency, server.url(server.create_database())))
            failover_dir = work / "failover"
            failover_dir.mkdir()
            failover = failover_seconds(server, failover_dir, args.lease)
    finally:
        server.stop()
    result = {"sqlite_jobs_per_s": sqlite, "postgresql_jobs_per_s": postgresql,
              "ratio": postgresql / sqlite, "failover_s": failover, "lease_s": args.lease}
    print(f"{args.jobs} × 100 KB, concurrency {args.concurrency}: SQLite {sqlite:.0f} jobs/s, PostgreSQL"
          f" {postgresql:.0f} jobs/s → {result['ratio']:.2f}×; failover {failover:.1f} s (lease {args.lease:.0f} s)")
    return result


if __name__ == "__main__":
    main()
