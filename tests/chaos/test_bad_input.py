"""Hostile input, each with its clear outcome (issue 8). What the feature tests cover already is
listed in the module docstring of each section; what is here was missing.

Documents — covered: empty, truncated, encrypted, disguised, docx (test_hotfolder bad documents),
invalid UTF-8 and control characters in names (test_hotfolder), size and page limits
(test_documents), `files:` with path separators (test_hotfolder_rules), CSV injection in
received.csv (test_inbound_rules). Here: NFD names, CSV-formula prefixes reaching a status report,
a document over documents.max_size end to end.

Mail — covered: oversize, too many recipients, connections over the limit, idle clients, command
floods and AUTH attempts per connection (test_smtp_security). Here: smuggled end-of-data, commands
pipelined behind STARTTLS, 10 000-byte lines, thousands of MIME parts, nested multipart bombs.

Config — covered: unsafe YAML tags, unknown keys, missing credentials and files (test_config).
"""

from __future__ import annotations

import base64
import email.policy
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from faxbridge.simulator.samples import make_pdf

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


def raw_session(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    read_reply(sock)  # greeting
    return sock


def read_reply(sock: socket.socket) -> list[str]:
    """One (possibly multi-line) SMTP reply."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return [data.decode(errors="replace")] if data else []
        data += chunk
        lines = data.decode(errors="replace").split("\r\n")
        complete = [line for line in lines[:-1]]
        if complete and len(complete[-1]) >= 4 and complete[-1][3] == " ":
            return complete


def send(sock: socket.socket, line: bytes) -> list[str]:
    sock.sendall(line)
    return read_reply(sock)


# -- mail ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\n.\r"])
def test_a_smuggled_end_of_data_does_not_start_a_second_mail(start_rig, relay, smuggled: bytes) -> None:
    """SMTP smuggling: only <CRLF>.<CRLF> ends DATA; the rest stays text of the one mail."""
    rig = start_rig(relay.port)
    sock = raw_session(rig.port)
    try:
        send(sock, b"EHLO office.example.com\r\n")
        assert send(sock, f"MAIL FROM:<{SENDER}>\r\n".encode())[0].startswith("250")
        assert send(sock, f"RCPT TO:<{FAX}>\r\n".encode())[0].startswith("250")
        assert send(sock, b"DATA\r\n")[0].startswith("354")
        body = (b"From: " + SENDER.encode() + b"\r\nTo: " + FAX.encode() + b"\r\nSubject: one\r\n\r\n"
                b"Dear all," + smuggled + b"MAIL FROM:<mallory@example.com>\r\nRCPT TO:<+4930999999@fax.example.com>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled fax\r\n.\r\n")
        replies = send(sock, body)
        assert len(replies) == 1 and replies[0].startswith("250"), replies
        send(sock, b"QUIT\r\n")
    finally:
        sock.close()
    [job] = rig.wait_final(1)
    assert [r["key"] for r in rig.mail_rows()] == [job.source_ref.split(":")[0]]
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["Recipient"] == "+494012345678"


def test_commands_pipelined_behind_starttls_are_not_carried_into_the_tls_session(
    tmp_path: Path, start_rig, relay
) -> None:
    """CVE-2011-0411 style injection: plaintext sent after STARTTLS must be thrown away."""
    cert, key = self_signed_cert(tmp_path)
    rig = start_rig(relay.port, tls={"cert": str(cert), "key": str(key)})
    sock = raw_session(rig.port)
    try:
        send(sock, b"EHLO office.example.com\r\n")
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<" + FAX.encode() + b">\r\n")
        reply = read_reply(sock)
        assert reply[0].startswith("220"), reply
        with insecure_client_context().wrap_socket(sock, server_hostname="localhost") as tls:
            assert send(tls, b"EHLO office.example.com\r\n")[-1].startswith("250")
            # The injected MAIL FROM was not taken: a recipient now is out of sequence.
            assert send(tls, f"RCPT TO:<{FAX}>\r\n".encode())[0].startswith("503")
            assert send(tls, b"QUIT\r\n")[0].startswith("221")
    finally:
        sock.close()
    assert rig.mail_rows() == []


def test_a_10000_byte_command_line_is_refused_and_a_10000_byte_mail_line_does_no_harm(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    sock = raw_session(rig.port)
    try:
        send(sock, b"EHLO office.example.com\r\n")
        reply = send(sock, b"MAIL FROM:<" + b"a" * 10_000 + b"@example.com>\r\n")
        assert reply[0].startswith("500"), reply  # RFC 5321 4.5.3.1.4: 512 octets at most
        assert send(sock, b"NOOP\r\n")[0].startswith("250")  # the session goes on
    finally:
        sock.close()
    message = mail(body="Anfang\n" + "x" * 10_000 + "\nEnde\n", attachments=[("a.pdf", make_pdf(1), "application/pdf")])
    message["X-Long"] = "y" * 10_000
    with rig.client() as client:
        code = None
        try:
            client.sendmail(SENDER, [FAX], message.as_bytes(policy=email.policy.SMTP.clone(max_line_length=None)))
            code = 250
        except smtplib.SMTPDataError as exc:
            code = exc.smtp_code
    # Over 998 octets a line (RFC 5321 4.5.3.1.6): refused as a whole, or taken — never half a mail.
    if code == 250:
        [job] = rig.wait_final(1)
        assert job.state.value == "delivered"
    else:
        assert code == 500 and rig.mail_rows() == []


def multipart_bomb(depth: int) -> bytes:
    """A mail whose body is multipart/mixed nested ``depth`` levels deep, a PDF at the bottom."""
    pdf = base64.encodebytes(make_pdf(1, tag="deep")).replace(b"\n", b"\r\n")
    head = (f"From: {SENDER}\r\nTo: {FAX}\r\nSubject: nested\r\nMIME-Version: 1.0\r\n").encode()
    opening, closing = [], []
    for level in range(depth):
        opening.append(f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode())
        closing.append(f"\r\n--b{level}--\r\n".encode())
    leaf = (b'Content-Type: application/pdf; name="deep.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="deep.pdf"\r\n\r\n' + pdf)
    return head + b"".join(opening) + leaf + b"".join(reversed(closing))


@pytest.mark.timeout(60)
def test_thousands_of_mime_parts_are_refused_quickly_with_a_report(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    message = mail(subject="Teile")
    for i in range(3000):
        message.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="octet-stream",
                               filename=f"part{i}.bin")
    started = time.monotonic()
    with rig.client() as client:
        client.sendmail(SENDER, [FAX], wire(message))
    [row] = rig.wait_processed(1)
    assert time.monotonic() - started < 20
    assert row["state"] == "rejected"
    assert rig.simulator.calls_for("SendJob") == []
    [report] = relay.sink.wait_for(1)
    assert report.message["Subject"].startswith("Fax NOT sent")


def rfc822_bomb(depth: int) -> bytes:
    """Forwarded mail in forwarded mail … ``depth`` times: nesting without a single boundary."""
    inner = f"From: {SENDER}\r\nSubject: innermost\r\n\r\nhello\r\n".encode()
    for _ in range(depth):
        inner = (f"From: {SENDER}\r\nTo: {FAX}\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: message/rfc822\r\n\r\n").encode() + inner
    return inner


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("bomb", "depth"), [("multipart", 40), ("multipart", 60), ("multipart", 2000),
                                             ("rfc822", 2000)])
def test_a_nested_multipart_bomb_is_refused_with_the_reason(start_rig, relay, bomb: str, depth: int) -> None:
    # Regression (issue 8): past a few hundred levels Python's parser raised RecursionError, and the
    # sender was told "an error in faxbridge" (the log got a traceback) instead of the reason.
    rig = start_rig(relay.port)
    data = multipart_bomb(depth) if bomb == "multipart" else rfc822_bomb(depth)
    started = time.monotonic()
    with rig.client() as client:
        client.sendmail(SENDER, [FAX], data)
    [row] = rig.wait_processed(1)
    assert time.monotonic() - started < 20
    [report] = relay.sink.wait_for(1)
    text = report.message.get_body(("plain",)).get_content()
    if depth <= 40:  # deep, but within reason: the PDF at the bottom is sent
        assert row["state"] == "processed"
        rig.wait_final(1)
        return
    assert row["state"] == "rejected"
    assert "nested MIME sections and was not read" in text and "an error in faxbridge" not in text
    assert rig.simulator.calls_for("SendJob") == []


# -- documents --------------------------------------------------------------------------------------

import csv
import io
import unicodedata
from collections.abc import Callable
from typing import Any

from faxbridge.simulator import Simulator

NUMBER = "+494012345678"


@pytest.fixture
def hotfolder(tmp_path: Path, make_config: Callable[..., Path], run_daemon: Callable[..., Any]):
    """``hotfolder(**keys)`` runs the daemon with one hotfolder; returns its path."""

    def start(**keys: Any) -> Path:
        folder = tmp_path / "out"
        folder.mkdir(exist_ok=True)
        sections = keys.pop("_config", {})
        config = make_config(hotfolders=[{"path": str(folder), "settle_time": "150ms", **keys}], **sections)
        run_daemon(config)
        return folder

    return start


def status_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_nfd_umlauts_in_a_name_are_kept_and_its_nfc_sidecar_still_belongs_to_it(
    hotfolder: Callable[..., Path], simulator: Simulator
) -> None:
    """macOS writes names decomposed (u + U+0308), Windows and most programs composed: a sidecar
    saved by one program belongs to the document saved by another all the same."""
    folder = hotfolder()
    nfd = unicodedata.normalize("NFD", f"{NUMBER}_Rechnung Müller.pdf")
    nfc_yaml = unicodedata.normalize("NFC", f"{NUMBER}_Rechnung Müller.yaml")
    assert nfd != unicodedata.normalize("NFC", nfd)
    (folder / nfc_yaml).write_text("recipient: '+493012345678'\nreference: MÜLLER-1\n")
    (folder / nfd).write_bytes(make_pdf(1, tag="nfd"))
    wait_until(lambda: (folder / "sent" / nfd).exists(), what="the document in sent/")
    [call] = simulator.calls_for("SendJob")
    assert call.params["Recipient"] == "+493012345678[MÜLLER-1]"
    assert unicodedata.normalize("NFC", call.params["SendFilename1"]) == unicodedata.normalize("NFC", nfd)
    wait_until(lambda: (folder / "sent" / nfc_yaml).exists(), what="the sidecar in sent/ beside it")


def test_path_separators_and_reserved_characters_never_reach_faxde_in_a_name(
    hotfolder: Callable[..., Path], simulator: Simulator
) -> None:
    # Regression (issue 8 bad input): a name is any bytes but "/" on Linux; "Scans\\..\\x.pdf" or
    # "C:\\x.pdf" went to FAX.de's Windows server as SendFilename unchanged (mail attachments
    # were already cut to their last part).
    folder = hotfolder(recipient="+493012345678")
    names = {"Scans\\..\\..\\Windows\\system.pdf": "system.pdf", "C:report?.pdf": "C_report_.pdf",
             "Mu\u0308ller <draft>.pdf": "Müller _draft_.pdf"}
    for i, name in enumerate(names):
        (folder / name).write_bytes(make_pdf(1, tag=f"sep{i}"))
    wait_until(lambda: len(simulator.calls_for("SendJob")) == 3, what="three SendJobs")
    assert {c.params["SendFilename1"] for c in simulator.calls_for("SendJob")} == set(names.values())
    wait_until(lambda: all((folder / "sent" / n).exists() for n in names), what="the originals in sent/")


def test_formula_prefixes_from_names_sidecars_lists_and_faxde_never_reach_a_report_unescaped(
    hotfolder: Callable[..., Path], simulator: Simulator
) -> None:
    """CSV injection (=, +, -, @): a reference in a file name, a sidecar, a recipient list, and a
    station id the receiving fax machine chose — every cell of NAME.status.csv stays text."""
    folder = hotfolder()
    simulator.set_result("+493012345678", "OK", remote_id='=HYPERLINK("http://evil.example","x")')
    (folder / f"{NUMBER} [=1+2] Name.pdf").write_bytes(make_pdf(1, tag="name"))
    (folder / "Sidecar.yaml").write_text("recipient: '+493012345678'\nreference: '@SUM(A1:A9)'\n")
    (folder / "Sidecar.pdf").write_bytes(make_pdf(1, tag="sidecar"))
    (folder / "List.csv").write_text("+494012345678;-2+3\n+493012345678;+cmd|' /C calc'!A0\n")
    (folder / "List.pdf").write_bytes(make_pdf(1, tag="list"))
    reports = [folder / "sent" / f"{NUMBER} [=1+2] Name.status.csv", folder / "sent" / "Sidecar.status.csv",
               folder / "sent" / "List.status.csv"]
    wait_until(lambda: all(r.exists() for r in reports), timeout=20, what="three status reports")
    cells = [cell for report in reports for row in status_rows(report) for cell in row.values()]
    assert {"'=1+2", "'@SUM(A1:A9)", "'-2+3", "'+cmd|' /C calc'!A0",
            '\'=HYPERLINK("http://evil.example","x")'} <= set(cells)
    assert not [c for c in cells if c[:1] in ("=", "@", "-") or (c[:1] == "+" and not c[1:].isdigit())]


def test_a_document_over_the_size_limit_goes_to_failed_with_the_limit_named(
    hotfolder: Callable[..., Path], simulator: Simulator
) -> None:
    folder = hotfolder(_config={"documents": {"max_size": "50KB"}})
    huge = make_pdf(1, tag="huge") + b"%" + b"x" * 80_000 + b"\n%%EOF\n"
    (folder / f"{NUMBER}_Huge.pdf").write_bytes(huge)
    error = folder / "failed" / f"{NUMBER}_Huge.error.txt"
    wait_until(error.exists, what="the error file")
    # Regression (issue 8 bad input): a 50KB limit read "larger than the limit of 0.0 MB" (MiB, one
    # decimal), and "what to do" said to check the document opens.
    text = error.read_text()
    assert f"{len(huge) / 1000:.1f} kB is larger than the limit of 50 kB (documents.max_size)" in text, text
    assert "Send a smaller file" in text
    assert simulator.calls_for("SendJob") == []


@pytest.mark.timeout(60)
def test_auth_guessing_over_many_connections_is_stopped_per_address(
    tmp_path: Path, start_rig, relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (issue 8 bad input): AUTH was limited to 3 tries per connection only; a guesser
    # opened connection after connection, every guess costing a PBKDF2 in the daemon.
    from faxbridge.edges.smtp import auth as smtp_auth

    monkeypatch.setattr(smtp_auth, "FAILURE_DELAY", 0.0)
    cert, key = self_signed_cert(tmp_path)
    rig = start_rig(relay.port, tls={"cert": str(cert), "key": str(key)},
                    auth={"users": {"bob": smtp_auth.hash_password("right-password", rounds=1000)}})

    def login(password: str) -> tuple[int, bytes]:
        with rig.client() as client:
            client.starttls(context=insecure_client_context())
            client.ehlo("office.example.com")
            # One AUTH PLAIN each (smtplib's login() would try PLAIN and LOGIN: two guesses).
            return client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0bob\0{password}".encode()).decode())

    codes = [login(f"guess-{i}")[0] for i in range(smtp_auth.MAX_FAILURES)]
    assert codes == [535] * smtp_auth.MAX_FAILURES
    assert login("guess-more") == (454, smtp_auth.TOO_MANY_FAILURES[4:].encode())
    assert login("right-password")[0] == 454  # locked out for the window, right or wrong
    handler = rig.edge.handler
    handler.login_failures._seen.clear()  # the window has passed
    assert login("right-password")[0] == 235


def test_failed_logins_count_per_address_in_a_sliding_window() -> None:
    from faxbridge.edges.smtp.auth import LoginFailures

    now = [0.0]
    failures = LoginFailures(limit=3, window=60, clock=lambda: now[0])
    for t in (0, 10, 20):
        now[0] = t
        failures.record("192.0.2.1")
    assert failures.blocked("192.0.2.1") and not failures.blocked("192.0.2.2")
    now[0] = 61  # the first failure has left the window
    assert not failures.blocked("192.0.2.1")


@pytest.mark.timeout(60)
def test_a_slow_client_is_cut_off_idle_and_a_drip_feeding_one_after_ten_idle_timeouts(start_rig, relay) -> None:
    # Regression (issue 8 bad input): aiosmtpd's idle timeout restarts with every command, so a
    # client sending RSET (or RCPT, MAIL …) every few seconds kept its connection slot for hours;
    # twenty of them and nobody else could send.
    rig = start_rig(relay.port, idle_timeout="300ms")
    with rig.client() as client:  # stops sending, in the middle of DATA
        client.ehlo("office.example.com")
        client.mail(SENDER)
        client.rcpt(FAX)
        client.putcmd("DATA")
        assert client.getreply()[0] == 354
        client.send(b"Subject: slow\r\n\r\nfirst line\r\n")
        # No byte for idle_timeout: told so (421) and disconnected.
        assert client.getreply() == (421, b"4.4.2 No data for 0.3 s, closing; try again")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.getreply()
    started = time.monotonic()
    with rig.client() as client:  # keeps sending something, never anything that ends
        with pytest.raises(smtplib.SMTPServerDisconnected):
            while time.monotonic() - started < 20:
                code, text = client.rset()
                if code == 421:
                    assert b"Session too long" in text
                    raise smtplib.SMTPServerDisconnected(text.decode())
                time.sleep(0.2)
    assert 2.5 < time.monotonic() - started < 5  # ten idle timeouts of 0.3 s
    assert rig.mail_rows() == []
