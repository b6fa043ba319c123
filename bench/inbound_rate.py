"""Inbound: faxes per second fetched, written durably and deleted on FAX.de, with 200 waiting.

The simulator (its own process) holds ``--faxes`` received faxes, each a 2-page fine-resolution
TIFF of about 90 KB, before the real daemon (``faxbridge run -c CFG`` in a subprocess, inbound
configured, ``max_per_run`` above the count) starts; its first collection runs at start-up. Per
fax: RequestReceived, checks, journal, TIFF written to a temporary name + fsync + rename + folder
fsync, JSON sidecar and received.csv, journal, DeleteReceived, journal. Measured from the first
RequestReceived arriving to the last DeleteReceived answered (the simulator's timestamps).

Reference: the same RequestReceived/DeleteReceived pairs as raw HTTP POSTs of prebuilt envelopes
against a fresh simulator, one after another (one collector), nothing written: the provider's
round trips alone. No target in issue 7; the ratio says how much the durable writing costs.

    .venv/bin/python -m bench.inbound_rate [--faxes 200]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import requests

from bench.common import ACCOUNT, PASSWORD, daemon_config, daemon_process, epoch, simulator_calls, simulator_process

SOAP = "/soap/IIntfXMLWS"


def load_inbox(url: str, count: int) -> None:
    from faxbridge.simulator.samples import make_tiff

    session = requests.Session()
    for i in range(count):
        image = make_tiff(2, width=1728, height=200, tag=f"fax {i}")
        session.post(f"{url}/admin/inbox?originator=%2B4940555{i:04d}", data=image,
                     timeout=30).raise_for_status()


def raw_run(url: str, count: int) -> float:
    """Seconds for ``count`` RequestReceived + DeleteReceived round trips, nothing else."""
    import zeep
    from lxml import etree

    from faxbridge.faxde.client import BINDING, bundled_wsdl

    client = zeep.Client(str(bundled_wsdl()))
    service = client.create_service(BINDING, url + SOAP)

    def envelope(operation: str, **params: object) -> bytes:
        message = client.create_message(service, operation, Account=ACCOUNT, Password=PASSWORD, **params)
        return etree.tostring(message, xml_declaration=True, encoding="utf-8")

    request = envelope("RequestReceived")
    session = requests.Session()
    started = time.perf_counter()
    for _ in range(count):
        reply = session.post(url + SOAP, data=request, timeout=60, headers={
            "SOAPAction": '"urn:IntfXMLWS-IIntfXMLWS#RequestReceived"', "Content-Type": "text/xml"})
        fax_id = int(re.search(rb"<FaxId[^>]*>(\d+)<", reply.content).group(1))  # type: ignore[union-attr]
        session.post(url + SOAP, data=envelope("DeleteReceived", FaxId=fax_id), timeout=60, headers={
            "SOAPAction": '"urn:IntfXMLWS-IIntfXMLWS#DeleteReceived"', "Content-Type": "text/xml"}
        ).raise_for_status()
    return time.perf_counter() - started


def daemon_run(url: str, count: int, work: Path, timeout: float = 300.0) -> float:
    output = work / "in"
    config = daemon_config(url, work, inbound={"output": str(output), "interval": "1h",
                                               "max_per_run": count + 10})
    with daemon_process(config, work):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(simulator_calls(url, "DeleteReceived")) >= count:
                break
            time.sleep(0.5)
    fetched = [c for c in simulator_calls(url, "RequestReceived") if c["result"] == 0]
    deleted = [c for c in simulator_calls(url, "DeleteReceived") if c["result"] == 0]
    if len(deleted) < count or len(list(output.glob("*.tif"))) < count:
        raise RuntimeError(f"only {len(deleted)} of {count} faxes collected within {timeout:.0f} s")
    first = min(epoch(c["started_at"]) for c in fetched)  # type: ignore[arg-type]
    last = max(epoch(c["finished_at"]) for c in deleted)  # type: ignore[arg-type]
    return last - first


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faxes", type=int, default=200)
    args = parser.parse_args(argv)
    n = args.faxes
    with simulator_process() as url:
        load_inbox(url, n)
        raw = raw_run(url, n)
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        with simulator_process(record_limit=str(3 * n + 10)) as url:
            load_inbox(url, n)
            ours = daemon_run(url, n, Path(tmp))
    result = {"faxes": n, "faxes_per_s": n / ours, "raw_per_s": n / raw, "ratio": raw / ours}
    print(f"inbound {n} faxes waiting: {result['faxes_per_s']:.0f} faxes/s fetched, stored durably and deleted; "
          f"raw RequestReceived+DeleteReceived {result['raw_per_s']:.0f}/s → {result['ratio']:.2f}×")
    return result


if __name__ == "__main__":
    main()
