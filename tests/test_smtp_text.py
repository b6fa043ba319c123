"""Tables for the SMTP edge's pure parts: text helpers, the reply table, number refusals, the rate
limiter, password hashes, and the words of the report."""

from __future__ import annotations

import re

import pytest

from faxbridge.edges.smtp.auth import hash_password, verify_password
from faxbridge.edges.smtp.handler import REPLIES, RateLimiter, SmtpHandler, reply
from faxbridge.edges.smtp.report import RESULT_SENTENCES, explain_result
from faxbridge.edges.smtp.text import (
    ascii_line,
    has_real_text,
    html_to_text,
    normalize_text,
    note_text,
    safe_filename,
    strip_quoted_reply,
    strip_signature,
    unflow,
)
from faxbridge.numbers import NumberPolicy
from faxbridge.errors import NumberError


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hallo</p><p>Welt</p>", "Hallo\n\nWelt"),
        ("Zeile 1<br>Zeile 2<br/>Zeile 3", "Zeile 1\nZeile 2\nZeile 3"),
        ("<div>a   b\n  c</div>", "a b c"),
        ("<style>p{}</style><script>x()</script><p>sichtbar</p>", "sichtbar"),
        ("<head><title>T</title></head><body>B</body>", "B"),
        ("<ul><li>eins</li><li>zwei</li></ul>", "- eins\n- zwei"),
        ("Gr&uuml;&szlig;e &amp; &lt;mehr&gt;&nbsp;!", "Grüße & <mehr> !"),
        ("<pre>  a\n    b</pre>", "  a\n    b"),  # <pre> keeps its white space
        ("<table><tr><td>1</td><td>2</td></tr></table>", "1\t2"),
        ("<p>a</p><p></p><p></p><p>b</p>", "a\n\nb"),
        ("<div>a</div><div>b</div>text<p>c</p>", "a\nb\ntext\n\nc"),
        ("a<br><br>b", "a\n\nb"),
        ("<p>\n  Hallo\n  Welt\n</p>", "Hallo Welt"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("body", "above", "real"),
    [
        ("Hallo\n\n-- \nAlice\nACME", "Hallo", True),
        ("-- \nAlice\nACME", "", False),
        ("--\nAlice", "", False),
        ("\n\n  \n-- \nAlice", "", False),
        ("Termin morgen?\n\nSent from my iPhone", "Termin morgen?", True),
        ("Von meinem iPhone gesendet", "", False),
        ("a -- b\n---\nc", "a -- b\n---\nc", True),  # only a line of its own starts a signature
        ("", "", False),
    ],
)
def test_signatures(body: str, above: str, real: bool) -> None:
    assert strip_signature(body) == above
    assert has_real_text(body) is real


@pytest.mark.parametrize(
    ("flowed", "delsp", "text"),
    [
        ("Ein langer \nSatz.\n", False, "Ein langer Satz.\n"),
        ("Ein lang\nSatz", False, "Ein lang\nSatz"),
        ("abc \ndef", True, "abcdef"),
        (" >gestopft\n", False, ">gestopft\n"),
        ("Gruß\n-- \nAlice", False, "Gruß\n-- \nAlice"),  # the signature separator stays a line
    ],
)
def test_unflow(flowed: str, delsp: bool, text: str) -> None:
    assert unflow(flowed, delsp=delsp) == text


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("Hallo\n-- \nAlice", "Hallo\n-- \nAlice"),  # RFC 3676's delimiter keeps its blank
        ("Hallo\r\n-- \r\nAlice\r\n", "Hallo\n-- \nAlice"),
        ("Hallo\n--  \t\nAlice", "Hallo\n-- \nAlice"),  # blanks after "--": the delimiter
        ("Hallo\n--\nAlice", "Hallo\n--\nAlice"),  # without one it stays as written
        ("a  \n\n\n\nb\t\n\n", "a\n\nb"),
        ("x -- \ny", "x --\ny"),  # only a line of its own is a delimiter
    ],
)
def test_normalize_text_keeps_the_signature_delimiter(text: str, normalized: str) -> None:
    assert normalize_text(text) == normalized


GMAIL_WRAPPED = "On Mon, 3 Mar 2025 at 10:00, Bob Example <bob@example.com>\nwrote:"


@pytest.mark.parametrize(
    ("body", "note"),
    [
        # Attribution lines followed by nothing but the quote: cut.
        ("Ja, passt.\n\nOn Mon, Mar 3, 2025 at 10:00 AM Bob <bob@example.com> wrote:\n> 10 Uhr?\n>\n> Bob",
         "Ja, passt."),
        (f"Ja, passt.\n\n{GMAIL_WRAPPED}\n\n> 10 Uhr?", "Ja, passt."),
        ("Ja.\nAm 03.03.25 um 10:00 schrieb Bob:\n> 10 Uhr?", "Ja."),
        ("Ja.\n\nAm Mo., 3. März 2025 um 10:00 Uhr schrieb Bob Example <bob@example.com>:\n\n> 10 Uhr?", "Ja."),
        ("Oui.\n\nLe lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :\n> 10 h ?", "Oui."),
        ("Ja.\n\nam 3.3. schrieb bob:\n> > tief zitiert\n>  eins", "Ja."),
        # Outlook: everything below its separator is the earlier mail, quoted or not.
        ("Anbei.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\n\nBitte schicken.", "Anbei."),
        ("Anbei.\n\n-----Ursprüngliche Nachricht-----\nVon: Bob\nGesendet: Montag\n\nBitte.", "Anbei."),
        ("Anbei.\n\n________________________________\nVon: Bob <bob@example.com>\nGesendet: Montag", "Anbei."),
        # The signature goes too, above or below the quote.
        ("Ja.\n-- \nAlice\n\nOn Monday Bob wrote:\n> 10?", "Ja."),
        ("Ja.\n\nOn Monday Bob wrote:\n> 10?\n> -- \n> Bob", "Ja."),
        # Kept: an answer below the quote (bottom posting, inline replies) and look-alikes.
        ("On Monday Bob wrote:\n> 10 Uhr?\n\nJa, passt.\n-- \nAlice", "On Monday Bob wrote:\n> 10 Uhr?\n\nJa, passt."),
        ("Bob wrote:\n> a\nmeine Antwort", "Bob wrote:\n> a\nmeine Antwort"),
        ("On Monday Bob wrote: see below\n> a", "On Monday Bob wrote: see below\n> a"),
        ("On Monday Bob wrote:\nno quote follows", "On Monday Bob wrote:\nno quote follows"),
        ("Preis -----\nOriginal-Angebot", "Preis -----\nOriginal-Angebot"),
        ("Summe:\n________________________________\n42 EUR", "Summe:\n________________________________\n42 EUR"),
        ("> nur ein Zitat", "> nur ein Zitat"),
        ("", ""),
    ],
)
def test_note_text_leaves_out_quoted_replies_and_signatures(body: str, note: str) -> None:
    assert note_text(body) == note


def test_a_long_body_is_searched_for_quotes_in_linear_time() -> None:
    body = "Am " + "x " * 50_000 + "\n" + "Zeile\n" * 50_000 + "On Monday Bob wrote:\n> q"
    assert strip_quoted_reply(body).endswith("Zeile")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("premium-rate number (0900) — refused", "premium-rate number (0900) - refused"),
        ("Größe …", "Groesse ..."),
        ("zeile\r\nzwei\x00", "zeile zwei"),
        ("café", "cafe"),
        ("x" * 500, "x" * 397 + "..."),
    ],
)
def test_ascii_line(text: str, line: str) -> None:
    assert ascii_line(text) == line


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Angebot Müller.pdf", "Angebot Müller.pdf"),
        ("C:\\Users\\x\\scan.pdf", "scan.pdf"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\nc.pdf", "a_b_c.pdf"),
        ("  .  ", "attachment"),
        ("Mu\u0308ller.pdf", "Müller.pdf"),  # NFC: one ü, as the user typed it
        ("x" * 200 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_every_reply_is_a_well_formed_smtp_reply() -> None:
    """RFC 5321 4.2: three digits, a space, text; RFC 3463: class digit = the reply's first digit."""
    for name, template in REPLIES.items():
        match = re.fullmatch(r"([2-5])\d\d ([245])\.\d{1,3}\.\d{1,3} [ -~]+", template)
        assert match, name
        assert match.group(1) == match.group(2), name
        assert len(reply(name, *["x" * 300] * template.count("{}"))) <= 512, name


def test_reply_arguments_become_one_ascii_line() -> None:
    assert reply("number_refused", "0900 — toll\r\nfraud") == "550 5.7.1 0900 - toll fraud"


@pytest.mark.parametrize(
    ("number", "purpose", "code"),
    [
        ("+4990012345678", "fax", 550),  # premium-rate
        ("09001234567", "fax", 550),
        ("0137123456", "fax", 550),  # televoting
        ("110", "fax", 550),  # emergency
        ("+493012345678", "sms", 550),  # SMS needs a mobile
        ("+33123456789", "fax", 550),  # not in allowed_countries
        ("40123456", "fax", 553),  # ambiguous: no trunk prefix
        ("+49040123456", "fax", 553),
        ("0800-FLOWERS", "fax", 553),
        ("040 123456 ext 12", "fax", 553),
        ("+49 30 12", "fax", 553),  # not a valid number
        ("040 123456 / 040 654321", "fax", 553),  # two numbers
    ],
)
def test_number_refusals_get_550_for_policy_and_553_for_unreadable(number, purpose, code) -> None:
    policy = NumberPolicy()
    with pytest.raises(NumberError) as refused:
        policy.normalize(number, purpose=purpose)
    assert (550 if refused.value.refused else 553) == code, refused.value.reason


def test_rate_limiter_is_a_sliding_window_per_sender() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    for _ in range(2):
        assert limiter.allows("a@x")
        limiter.record("a@x")
    assert not limiter.allows("a@x")
    assert limiter.allows("b@x")
    now[0] = 59.9
    assert not limiter.allows("a@x")
    now[0] = 60.1
    assert limiter.allows("a@x")


@pytest.mark.parametrize(
    ("password", "hashed", "ok"),
    [
        # passlib's own examples for pbkdf2_sha256 (password "password")
        ("password", "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M", True),
        ("password", "$pbkdf2-sha256$6400$.6UI/S.nXIk8jcbdHx3Fhg$98jZicV16ODfEsEZeYPGHU3kbrUrvUEXOPimVSQDD44", True),
        ("Password", "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M", False),
        ("password", "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9", False),
        ("password", "$pbkdf2-md5$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M", False),
        ("password", "not a hash", False),
    ],
)
def test_verify_password(password: str, hashed: str, ok: bool) -> None:
    assert verify_password(password.encode(), hashed) is ok


def test_hash_password_round_trips_and_matches_the_config_format() -> None:
    from faxbridge.config import _HASH_RE

    hashed = hash_password("geheim", rounds=1000)
    assert _HASH_RE.fullmatch(hashed)
    assert verify_password(b"geheim", hashed)
    assert not verify_password(b"Geheim", hashed)


def test_the_handler_offers_no_auth_mechanism_of_its_own_by_accident() -> None:
    names = sorted(n[5:] for n in dir(SmtpHandler) if n.startswith("auth_"))
    assert names == ["LOGIN", "PLAIN"]


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ("OK", "delivered"),
        ("Busy", "busy"),
        ("No Answer", "did not answer"),
        ("no  answer", "did not answer"),
        ("Voice", "no fax machine answered"),
        ("No Service", "out of service"),
        ("Send-Fail", "could not be transmitted"),
        ("Call failed", "call failed"),
        ("Black-List", "blacklisted"),
        ("Weird", "FAX.de reported Weird"),
    ],
)
def test_every_send_result_of_the_spec_has_plain_words(result: str, words: str) -> None:
    assert words in explain_result(result)


def test_the_result_table_covers_the_spec() -> None:
    """FAXDE-API.md, JobStatus, SendResult: every word listed there."""
    spec = {"OK", "BUSY", "NO ANSWER", "VOICE", "NO SERVICE", "SEND-FAIL", "CALL FAILED", "BLACK-LIST"}
    assert spec <= set(RESULT_SENTENCES)
