"""Secrets and document contents stay out of everything faxbridge writes for people to read, even
with DEBUG logging: the FAX.de password, the relay password, SMTP AUTH passwords."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import logging
import signal
import smtplib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from faxbridge import logs
from faxbridge.edges.inbox.files import tiff_to_pdf
from faxbridge.edges.smtp.auth import hash_password
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import PASSWORD as FAXDE_PASSWORD, wait_until
from test_smtp_support import free_port, insecure_client_context, self_signed_cert


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.setup("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_faxbridge", False)]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_reading_a_received_fax_at_debug_level_logs_nothing_of_its_content(debug_log: io.StringIO) -> None:
    # Regression (issue 8 campaign): at DEBUG, Pillow logged every TIFF tag of every received fax
    # it converted to PDF, the sender's ImageDescription among them.
    tiff_to_pdf(make_tiff(2, tag="CONTENT-OF-THE-FAX"))
    logging.getLogger("faxbridge.test").debug("the handler is live")
    assert "the handler is live" in debug_log.getvalue()
    assert "CONTENT-OF-THE-FAX" not in debug_log.getvalue()


# -- end to end: the daemon at DEBUG, with every kind of secret in use ----------------------------

RELAY_PASSWORD = "Relay-Canary-3xW!pw"
AUTH_PASSWORD = "Bob-Auth-Canary-8kQ"
WRONG_FAXDE_PASSWORD = "Wrong-FaxDe-Canary-5tR"
MARK = "DOC-CONTENT-MARK"
NUMBER = "+494012345678"
SALES = "+494012345"
ROOT = Path(__file__).resolve().parents[2]


class AuthRelay:
    """The office mail server, insisting on a login (faxbridge's relay password)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []

        relay = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                relay.messages.append(envelope.original_content)
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            relay.logins.append((data.login, data.password))
            return AuthResult(success=data.password == RELAY_PASSWORD.encode())

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
                                     auth_require_tls=False)

    def __enter__(self) -> AuthRelay:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def secret_forms(secret: str, user: str = "bob") -> list[str]:
    """The password as it may show up: plain, base64 (AUTH LOGIN), AUTH PLAIN's base64 triple."""
    return [secret, base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{user}\0{secret}".encode()).decode()]


def run_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "faxbridge", "run", "-c", str(config)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()[-3000:]


@pytest.mark.timeout(120)
def test_at_debug_level_no_password_or_document_content_reaches_logs_reports_journal_or_mail(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path]
) -> None:
    cert, key = self_signed_cert(tmp_path)
    folder, faxes, log = tmp_path / "out", tmp_path / "faxes", tmp_path / "daemon.log"
    folder.mkdir()
    relay_password = tmp_path / "relay-password"
    relay_password.write_text(RELAY_PASSWORD + "\n")
    relay_password.chmod(0o600)
    port = free_port()
    with AuthRelay() as relay:
        config = make_config(
            logging={"level": "DEBUG"},
            hotfolders=[{"path": str(folder), "settle_time": "100ms"}],
            inbound={"output": str(faxes), "interval": "300ms",
                     "routes": [{"called_number": SALES, "pdf": True, "mail_to": ["sales@example.com"]}]},
            smtp={"listen": f"127.0.0.1:{port}", "domains": {"fax.example.com": "fax"},
                  "allowed_senders": ["*@example.com"], "report_from": "faxbridge@example.com",
                  "relay": {"host": "127.0.0.1", "port": relay.port, "username": "faxbridge",
                            "password_file": str(relay_password)},
                  "tls": {"cert": str(cert), "key": str(key)},
                  "auth": {"users": {"bob": hash_password(AUTH_PASSWORD, rounds=1000)}}},
        )
        simulator.set_refusal("+493012345678", 9)  # blacklisted: an error file with FAX.de's code
        simulator.set_faults(Fault(FaultKind.SOAP_FAULT, operation="SendJob", calls=frozenset({1})))
        simulator.add_inbound(make_tiff(1, tag=MARK + "-fax"), called_number=SALES, originator="+4930111")
        (folder / f"{NUMBER}_Offer.pdf").write_bytes(make_pdf(1, tag=MARK + "-sent"))
        (folder / "+493012345678_Blocked.pdf").write_bytes(make_pdf(1, tag=MARK + "-blocked"))
        (folder / f"{NUMBER}_Photo.pdf").write_bytes(b"\x89PNG\r\n\x1a\n" + MARK.encode() + b"-png" * 20)
        daemon = run_daemon(config, log)
        try:
            def smtp_up() -> bool:
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=2):
                        return True
                except OSError:
                    return False

            wait_until(smtp_up, timeout=20, what="the SMTP listener")
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "carol@partner.example", f"{NUMBER}@fax.example.com", "Auftrag"
            message.set_content("Anbei.\n")
            message.add_attachment(make_pdf(1, tag=MARK + "-mail"), maintype="application", subtype="pdf",
                                   filename="Auftrag.pdf")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.starttls(context=insecure_client_context())
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login("bob", "x" + AUTH_PASSWORD)  # a guess, itself a secret of sorts
                client.login("bob", AUTH_PASSWORD)
                client.send_message(message, "carol@partner.example", [f"{NUMBER}@fax.example.com"])
            wait_until(lambda: (folder / "sent" / f"{NUMBER}_Offer.status.csv").exists(), timeout=30,
                       what="the status report")
            wait_until(lambda: len(relay.messages) >= 2, timeout=30, what="the report and the fax at the relay")
            wait_until(lambda: len(list((folder / "failed").glob("*.error.txt"))) == 2, what="two error files")
        finally:
            stop(daemon, log)

        # A wrong FAX.de password: refused, all sending paused, said in the log and a notice.
        (tmp_path / "password").write_text(WRONG_FAXDE_PASSWORD + "\n")
        daemon = run_daemon(config, log)
        try:
            (folder / f"{NUMBER}_Later.pdf").write_bytes(make_pdf(1, tag=MARK + "-later"))
            wait_until((folder / "FAXBRIDGE-PAUSED.txt").exists, timeout=30, what="the pause notice")
        finally:
            stop(daemon, log)
        assert relay.logins and all(password == RELAY_PASSWORD.encode() for _, password in relay.logins)

    text = log.read_text()
    assert "DEBUG" in text and "ALL SENDING PAUSED" in text and "AUTH failed for user 'bob'" in text
    passwords = [form for secret in (FAXDE_PASSWORD, WRONG_FAXDE_PASSWORD, RELAY_PASSWORD, AUTH_PASSWORD,
                                     "x" + AUTH_PASSWORD) for form in secret_forms(secret)]
    not_ours = {tmp_path / "password", relay_password, tmp_path / "config.yaml", cert, key}
    leaks = []
    for path in tmp_path.rglob("*"):
        if not path.is_file() or path in not_ours or "simulator" in path.parts:
            continue
        data = path.read_bytes()
        leaks += [f"a password in {path}" for form in passwords if form.encode() in data]
        readable = path.suffix in (".log", ".csv", ".txt", ".json") or path.name == "FAXBRIDGE-PAUSED.txt"
        if readable and MARK.encode() in data:
            leaks.append(f"document content in {path}")
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in db.execute(f"SELECT * FROM {table}"):
                if any(isinstance(value, str) and MARK in value for value in row):
                    leaks.append(f"document content in the journal's {table}")
    for data in relay.messages:
        mail = email.message_from_bytes(data, policy=email.policy.default)
        for part in mail.walk():
            payload = part.get_payload(decode=True) or b""
            leaks += [f"a password in the mail {mail['Subject']!r}" for form in passwords
                      if form.encode() in payload or form.encode() in data]
            if MARK.encode() in payload and not str(mail["Subject"]).startswith("Fax from"):
                leaks.append(f"document content in the mail {mail['Subject']!r}")
    assert leaks == []


def test_a_password_changed_by_reload_is_scrubbed_from_the_log_too(tmp_path: Path, make_config: Callable[..., Path]) -> None:
    # Regression (issue 8 secrets): the CLI registered the secrets of the config it started with;
    # a password changed and loaded with SIGHUP was not masked in log lines.
    from faxbridge.config import load_config
    from faxbridge.daemon import Daemon

    config_path = make_config()
    (tmp_path / "password").write_text("Reloaded-Canary-Pw-77\n")
    daemon = Daemon(load_config(config_path), config_path=config_path)
    daemon.request_reload()
    assert daemon._next_config is not None
    assert logs.scrub("login with Reloaded-Canary-Pw-77 failed") == "login with *** failed"
