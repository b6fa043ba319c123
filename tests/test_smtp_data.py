"""DATA as clients really send it: bare-LF line ends accepted and stored as CRLF, the end of data
only at CRLF "." CRLF (no SMTP smuggling), dot-unstuffing, the size and line limits, and a client
that trickles or stalls cut off. The rules as a table first; then the real daemon on a loopback
port, with raw bytes on a socket where smtplib would not send them."""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import re
import select
import socket
import time

import pytest

from faxbridge.edges.smtp.data import DataAssembler, Refusal, read_data
from faxbridge.simulator.samples import make_pdf

from test_smtp_support import SENDER, mail, relay, start_rig  # noqa: F401 (fixtures)

FAX = "+494012345678@fax.example.com"
OTHER_FAX = "+493012345678@fax.example.com"


def assemble(stream: bytes, *, size_limit: int | None = None,
             max_line_chars: int = 1001) -> tuple[bytes | None, Refusal | None, bytes]:
    """Feed ``stream`` as a reader splitting on LF would; (message or None if no end, refusal, rest)."""
    assembler = DataAssembler(size_limit=size_limit, max_line_chars=max_line_chars)
    pieces = re.findall(rb"[^\n]*\n|[^\n]+$", stream)
    for n, piece in enumerate(pieces):
        if assembler.feed(piece):
            return assembler.content(), assembler.refusal, b"".join(pieces[n + 1:])
    return None, assembler.refusal, b""


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"a\r\nb\r\n.\r\n", b"a\r\nb\r\n"),  # RFC 5321
        (b"a\nb\r\n.\r\n", b"a\r\nb\r\n"),  # bare LF lines, stored with CRLF
        (b"a\nb\n\r\n.\r\n", b"a\r\nb\r\n\r\n"),  # how smtplib ends bytes with a bare LF
        (b"a\r\nb\nc\r\n\n\r\n.\r\n", b"a\r\nb\r\nc\r\n\r\n\r\n"),  # mixed; an empty bare-LF line
        (b".\r\n", b""),  # an empty message
        (b"..\r\n..x\n.y\r\n.\r\n", b".\r\n.x\r\ny\r\n"),  # dot-unstuffing, whatever the line end
        (b"a\rb\r\n.\r\n", b"a\rb\r\n"),  # a bare CR inside a line is content
        (b"a\r\n\r.\r\n.\r\n", b"a\r\n\r.\r\n"),  # CR "." CRLF is not an end either
        # The smuggling forms: a "." line that is not CRLF "." CRLF is a line of the message.
        (b"a\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),  # LF . LF
        (b"a\n.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),  # LF . CRLF
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),  # CRLF . LF
        (b".\nb\r\n.\r\n", b"\r\nb\r\n"),  # "." LF right after the 354
    ],
)
def test_lines_and_the_end_of_data(stream: bytes, message: bytes) -> None:
    assert assemble(stream) == (message, None, b"")


@pytest.mark.parametrize(
    "stream",
    [b"a\r\n.\n", b"a\n.\r\n", b"a\n.\n", b"a\r\n.", b"a\r\n. \r\n", b"a\r\n"],
)
def test_no_end_of_data_without_crlf_dot_crlf(stream: bytes) -> None:
    assert assemble(stream)[0] is None


def test_what_follows_the_end_is_left_for_the_next_command() -> None:
    assert assemble(b"a\nb\r\n.\r\nQUIT\r\n") == (b"a\r\nb\r\n", None, b"QUIT\r\n")

    async def read() -> bytes:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"a\nb\r\n.\r\nMAIL FROM:<x@example.com>\r\n")
        assembler = DataAssembler(size_limit=None, max_line_chars=1001)
        await read_data(reader, assembler)
        assert assembler.content() == b"a\r\nb\r\n"
        return await reader.readuntil(b"\r\n")

    assert asyncio.run(read()) == b"MAIL FROM:<x@example.com>\r\n"

    async def hung_up() -> bool:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"a\r\nhalf a li")
        reader.feed_eof()
        return await read_data(reader, DataAssembler(size_limit=None, max_line_chars=1001))

    assert asyncio.run(hung_up()) is False


@pytest.mark.parametrize(
    ("body", "limit", "refusal"),
    [
        (b"x" * 8 + b"\r\n", 10, None),  # exactly the limit, as stored
        (b"xxx\nxxx\r\n", 10, None),  # a bare LF is stored as CRLF: 10 bytes
        (b"xxxx\nxxx\r\n", 10, Refusal.TOO_BIG),  # 11 bytes once stored
        (b"..\r\n" * 3, 9, None),  # stuffing dots are not counted: 3 × ".\r\n"
        (b"x" * 1001 + b"\r\n", None, None),  # the longest line (what aiosmtpd took before)
        (b"x" * 1001 + b"\n\r\n", None, None),
        (b"x" * 1002 + b"\r\n", None, Refusal.LINE_TOO_LONG),
        (b"x" * 1002 + b"\n\r\n", None, Refusal.LINE_TOO_LONG),
        ((b"x" * 900 + b"\n") * 50 + b"\r\n", None, None),  # bare-LF lines are lines, not one
    ],
)
def test_size_and_line_limits(body: bytes, limit: int | None, refusal: Refusal | None) -> None:
    message, got, _ = assemble(body + b".\r\n", size_limit=limit)
    assert got is refusal
    stored = re.sub(rb"(?<!\r)\n", b"\r\n", body).replace(b"..", b".")
    assert message == (b"" if refusal else stored)


def test_a_long_line_read_in_parts_is_one_line() -> None:
    assembler = DataAssembler(size_limit=None, max_line_chars=10)
    for piece in (b".abcd", b"efgh\r", b"\n", b"x\r", b"y\r\n"):  # as LimitOverrunError splits it
        assert not assembler.feed(piece)
    assert assembler.feed(b".\r\n")
    assert (assembler.content(), assembler.refusal) == (b"abcdefgh\r\nx\ry\r\n", None)
    assembler = DataAssembler(size_limit=None, max_line_chars=10)
    for piece in (b"abcdef", b"ghijk\r", b"\n"):  # 11 characters
        assembler.feed(piece)
    assert assembler.feed(b".\r\n") and assembler.refusal is Refusal.LINE_TOO_LONG


# -- over a real socket --------------------------------------------------------------------


class RawSession:
    """An SMTP client that writes exactly the bytes it is given (smtplib would fix them)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        """The next reply line; b"" once the server has closed the connection."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def command(self, line: str) -> bytes:
        """Send a command; its reply (the last line of a multi-line one)."""
        self.sock.sendall(line.encode("ascii") + b"\r\n")
        reply = self.reply()
        while reply[3:4] == b"-":
            reply = self.reply()
        return reply

    def start_data(self, sender: str = SENDER, to: str = FAX) -> None:
        assert self.command("EHLO office.example.com").startswith(b"250 ")
        assert self.command(f"MAIL FROM:<{sender}>").startswith(b"250")
        assert self.command(f"RCPT TO:<{to}>").startswith(b"250")
        assert self.command("DATA").startswith(b"354")

    def close(self) -> None:
        self.sock.close()


SMUGGLED = (
    b"MAIL FROM:<mallory@example.com>\r\n"
    b"RCPT TO:<" + OTHER_FAX.encode() + b">\r\n"
    b"DATA\r\n"
    b"From: mallory@example.com\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"second message, paid by the office\r\n"
)


@pytest.mark.parametrize("end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"], ids=["LF.LF", "LF.CRLF", "CRLF.LF"])
def test_a_smuggled_second_message_stays_inside_the_first(start_rig, relay, end: bytes) -> None:
    rig = start_rig(relay.port)
    session = RawSession(rig.port)
    try:
        session.start_data()
        first = b"From: alice@example.com\r\nSubject: first\r\n\r\nBitte faxen.\r\nfirst message"
        session.sock.sendall(first + end + SMUGGLED + b".\r\nQUIT\r\n")
        replies = []
        while line := session.reply():
            replies.append(line)
    finally:
        session.close()
    # One reply for the one message (250), then QUIT's 221; nothing for the smuggled commands.
    assert [r[:3] for r in replies] == [b"250", b"221"], replies
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["Recipient"] == "+494012345678"
    assert "first message" in call.params["SendText"]
    assert "MAIL FROM:<mallory@example.com>" in call.params["SendText"]
    assert "second message, paid by the office" in call.params["SendText"]
    [row] = rig.mail_rows()
    assert row["sender"] == SENDER
    stored = rig.state_dir / "mail-archive" / f"{row['key']}.eml"
    assert b"Subject: smuggled" in stored.read_bytes()  # a body line of the first message


def _pdf_mail() -> tuple[object, bytes]:
    pdf = make_pdf(2, tag="bare-lf")
    message = mail(body="Bitte an Herrn Meier.\n", attachments=[("Angebot.pdf", pdf, "application/pdf")])
    return message, pdf


def test_sendmail_with_as_bytes_bare_lf_is_faxed_with_the_pdf_intact(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    message, pdf = _pdf_mail()
    data = message.as_bytes()  # the everyday idiom: policy default, lines end in a bare LF
    assert b"\n" in data and b"\r\n" not in data
    with rig.client() as client:
        assert client.sendmail(SENDER, [FAX], data) == {}
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Angebot.pdf"
    assert hashlib.sha256(call.params["SendFile1"]).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert call.params["SendText"] == "Bitte an Herrn Meier."
    [row] = rig.mail_rows()
    stored = (rig.state_dir / "mail-archive" / f"{row['key']}.eml").read_bytes()
    assert b"\n" not in stored.replace(b"\r\n", b"")  # stored with CRLF only


def test_send_message_is_faxed_with_the_pdf_intact(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    message, pdf = _pdf_mail()
    with rig.client() as client:
        assert client.send_message(message, SENDER, [FAX]) == {}
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert hashlib.sha256(call.params["SendFile1"]).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert call.params["SendText"] == "Bitte an Herrn Meier."


def test_a_bare_lf_mail_over_the_size_limit_gets_552_and_the_session_goes_on(start_rig, relay) -> None:
    rig = start_rig(relay.port, max_message_size="4KB")
    big = mail(body=("x" * 10 + "\n") * 330).as_bytes()  # under 4 kB as sent, over it with CRLF
    assert len(big) <= 4000 < len(big.replace(b"\n", b"\r\n"))
    with rig.client() as client:
        client.ehlo("office.example.com")
        client.mail(SENDER)
        client.rcpt(FAX)
        assert client.data(big) == (552, b"5.3.4 Message too big: at most 4000 bytes")
        client.rset()
        client.mail(SENDER)
        client.rcpt(FAX)
        assert client.data(mail().as_bytes(policy=email.policy.default))[0] == 250
    rig.wait_final(1)
    assert len(rig.simulator.calls_for("SendJob")) == 1


def test_a_line_too_long_gets_500_with_an_enhanced_code(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    with rig.client() as client:
        client.ehlo("office.example.com")
        client.mail(SENDER)
        client.rcpt(FAX)
        code, text = client.data(b"Subject: x\n\n" + b"y" * 1002 + b"\n")
        assert (code, text[:6]) == (500, b"5.5.2 ")
        assert client.noop()[0] == 250
    assert rig.mail_rows() == []


def test_a_client_trickling_data_is_cut_after_data_timeout(start_rig, relay) -> None:
    rig = start_rig(relay.port, idle_timeout="5s", data_timeout="1s")
    session = RawSession(rig.port)
    try:
        session.start_data()
        reply = b""
        for byte in b"Subject: slow\r\n\r\n" + b"x" * 400:  # 20 s at most
            # One byte every 50 ms: never idle for long, never done.
            session.sock.sendall(bytes([byte]))
            readable, _, _ = select.select([session.sock], [], [], 0.05)
            if readable:
                reply = session.reply()
                break
        assert reply == b"421 4.4.2 DATA took longer than 1 s, closing; try again"
        assert session.reply() == b""  # and disconnected
    finally:
        session.close()
    assert rig.mail_rows() == []
    assert rig.simulator.calls_for("SendJob") == []


def test_a_client_stalling_in_data_is_cut_after_idle_timeout(start_rig, relay) -> None:
    rig = start_rig(relay.port, idle_timeout="1s")
    session = RawSession(rig.port)
    try:
        session.start_data()
        session.sock.sendall(b"Subject: stalled\r\n\r\nhalf a mai")
        assert session.reply() == b"421 4.4.2 No data for 1 s, closing; try again"
        assert session.reply() == b""
    finally:
        session.close()
    assert rig.mail_rows() == []
    assert rig.simulator.calls_for("SendJob") == []


def test_a_long_data_transfer_is_not_cut_by_the_command_idle_timeout(start_rig, relay) -> None:
    # Bytes keep coming, each within idle_timeout: the transfer may take longer than it (and
    # longer than aiosmtpd's timeout, which counted from the DATA command).
    rig = start_rig(relay.port, idle_timeout="1s", data_timeout="30s")
    session = RawSession(rig.port)
    try:
        session.start_data()
        session.sock.sendall(b"From: alice@example.com\r\nSubject: slow but steady\r\n\r\n")
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # a slow link: a line every 100 ms, longer than idle_timeout
            session.sock.sendall(b"Zeile\r\n")
            assert not select.select([session.sock], [], [], 0.1)[0]  # no reply: not cut
        session.sock.sendall(b".\r\n")
        assert session.reply().startswith(b"250 2.0.0 OK: queued as ")
        assert session.command("QUIT").startswith(b"221")
    finally:
        session.close()
    rig.wait_final(1)


def test_a_client_hanging_up_in_data_leaves_nothing_and_no_error(start_rig, relay, caplog) -> None:
    rig = start_rig(relay.port)
    session = RawSession(rig.port)
    session.start_data()
    session.sock.sendall(b"Subject: cut\r\n\r\nhalf a mail\n")
    session.close()
    rig.send(mail(), [FAX])  # the next client is served as usual
    rig.wait_final(1)
    assert len(rig.mail_rows()) == 1
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
