"""Who may send, and how much: every refusal with its SMTP code, no SendJob, no report to anyone.

The real daemon listens on a free loopback port; smtplib plays the office mail server (or the
attacker). Each test ends by checking the simulator saw no SendJob for what was refused.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import time

import pytest

from faxbridge.edges.smtp import auth as smtp_auth
from faxbridge.edges.smtp.auth import LoginFailures, hash_password
from faxbridge.errors import JournalError
from faxbridge.journal import Journal
from faxbridge.journal.logins import LoginFailuresTable

from conftest import wait_until
from test_smtp_support import (  # noqa: F401 (fixtures)
    SENDER,
    insecure_client_context,
    mail,
    relay,
    self_signed_cert,
    start_rig,
    wire,
)

FAX = "+494012345678@fax.example.com"
AUTH_PASSWORD = "bob-Secret-42-canary"


def _session(rig, sender: str = SENDER) -> smtplib.SMTP:
    client = rig.client()
    client.ehlo("office.example.com")
    return client


def test_senders_outside_allowed_senders_are_refused_and_get_no_report(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    with _session(rig) as client:
        for sender in ("mallory@evil.example", "bob@notexample.com", "bob@example.com.evil.example"):
            code, text = client.mail(sender)
            assert (code, text[:9]) == (550, b"5.7.1 Sen"), (sender, text)
            client.rset()
    # A mail from an allowed sender goes through; it is the only one the relay ever sees.
    rig.send(mail(), [FAX])
    rig.wait_final(1)
    [report] = relay.sink.wait_for(1)
    assert report.rcpt_tos == [SENDER]
    assert len(rig.simulator.calls_for("SendJob")) == 1


def test_relaying_ambiguous_and_premium_numbers_are_refused_at_rcpt(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    with _session(rig) as client:
        assert client.mail(SENDER)[0] == 250
        cases = {
            "someone@gmail.com": (550, "5.7.1 Relaying denied"),
            "+494012345678@fax.example.com.evil.example": (550, "5.7.1 Relaying denied"),
            "+4990012345678@fax.example.com": (550, "5.7.1 +4990012345678: premium-rate number"),
            "09001234567@fax.example.com": (550, "5.7.1 09001234567: premium-rate"),
            "+493012345678@sms.example.com": (550, "5.7.1 +493012345678: SMS needs a mobile"),
            "40123456@fax.example.com": (553, "5.1.3 40123456: ambiguous"),
            "+49040123456@fax.example.com": (553, "5.1.3 +49040123456: ambiguous"),
            "0800-FLOWERS@fax.example.com": (553, "5.1.3 0800-FLOWERS: contains letters"),
        }
        for address, (code, start) in cases.items():
            got_code, got_text = client.rcpt(address)
            assert (got_code, got_text.decode()[: len(start)]) == (code, start), address
        # Nothing was accepted: DATA has no recipient.
        assert client.docmd("DATA")[0] == 503
    assert rig.simulator.calls_for("SendJob") == []
    assert rig.mail_rows() == []


def test_too_many_recipients_get_452_and_the_mail_waits_for_none_of_them(start_rig, relay) -> None:
    rig = start_rig(relay.port, max_recipients=2)
    with _session(rig) as client:
        client.mail(SENDER)
        assert client.rcpt("+494012345678@fax.example.com")[0] == 250
        assert client.rcpt("+494012345678@fax.example.com")[0] == 250  # the same number: one fax
        assert client.rcpt("+493012345678@fax.example.com")[0] == 250
        code, text = client.rcpt("+498912345678@fax.example.com")
        assert (code, text) == (452, b"4.5.3 Too many recipients (at most 2 per mail)")
        client.rset()
    assert rig.simulator.calls_for("SendJob") == []


def test_oversize_mail_is_refused_with_552_by_size_and_by_data(start_rig, relay) -> None:
    rig = start_rig(relay.port, max_message_size="4KB")
    big = mail(body=("x" * 70 + "\n") * 90)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE= announced at MAIL
        rig.send(big, [FAX])
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        552, b"5.3.4 Message too big: at most 4000 bytes")
    with _session(rig) as client:  # a client that does not announce the size
        client.mail(SENDER)
        client.rcpt(FAX)
        code, text = client.data(wire(big))
        assert (code, text) == (552, b"5.3.4 Message too big: at most 4000 bytes")
        # The session goes on: the next mail, within the limit, is accepted.
        client.rset()
        client.mail(SENDER)
        client.rcpt(FAX)
        assert client.data(wire(mail()))[0] == 250
    rig.wait_final(1)
    assert len(rig.simulator.calls_for("SendJob")) == 1  # only the small one


def test_connections_over_the_limit_are_greeted_with_421(start_rig, relay) -> None:
    rig = start_rig(relay.port, max_connections=2)
    first, second = rig.client(), rig.client()
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            rig.client()
        assert refused.value.smtp_code == 421
    finally:
        first.close()
        second.close()
    wait_until(lambda: not rig.edge._connections, what="connections closed")
    rig.client().quit()  # room again


def test_idle_clients_are_disconnected_and_command_floods_cut_off(start_rig, relay) -> None:
    rig = start_rig(relay.port, idle_timeout="300ms")
    with rig.client() as client:
        time.sleep(0.6)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    with rig.client() as client:
        codes = [client.noop()[0] for _ in range(20)]
        assert set(codes) == {250}
        assert client.noop()[0] == 421  # the 21st NOOP of one connection


def test_the_per_sender_rate_limit_answers_450(start_rig, relay) -> None:
    rig = start_rig(relay.port, rate_limit={"messages": 2, "per": "1h"})
    rig.send(mail(subject="1"), [FAX])
    rig.send(mail(subject="2", to="+493012345678@fax.example.com"), ["+493012345678@fax.example.com"])
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        rig.send(mail(subject="3"), [FAX])
    assert refused.value.smtp_code == 450
    with _session(rig) as client:  # another sender is not affected
        assert client.mail("bob@example.com")[0] == 250


def test_a_mail_that_cannot_be_stored_gets_451_without_internal_details(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    spool = rig.state_dir / "spool"
    spool.rename(rig.state_dir / "spool-away")
    spool.write_text("not a folder")  # mkstemp fails as it would on a full or broken disk
    with _session(rig) as client:
        client.mail(SENDER)
        client.rcpt(FAX)
        code, text = client.data(wire(mail()))
    assert (code, text) == (451, b"4.3.0 Mail not stored because of a local problem; try again later")
    spool.unlink()
    (rig.state_dir / "spool-away").rename(spool)

    def journal_locked(**kwargs):
        raise JournalError(f"journal busy or unwritable: database is locked ({rig.state_dir})")

    rig.edge.mails.add = journal_locked
    with _session(rig) as client:
        client.mail(SENDER)
        client.rcpt(FAX)
        code, text = client.data(wire(mail()))
    assert code == 451 and b"/" not in text and b"journal" not in text
    assert list(spool.glob("*.eml")) == []  # the file written before the journal failed is gone
    assert rig.simulator.calls_for("SendJob") == []


def test_stop_intake_answers_421_to_open_sessions(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    client = _session(rig)
    rig.daemon.call(rig.edge.stop_intake)
    try:
        assert client.mail(SENDER)[0] == 421
    finally:
        client.close()
    with pytest.raises(OSError):
        rig.client()


@pytest.fixture
def tls_rig(tmp_path, start_rig, relay):
    cert, key = self_signed_cert(tmp_path)
    users = {"bob": hash_password(AUTH_PASSWORD, rounds=1000)}
    return start_rig(relay.port, tls={"cert": str(cert), "key": str(key)}, auth={"users": users})


def test_auth_is_offered_and_accepted_only_after_starttls(tls_rig, relay, caplog) -> None:
    rig = tls_rig
    plain = base64.b64encode(f"\0bob\0{AUTH_PASSWORD}".encode()).decode()
    with _session(rig) as client:
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.docmd("AUTH", f"PLAIN {plain}")[0] == 538  # encryption required
        assert client.mail("carol@partner.example")[0] == 530  # not allowed: log in first
        client.rset()
    assert rig.simulator.calls_for("SendJob") == []

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mail.log")  # aiosmtpd's own AUTH logging, at its loudest
    with _session(rig) as client:
        client.starttls(context=insecure_client_context())
        client.ehlo("office.example.com")
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bob", "wrong-" + AUTH_PASSWORD)
        assert client.docmd("AUTH", "PLAIN " + AUTH_PASSWORD)[0] == 501  # not even base64
        assert client.docmd("AUTH", "PLAIN")[0] == 421  # three AUTH attempts per connection
    with _session(rig) as client:
        client.starttls(context=insecure_client_context())
        client.ehlo("office.example.com")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        client.login("bob", AUTH_PASSWORD)
        # Logged in, any sender address may be used; the report goes to it (authorised by login).
        client.send_message(mail(sender="carol@partner.example"), "carol@partner.example", [FAX])
    rig.wait_final(1)
    [report] = relay.sink.wait_for(1)
    assert report.rcpt_tos == ["carol@partner.example"]
    secrets_ = (AUTH_PASSWORD, plain, base64.b64encode(AUTH_PASSWORD.encode()).decode())
    for secret in secrets_:
        assert secret not in caplog.text
    assert "AUTH failed for user 'bob'" in caplog.text


def test_login_failures_are_journaled_and_read_back_within_their_window(tmp_path) -> None:
    now = [1_700_000_000.0]
    journal = Journal.open(tmp_path / "state", clock=lambda: now[0])
    table = LoginFailuresTable(journal)
    journal.register_table(table)
    failures = LoginFailures(limit=3, window=60, clock=journal.clock, store=table)
    for _ in range(3):
        failures.record("192.0.2.7")
        now[0] += 1
    failures.record("198.51.100.1")
    assert failures.blocked("192.0.2.7") and not failures.blocked("198.51.100.1")
    journal.close()

    journal = Journal.open(tmp_path / "state", clock=lambda: now[0])  # a restart
    table = LoginFailuresTable(journal)
    journal.register_table(table)
    again = LoginFailures(limit=3, window=60, clock=journal.clock, store=table)
    assert again.blocked("192.0.2.7") and not again.blocked("198.51.100.1")
    now[0] += 58  # two failures leave the window: 1 of 3 left
    assert not LoginFailures(limit=3, window=60, clock=journal.clock, store=table).blocked("192.0.2.7")
    again.record("203.0.113.9")  # forgets what is older than the window
    rows = journal.query("SELECT address FROM smtp_login_failures ORDER BY failed_at")
    assert [r["address"] for r in rows] == ["192.0.2.7", "192.0.2.7", "198.51.100.1", "203.0.113.9"]
    journal.close()


def test_an_auth_lockout_survives_a_restart_of_the_daemon(tmp_path, start_rig, relay, monkeypatch) -> None:
    monkeypatch.setattr(smtp_auth, "FAILURE_DELAY", 0.0)  # the lockout is the point here, not the delay
    cert, key = self_signed_cert(tmp_path)
    settings = {"tls": {"cert": str(cert), "key": str(key)},
                "auth": {"users": {"bob": hash_password(AUTH_PASSWORD, rounds=1000)}}}
    rig = start_rig(relay.port, **settings)

    def login(password: str) -> int:
        """One AUTH PLAIN attempt (smtplib's login() would try each mechanism in turn)."""
        with _session(rig) as client:
            client.starttls(context=insecure_client_context())
            client.ehlo("office.example.com")
            blob = base64.b64encode(f"\0bob\0{password}".encode()).decode()
            return client.docmd("AUTH", f"PLAIN {blob}")[0]

    assert login(AUTH_PASSWORD) == 235
    codes = [login(f"guess-{n}") for n in range(smtp_auth.MAX_FAILURES)]
    assert codes == [535] * smtp_auth.MAX_FAILURES
    assert login(AUTH_PASSWORD) == 454  # locked out: not even checked
    rig.daemon.stop()
    rig = start_rig(relay.port, **settings)  # the same state_dir
    assert login(AUTH_PASSWORD) == 454  # still locked out after the restart
    assert rig.simulator.calls_for("SendJob") == []
