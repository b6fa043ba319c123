"""Shared pieces of the SMTP and relay tests: a relay that collects mail, the daemon with SMTP on a
free loopback port, and mail builders. (No tests here; the test_smtp_*.py modules import it.)"""

from __future__ import annotations

import email
import email.utils
import email.policy
import smtplib
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from faxbridge.model import Job

from conftest import RunningDaemon, wait_until
from journal_backend import open_journal

SENDER = "alice@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RelaySink:
    """The handler of the test relay: keeps every mail it is given."""

    messages: list[Received] = field(default_factory=list)
    answer: str = "250 OK"  # what DATA answers ("451 …" to make it fail)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answer.startswith("250"):
            with self.lock:
                self.messages.append(
                    Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                )
        return self.answer

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} mail(s) at the relay")
        return list(self.messages)


class RelayServer:
    """An aiosmtpd Controller (a thread of its own: fine in tests) on a port chosen up front."""

    def __init__(self, port: int | None = None, **kwargs: Any) -> None:
        self.port = port or free_port()
        self.sink = RelaySink()
        self._kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> RelayServer:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port, **self._kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def relay() -> Iterator[RelayServer]:
    server = RelayServer().start()
    yield server
    server.stop()


def smtp_section(relay_port: int | None, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "domains": {
            "fax.example.com": "fax",
            "sms.example.com": "sms",
            "letter.example.com": "iletter",
        },
        "allowed_senders": ["*@example.com"],
        "report_from": "faxbridge@example.com",
        "max_recipients": 3,
    }
    if relay_port is not None:
        section["relay"] = f"127.0.0.1:{relay_port}"
    section.update(overrides)
    return section


class Rig:
    """The daemon with its SMTP edge, seen from the test thread."""

    def __init__(self, daemon: RunningDaemon, state_dir: Path, simulator: Any) -> None:
        self.daemon = daemon
        self.state_dir = state_dir
        self.simulator = simulator
        self.edge = next(e for e in daemon.daemon.edges if e.name == "smtp")
        assert self.edge.address is not None
        self.port = self.edge.address.port
        self.journal = open_journal(state_dir)

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=10)

    def send(self, message: EmailMessage, to: list[str], sender: str = SENDER) -> dict[str, Any]:
        with self.client() as client:
            return client.send_message(message, from_addr=sender, to_addrs=to)

    def jobs(self) -> list[Job]:
        return [j for j in reversed(self.journal.jobs.recent(100)) if j.source == "smtp"]

    def mail_rows(self) -> list[Any]:
        return self.journal.query("SELECT * FROM smtp_mails ORDER BY id")

    def wait_processed(self, count: int = 1) -> list[Any]:
        def done() -> list[Any]:
            rows = [r for r in self.mail_rows() if r["state"] != "spooled"]
            return rows if len(rows) >= count else []

        return wait_until(done, what=f"{count} mail(s) processed")

    def wait_final(self, count: int) -> list[Job]:
        """Until ``count`` smtp jobs are final and reported; polls FAX.de at once instead of waiting."""

        def done() -> list[Job]:
            jobs = self.jobs()
            if len(jobs) >= count and all(j.state.is_final and j.reported_at for j in jobs):
                return jobs
            self.daemon.call(lambda: self.daemon.services.outbound.poll_due())
            return []

        return wait_until(done, what=f"{count} smtp job(s) final and reported")

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def start_rig(
    tmp_path: Path, simulator: Any, make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon]
) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def start(relay_port: int | None = None, **smtp: Any) -> Rig:
        daemon = run_daemon(make_config(smtp=smtp_section(relay_port, **smtp)))
        rig = Rig(daemon, tmp_path / "state", simulator)
        rigs.append(rig)
        return rig

    yield start
    for rig in rigs:
        rig.close()


def mail(
    subject: str = "Angebot",
    body: str | None = "Sehr geehrte Damen und Herren,\n\nanbei das Angebot.\n",
    attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
    sender: str = SENDER,
    to: str = "+494012345678@fax.example.com",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = email.utils.make_msgid(domain="example.com")
    for name, value in (headers or {}).items():
        message[name] = value
    if body is not None:
        message.set_content(body)
    for filename, data, ctype in attachments:
        maintype, _, subtype = ctype.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def wire(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP (CRLF line ends; smtplib.data() leaves bytes alone)."""
    return message.as_bytes(policy=email.policy.SMTP)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate for localhost, made with the openssl command line tool."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )
    return cert, key


def insecure_client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
