"""Peak memory over idle while sending 1, 20 and 50 MB PDFs, as a multiple of the document.

Each size runs in a fresh process (a peak can only be measured once per process cleanly): the
faxbridge path (journal + core + streaming client) next to the plain zeep path, where the document
goes through zeep's lxml tree. Idle is read after one small warm-up job on either path. Target:
faxbridge ≤ 1.5× the document (≤ 3× at the very least).

    .venv/bin/python -m bench.send_memory [--sizes 1,20,50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ACCOUNT, PASSWORD, pdf_of_size, peak_rss_mb, reset_peak_rss, rss_mb, simulator_process

SIZES_MB = (1, 20, 50)


def measure(url: str, size_mb: int, path_kind: str) -> dict[str, float]:
    import gc

    from faxbridge.faxde.client import SEND_IMMEDIATELY, FaxDeClient
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobType, Recipient, SendRequest
    from faxbridge.numbers import NumberPolicy
    from faxbridge.outbound import Outbound, OutboundSettings, number_check
    from faxbridge.provider import ProviderCalls

    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    pdf = work / "big.pdf"
    pdf.write_bytes(pdf_of_size(size_mb * 1_000_000, tag=path_kind))
    small = work / "small.pdf"
    small.write_bytes(pdf_of_size(10_000, tag="warm-up"))
    client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=url + "/wsdl", timeout=120)
    readings: dict[str, float] = {}

    def idle_now() -> None:
        # "Idle" is the sender ready and warm (one small job sent first, on both paths): what
        # is measured is the cost of the document, not of imports, pools and caches filled by a
        # first call of any size.
        gc.collect()
        readings["idle"] = rss_mb()
        reset_peak_rss()

    if path_kind == "zeep":
        import zeep

        from faxbridge.faxde.client import BINDING, bundled_wsdl

        # zeep with its own (requests) transport: faxbridge's client no longer lets zeep post.
        reference = zeep.Client(str(bundled_wsdl())).create_service(BINDING, client.endpoint)

        def zeep_send(path: Path) -> None:
            # The reference: zeep builds and serialises the whole envelope, document included.
            reference.SendJob(
                Account=ACCOUNT, Password=PASSWORD, JobType=0, Recipient="+494012345678",
                RecipientFile=b"", SendText="", SendFilename1=path.name, SendFile1=path.read_bytes(),
                SendFilename2="", SendFile2=b"", SendFilename3="", SendFile3=b"",
                SendDateTime=SEND_IMMEDIATELY, Options="",
            )

        zeep_send(small)
        idle_now()
        zeep_send(pdf)
    else:
        async def send() -> None:
            calls = ProviderCalls(client, concurrency=1)
            with Journal.open(work / "state") as journal:
                outbound = Outbound(journal, calls, settings=OutboundSettings(duplicate_window=0),
                                    check_recipient=number_check(NumberPolicy()))
                for i, path in enumerate((small, pdf)):
                    if path is pdf:
                        idle_now()
                    request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(path.name, path),))
                    job = await outbound.submit(request, source="bench", source_ref=str(i))
                    job = await outbound.send_now(job.id)
                    assert job.faxde_job_id, job.last_error
            await calls.close()
        asyncio.run(send())
    peak = peak_rss_mb()
    idle = readings["idle"]
    return {"idle_mb": idle, "peak_mb": peak, "extra_mb": peak - idle, "doc_mb": pdf.stat().st_size / 1e6}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MB)), help="document sizes in MB")
    args = parser.parse_args(argv)
    rows = []
    with simulator_process() as url:
        for size in [int(s) for s in args.sizes.split(",")]:
            for kind in ("faxbridge", "zeep"):
                out = subprocess.run(
                    [sys.executable, "-c",
                     f"import json; from bench.send_memory import measure; "
                     f"print(json.dumps(measure({url!r}, {size}, {kind!r})))"],
                    capture_output=True, text=True, timeout=600, check=True,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"size_mb": size, "path": kind, **figures,
                             "ratio": figures["extra_mb"] / figures["doc_mb"]})
    print(f"{'doc':>6} {'path':<10} {'idle MB':>8} {'peak MB':>8} {'extra MB':>9} {'× doc':>6}")
    for r in rows:
        print(f"{r['size_mb']:>4}MB {r['path']:<10} {r['idle_mb']:>8.1f} {r['peak_mb']:>8.1f} "
              f"{r['extra_mb']:>9.1f} {r['ratio']:>6.2f}")
    return rows


if __name__ == "__main__":
    main()
