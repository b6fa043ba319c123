"""The relay queue: durable before send() returns, delivered in the background, retried while the
relay is down, never twice, never lost across a restart — against a real aiosmtpd relay."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxbridge.relay import Relay, RelaySettings
from faxbridge.config import RelayConfig, Secret
from faxbridge.journal import Journal
from faxbridge.journal.mail import OutboxState

from test_smtp_support import RelayServer, free_port, relay  # noqa: F401 (fixture)
from journal_backend import open_journal

SETTINGS = RelaySettings(initial_delay=60, max_delay=600, give_up_after=3600, tick=3600, timeout=5)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with open_journal(tmp_path / "state") as j:
        yield j


def make_relay(journal: Journal, tmp_path: Path, port: int, clock: Clock | None = None, **config: Any) -> Relay:
    return Relay(
        RelayConfig(host="127.0.0.1", port=port, **config),
        journal,
        tmp_path / "state" / "outbox",
        default_from="faxbridge@example.com",
        settings=SETTINGS,
        clock=clock or Clock(),
    )


def message(subject: str = "Report", to: str = "alice@example.com", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "faxbridge@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name] = value
    msg.set_content("Your fax was delivered.\n")
    return msg


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_send_queues_durably_then_delivers_in_the_background(journal, tmp_path, relay) -> None:
    outbox = make_relay(journal, tmp_path, relay.port)

    async def scenario() -> Any:
        outbox.start()
        row = await outbox.send(message(Cc="bob@example.com", Bcc="audit@example.com"))
        assert row.path.exists() and row.state is OutboxState.QUEUED  # durable when send() returns
        await outbox.close()  # waits for the background delivery in flight
        return row

    row = run(scenario())
    [got] = relay.sink.wait_for(1)
    assert got.mail_from == "faxbridge@example.com"
    assert got.rcpt_tos == ["alice@example.com", "bob@example.com", "audit@example.com"]
    assert got.message["Bcc"] is None and got.message["Message-ID"] and got.message["Date"]
    assert outbox.outbox.get(row.id).state is OutboxState.SENT


def test_the_same_key_queues_once(journal, tmp_path, relay) -> None:
    outbox = make_relay(journal, tmp_path, relay.port)

    async def scenario() -> None:
        first = await outbox.send(message(), key="report:1")
        again = await outbox.send(message(subject="other"), key="report:1")
        assert again.id == first.id
        outbox.start()
        await outbox.close()

    run(scenario())
    assert len(relay.sink.wait_for(1)) == 1
    assert len(list((tmp_path / "state" / "outbox").iterdir())) == 1


def test_a_relay_that_is_down_is_retried_later_and_nothing_is_lost(journal, tmp_path, caplog) -> None:
    port = free_port()  # nothing listens here yet
    clock = Clock()
    outbox = make_relay(journal, tmp_path, port, clock)

    async def queue_while_down() -> None:
        await outbox.send(message(), key="report:2")
        assert await outbox.deliver_due() == 0

    run(queue_while_down())
    [row] = outbox.outbox.in_state(OutboxState.QUEUED)
    assert row.attempts == 1 and row.next_attempt_at == clock.now + 60
    assert "retry in 60 s" in caplog.text

    # The daemon restarts with the relay back: a new Relay on the same journal delivers when due.
    server = RelayServer(port).start()
    try:
        again = make_relay(journal, tmp_path, port, clock)
        assert run(again.deliver_due()) == 0  # not due yet
        clock.now += 61
        assert run(again.deliver_due()) == 1
        assert run(again.deliver_due()) == 0  # never twice
        [got] = server.sink.wait_for(1)
        assert got.message["Subject"] == "Report"
    finally:
        server.stop()


def test_permanent_refusals_end_and_temporary_ones_retry_until_too_old(journal, tmp_path, relay) -> None:
    clock = Clock()
    outbox = make_relay(journal, tmp_path, relay.port, clock)
    relay.sink.answer = "554 5.7.1 Message refused"
    refused = run(outbox.send(message(subject="refused")))
    run(outbox.deliver_due())
    assert outbox.outbox.get(refused.id).state is OutboxState.FAILED
    assert "554 5.7.1 Message refused" in outbox.outbox.get(refused.id).last_error

    relay.sink.answer = "451 4.3.0 Try later"
    later = run(outbox.send(message(subject="later")))
    run(outbox.deliver_due())
    assert outbox.outbox.get(later.id).state is OutboxState.QUEUED
    clock.now += 3600 + 1  # give_up_after
    run(outbox.deliver_due())
    assert outbox.outbox.get(later.id).state is OutboxState.FAILED
    assert relay.sink.messages == []


def test_a_mail_claimed_by_another_process_is_not_sent_again(journal, tmp_path, relay) -> None:
    clock = Clock()
    outbox = make_relay(journal, tmp_path, relay.port, clock)
    row = run(outbox.send(message()))
    assert outbox.outbox.claim(row.id, clock.now, lease=600)  # another process took it
    assert run(outbox.deliver_due()) == 0
    clock.now += 601  # … and died: the lease ran out
    assert run(outbox.deliver_due()) == 1
    assert len(relay.sink.wait_for(1)) == 1


@pytest.fixture
def tls_relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RelayServer]:
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the relay's certificate is verified, as in production
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = (data.login, data.password) == (b"fax", b"relay-Pw-canary")
        return AuthResult(success=ok, handled=False)

    server = RelayServer(tls_context=context, require_starttls=True, auth_required=True,
                         authenticator=authenticate).start()
    yield server
    server.stop()


def test_starttls_and_login_at_the_relay_without_the_password_in_any_log(
    journal, tmp_path, tls_relay, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    good = make_relay(journal, tmp_path, tls_relay.port, starttls=True, username="fax",
                      password=Secret("relay-Pw-canary"))
    assert run(good.send(message())) and run(good.deliver_due()) == 1
    assert len(tls_relay.sink.wait_for(1)) == 1

    bad = make_relay(journal, tmp_path, tls_relay.port, starttls=True, username="fax",
                     password=Secret("wrong-Pw-canary"))
    run(bad.send(message(subject="second")))
    assert run(bad.deliver_due()) == 0
    [row] = bad.outbox.in_state(OutboxState.QUEUED)
    assert "login as fax refused: 535" in row.last_error  # kept: the operator fixes the password
    assert "Pw-canary" not in caplog.text
