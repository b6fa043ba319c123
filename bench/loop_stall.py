"""The longest event-loop stall while a large document is hashed, encoded and sent.

A heartbeat task sleeps 1 ms at a time and records how late it wakes; everything else on the loop
(the SMTP listener, watchers, other jobs) would be late by as much. Measured for the faxbridge
path and, side by side, for zeep's own asyncio client building the same envelope on the loop.
Target: ≤ 20 ms per 20 MB job.

    .venv/bin/python -m bench.loop_stall [--jobs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import ACCOUNT, PASSWORD, pdf_of_size, percentile, simulator_process

SIZE_MB = 20
JOBS = 3


async def heartbeat(lateness: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lateness.append(time.perf_counter() - before - 0.001)


async def faxbridge_path(url: str, work: Path, jobs: int = JOBS) -> list[float]:
    from faxbridge.faxde.client import FaxDeClient
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobType, Recipient, SendRequest
    from faxbridge.numbers import NumberPolicy
    from faxbridge.outbound import Outbound, OutboundSettings, number_check
    from faxbridge.provider import ProviderCalls

    client = await asyncio.to_thread(FaxDeClient, account=ACCOUNT, password=PASSWORD,
                                     wsdl=url + "/wsdl", timeout=120)
    calls = ProviderCalls(client, concurrency=2)
    stalls = []
    with Journal.open(work / "state") as journal:
        outbound = Outbound(journal, calls, settings=OutboundSettings(duplicate_window=0),
                            check_recipient=number_check(NumberPolicy()))
        for i in range(jobs):
            pdf = work / f"doc{i}.pdf"
            pdf.write_bytes(pdf_of_size(SIZE_MB * 1_000_000, tag=str(i)))
            lateness: list[float] = []
            stop = asyncio.Event()
            beat = asyncio.create_task(heartbeat(lateness, stop))
            await asyncio.sleep(0.01)
            job = await outbound.submit(
                SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(pdf.name, pdf),)),
                source="bench", source_ref=str(i))
            job = await outbound.send_now(job.id)
            assert job.faxde_job_id, job.last_error
            stop.set()
            await beat
            stalls.append(max(lateness))
    await calls.close()
    return stalls


async def zeep_async_path(url: str, work: Path, jobs: int = JOBS) -> list[float]:
    import httpx  # zeep's async transport needs it; only this reference path uses it
    import zeep
    from zeep.transports import AsyncTransport

    from faxbridge.faxde.client import BINDING, SEND_IMMEDIATELY, bundled_wsdl

    stalls = []
    async with httpx.AsyncClient(timeout=120) as http:
        client = zeep.AsyncClient(str(bundled_wsdl()), transport=AsyncTransport(client=http))
        from zeep.proxy import AsyncServiceProxy

        service = AsyncServiceProxy(client, client.wsdl.bindings[BINDING], address=url + "/soap/IIntfXMLWS")
        for i in range(jobs):
            data = pdf_of_size(SIZE_MB * 1_000_000, tag=f"z{i}")
            lateness: list[float] = []
            stop = asyncio.Event()
            beat = asyncio.create_task(heartbeat(lateness, stop))
            await asyncio.sleep(0.01)
            await service.SendJob(Account=ACCOUNT, Password=PASSWORD, JobType=0, Recipient="+494012345678",
                                  RecipientFile=b"", SendText="", SendFilename1="a.pdf", SendFile1=data,
                                  SendFilename2="", SendFile2=b"", SendFilename3="", SendFile3=b"",
                                  SendDateTime=SEND_IMMEDIATELY, Options="")
            stop.set()
            await beat
            stalls.append(max(lateness))
    return stalls


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"{SIZE_MB} MB jobs per path")
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    with simulator_process() as url:
        with tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp:
            results["faxbridge"] = asyncio.run(faxbridge_path(url, Path(tmp), args.jobs))
            try:
                results["zeep async"] = asyncio.run(zeep_async_path(url, Path(tmp), args.jobs))
            except ImportError:
                print("(zeep's async client needs httpx: pip install httpx to see the reference)")
    for name, stalls in results.items():
        print(f"{name:<11} longest loop stall per {SIZE_MB} MB job: "
              + ", ".join(f"{s * 1000:.1f} ms" for s in stalls)
              + f"   (max {max(stalls) * 1000:.1f} ms, median {percentile(stalls, 50) * 1000:.1f} ms)")
    return results


if __name__ == "__main__":
    main()
