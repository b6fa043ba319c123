"""Jobs per second for 1000 documents at once, next to raw HTTP POSTs of the same envelopes.

faxbridge: each 100 KB PDF is journaled, hashed, marked submitting, sent and recorded (three
durable commits per job) with the configured provider concurrency. Reference: the same number of
prebuilt SendJob envelopes POSTed by as many threads, nothing else. Target: ≥ 0.5× the reference.

    .venv/bin/python -m bench.throughput [--jobs 1000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import ACCOUNT, PASSWORD, pdf_of_size, simulator_process


def make_documents(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"doc{i:05d}.pdf"
        path.write_bytes(pdf_of_size(100_000, tag=str(i)))
        paths.append(path)
    return paths


async def faxbridge_run(url: str, docs: list[Path], work: Path, concurrency: int) -> float:
    from faxbridge.faxde.client import FaxDeClient
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
    from faxbridge.numbers import NumberPolicy
    from faxbridge.outbound import Outbound, OutboundSettings, number_check
    from faxbridge.provider import ProviderCalls

    client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=url + "/wsdl", timeout=60,
                         pool_size=concurrency * 2)
    calls = ProviderCalls(client, concurrency=concurrency)
    with Journal.open(work / "state") as journal:
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
    return elapsed


def raw_run(url: str, docs: list[Path], concurrency: int) -> float:
    from lxml import etree
    import zeep

    from faxbridge.faxde.client import BINDING, SEND_IMMEDIATELY, bundled_wsdl

    client = zeep.Client(str(bundled_wsdl()))
    service = client.create_service(BINDING, url + "/soap/IIntfXMLWS")
    envelopes = [
        etree.tostring(client.create_message(
            service, "SendJob", Account=ACCOUNT, Password=PASSWORD, JobType=0, Recipient="+494012345678",
            RecipientFile=b"", SendText="", SendFilename1=p.name, SendFile1=p.read_bytes(),
            SendFilename2="", SendFile2=b"", SendFilename3="", SendFile3=b"",
            SendDateTime=SEND_IMMEDIATELY, Options=""), xml_declaration=True, encoding="utf-8")
        for p in docs
    ]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency * 2))
    headers = {"SOAPAction": '"urn:IntfXMLWS-IIntfXMLWS#SendJob"', "Content-Type": "text/xml; charset=utf-8"}

    def post(body: bytes) -> None:
        session.post(url + "/soap/IIntfXMLWS", data=body, headers=headers, timeout=60).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, envelopes))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp:
        work = Path(tmp)
        docs = make_documents(work, args.jobs)
        with simulator_process() as url:
            raw = raw_run(url, docs, args.concurrency)
        with simulator_process() as url:
            ours = asyncio.run(faxbridge_run(url, docs, work, args.concurrency))
    result = {"faxbridge_jobs_per_s": args.jobs / ours, "raw_posts_per_s": args.jobs / raw}
    result["ratio"] = result["faxbridge_jobs_per_s"] / result["raw_posts_per_s"]
    print(f"{args.jobs} × 100 KB, concurrency {args.concurrency}: faxbridge {result['faxbridge_jobs_per_s']:.0f} jobs/s, "
          f"raw POSTs {result['raw_posts_per_s']:.0f}/s → {result['ratio']:.2f}×")
    return result


if __name__ == "__main__":
    main()
