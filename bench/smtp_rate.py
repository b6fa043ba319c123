"""SMTP intake: 250 replies per second for 100 KB mails with one PDF, next to a bare aiosmtpd server.

Four client threads (smtplib, one connection each, mails sent back to back) send ``--mails`` mails
of about 100 KB, each with a PDF attached, to ``+494012345678@fax.example.com``:

* at the real daemon (``faxbridge run -c CFG`` in a subprocess) with its durable spool: the mail
  is written to the spool, fsynced and journaled before the 250; meanwhile the same daemon reads
  the spooled mails, journals their jobs and sends them to the simulator (its own process), as it
  would in service;
* at the reference, a bare aiosmtpd server in its own process (``aiosmtpd.controller.Controller``)
  whose handler only writes and fsyncs each message (in a worker thread) before its 250.

The figure is mails per second from the first connection to the last 250. Target: ≥ 0.8× the
reference.

    .venv/bin/python -m bench.smtp_rate [--mails 400] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from bench.common import daemon_config, daemon_process, free_port, pdf_of_size, simulator_process

RECIPIENT = "+494012345678@fax.example.com"
SENDER = "alice@example.com"
MAIL_SIZE = 100_000


def make_mail(pdf: bytes, i: int) -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = f"Invoice {i}"
    message["Message-ID"] = f"<bench-{i}@example.com>"
    message.set_content("Please find the invoice attached.\n")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"invoice-{i}.pdf")
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire


def send_all(port: int, mails: list[bytes], clients: int) -> float:
    """Seconds for ``clients`` threads to have every mail answered with 250."""
    chunks = [mails[i::clients] for i in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(chunk: list[bytes]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                smtp.ehlo("bench.example.com")
                barrier.wait()
                for mail in chunk:
                    refused = smtp.sendmail(SENDER, [RECIPIENT], mail)
                    if refused:
                        raise RuntimeError(f"refused: {refused}")
        except BaseException as exc:  # reported after the run
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return elapsed


# -- the reference: a bare aiosmtpd server that writes and fsyncs each message ----------------


class _WriteFsync:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        path = self.folder / f"{os.getpid()}-{self.count}.eml"
        data = envelope.original_content  # type: ignore[attr-defined]

        def write() -> None:
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        await asyncio.to_thread(write)
        return "250 OK"


def serve_reference(port: int, folder: Path) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(_WriteFsync(folder), hostname="127.0.0.1", port=port,
                            data_size_limit=25_000_000)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    controller.stop()


def reference_rate(mails: list[bytes], clients: int, work: Path) -> float:
    port = free_port()
    folder = work / "reference"
    folder.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_rate", "--serve-reference", str(port), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the reference SMTP server did not start")
        return len(mails) / send_all(port, mails, clients)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)


def daemon_rate(mails: list[bytes], clients: int, work: Path) -> float:
    port = free_port()
    with simulator_process() as url:
        config = daemon_config(url, work, smtp={
            "listen": f"127.0.0.1:{port}",
            "domains": {"fax.example.com": "fax"},
            "allowed_senders": ["*@example.com"],
            "rate_limit": None,
        })
        with daemon_process(config, work):
            return len(mails) / send_all(port, mails, clients)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--serve-reference", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_reference:
        serve_reference(int(args.serve_reference[0]), Path(args.serve_reference[1]))
        return {}
    pdf = pdf_of_size(MAIL_SIZE * 3 // 4 - 2_000, tag="mail")
    mails = [make_mail(pdf, i) for i in range(args.mails)]
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        reference = reference_rate(mails, args.clients, Path(tmp))
        (Path(tmp) / "daemon").mkdir()
        ours = daemon_rate(mails, args.clients, Path(tmp) / "daemon")
    result = {"mails": args.mails, "mail_kb": len(mails[0]) / 1000, "faxbridge_per_s": ours,
              "reference_per_s": reference, "ratio": ours / reference}
    print(f"SMTP {args.mails} mails of {result['mail_kb']:.0f} KB, {args.clients} clients: faxbridge "
          f"{ours:.0f} mails/s, bare aiosmtpd + fsync {reference:.0f}/s → {result['ratio']:.2f}× (target ≥ 0.8×)")
    return result


if __name__ == "__main__":
    main()
