"""Property-based tests (Hypothesis): numbers, sidecars, CSV lists, mail MIME parsing, file names.

Each property is something a table of examples could miss: whatever the input, only the documented
error comes out; formatting never changes which number is dialled; a refused number stays refused
however it is written; a file name never becomes a path. The first failures they found are kept
as @example rows (each was a real bug, fixed in the code).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import string
import tempfile
import unicodedata
from email.message import EmailMessage
from pathlib import Path

import phonenumbers
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from faxbridge.edges.hotfolder.instructions import (
    SIDECAR_KEYS,
    Refusal,
    parse_recipient_list,
    parse_sidecar,
)
from faxbridge.edges.hotfolder.names import (
    decode_name,
    display_name,
    encode_name,
    ignored,
    recipient_from_name,
    split_name,
    with_suffix,
)
from faxbridge.edges.inbox.files import sanitise_name
from faxbridge.edges.smtp.mail import Addressee, MailPlan, MailSettings, plan_mail
from faxbridge.documents import safe_filename
from faxbridge.errors import NumberError
from faxbridge.model import JobType
from faxbridge.numbers import ANY_COUNTRY, REFUSED_PREFIXES, NumberPolicy, refusal_reason
from faxbridge.simulator.samples import make_pdf

# The machine is shared and loaded: enough examples to find the odd case, no deadline per example.
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GERMANY = NumberPolicy()  # default_country DE, only DE allowed
ANYWHERE = NumberPolicy(default_country="DE", allowed_countries=frozenset({ANY_COUNTRY}))
E164 = re.compile(r"\+[1-9]\d{1,14}")

# -- numbers --------------------------------------------------------------------------------

SEPARATORS = [" ", "-", "/", ".", "\u00a0", "\u2013", "\u2009", "  "]
# What people type into a number field: digits, separators, the odd letter, plus, parentheses.
number_like = st.text(
    alphabet=st.sampled_from(list(string.digits * 3 + " -/.()+") + ["\u00a0", "\u2013", "x", "*", "#", ",", "é"]),
    max_size=30,
)


def formatted(digits: str, data: st.DataObject, *, keep_head: int = 1) -> str:
    """``digits`` with separators sprinkled between them (never inside the first ``keep_head``)."""
    out = digits[:keep_head]
    for ch in digits[keep_head:]:
        if data.draw(st.booleans()):
            out += data.draw(st.sampled_from(SEPARATORS))
        out += ch
    return out


@PROPERTY
@given(raw=st.one_of(number_like, st.text(max_size=40)), purpose=st.sampled_from(["fax", "sms"]),
       policy=st.sampled_from([GERMANY, ANYWHERE]))
def test_normalize_returns_dialable_e164_or_raises_number_error_only(raw: str, purpose: str, policy: NumberPolicy) -> None:
    try:
        e164 = policy.normalize(raw, purpose=purpose)
    except NumberError as exc:
        assert exc.reason and exc.raw == raw
        return
    assert E164.fullmatch(e164)
    assert refusal_reason(e164, purpose=purpose) is None  # the policy-free rule agrees
    assert policy.refusal(e164, purpose=purpose) is None
    assert not any(e164.startswith(prefix) for prefix in REFUSED_PREFIXES)
    # Idempotent: a normalised number reads as itself.
    assert policy.normalize(e164, purpose=purpose) == e164


german_subscriber = st.builds(
    lambda area, rest: area + rest,
    st.sampled_from(["30", "40", "89", "221", "69", "711", "351", "511"]),
    st.text(alphabet=string.digits[1:], min_size=1, max_size=1).flatmap(
        lambda first: st.text(alphabet=string.digits, min_size=5, max_size=7).map(lambda r: first + r)
    ),
)


@PROPERTY
@given(nsn=german_subscriber, form=st.sampled_from(["0{}", "+49{}", "0049{}", "+49 (0){}"]), data=st.data())
def test_formatting_never_changes_which_number_is_dialled(nsn: str, form: str, data: st.DataObject) -> None:
    plain = "+49" + nsn
    try:
        expected = GERMANY.normalize(plain)
    except NumberError:
        return  # not a number of that range: nothing to compare
    written = form.format(formatted(nsn, data))
    try:
        got = GERMANY.normalize(written)
    except NumberError as exc:
        # Refusing a formatting as ambiguous is allowed; reading it as another number is not.
        assert not exc.refused, (written, exc.reason)
        return
    assert got == expected, written


premium = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["900", "9001", "137", "138", "180", "1805", "700", "190", "193", "12", "118"]),
    st.text(alphabet=string.digits, min_size=3, max_size=8),
)


@PROPERTY
@given(nsn=premium, form=st.sampled_from(["0{}", "+49{}", "0049{}", "+49 (0){}", "+49 {}"]),
       purpose=st.sampled_from(["fax", "sms"]), policy=st.sampled_from([GERMANY, ANYWHERE]), data=st.data())
@example(nsn="9001234567", form="0{}", purpose="fax", policy=GERMANY, data=None)
def test_a_premium_or_service_number_is_refused_however_it_is_written(
    nsn: str, form: str, purpose: str, policy: NumberPolicy, data: st.DataObject | None
) -> None:
    written = form.format(formatted(nsn, data) if data is not None else nsn)
    with pytest.raises(NumberError):
        policy.normalize(written, purpose=purpose)


@PROPERTY
@given(code=st.sampled_from([800, 808, 870, 878, 881, 882, 883, 888, 979]),
       rest=st.text(alphabet=string.digits, min_size=4, max_size=11), data=st.data())
def test_international_network_numbers_are_refused_even_when_any_country_is_allowed(
    code: int, rest: str, data: st.DataObject
) -> None:
    with pytest.raises(NumberError):
        ANYWHERE.normalize(f"+{code}" + formatted(rest, data, keep_head=0))


# -- sidecars and CSV lists ----------------------------------------------------------------------

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())), st.dates(),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12,
)
sidecar_docs = st.dictionaries(
    st.one_of(st.sampled_from(SIDECAR_KEYS), st.text(max_size=10)), yaml_values, max_size=6
)


@PROPERTY
@given(data=st.one_of(
    st.binary(max_size=300),
    sidecar_docs.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8")),
    st.text(alphabet="[]{}:-,&*!|>'\"#%@` \n\tab0123456789", max_size=120).map(str.encode),
))
@example(data=b"send_at: 2025-02-30")  # ValueError from PyYAML's date constructor
@example(data=b"send_at: 0001-01-01 00:00:00+14:00")  # OverflowError moving it to UTC
@example(data=b"[" * 5000)  # RecursionError in PyYAML's composer
@example(data=b"!!timestamp")  # AttributeError in PyYAML's timestamp constructor
def test_a_sidecar_is_read_or_refused_with_a_reason(data: bytes) -> None:
    try:
        sidecar = parse_sidecar(data, "Offer.yaml")
    except Refusal as exc:
        assert str(exc).startswith("Offer.yaml") and exc.action
        return
    assert all(r.address.strip() == r.address and r.address for r in sidecar.recipients)
    assert len(sidecar.files) <= 3
    assert sidecar.send_at is None or sidecar.send_at.tzinfo is not None


@PROPERTY
@given(numbers=st.lists(st.text(alphabet="+0123456789 -/", min_size=1, max_size=20).filter(str.strip), min_size=1, max_size=5),
       reference=st.text(alphabet=string.ascii_letters + string.digits + "-_ ", max_size=10))
def test_a_sidecar_gives_back_the_recipients_it_was_written_with(numbers: list[str], reference: str) -> None:
    doc = {"recipients": numbers, "reference": reference}
    sidecar = parse_sidecar(yaml.safe_dump(doc).encode(), "x.yaml")
    assert [r.address for r in sidecar.recipients] == [n.strip() for n in numbers]
    assert {r.reference for r in sidecar.recipients} == {reference}


csv_cells = st.text(alphabet=string.printable + "äöü€\u00a0", max_size=25)


@PROPERTY
@given(data=st.one_of(
    st.binary(max_size=400),
    st.lists(st.lists(csv_cells, min_size=1, max_size=3), max_size=8).flatmap(
        lambda rows: st.sampled_from([",", ";", "\t"]).map(
            lambda sep: "\r\n".join(sep.join(row) for row in rows).encode("utf-8"))),
))
@example(data=b'"' + b"x" * 140_000 + b'"')  # csv.Error: field larger than field limit
def test_a_recipient_list_is_read_or_refused_with_a_reason(data: bytes) -> None:
    try:
        entries = parse_recipient_list(data, "list.csv")
    except Refusal as exc:
        assert str(exc).startswith("list.csv") and exc.action
        return
    assert entries
    # An empty first cell (",ref") stays an entry: the number check then names its line.
    assert all(e.address == e.address.strip() and not e.address.startswith("#") for e in entries)
    assert [e.line for e in entries] == sorted({e.line for e in entries})


@PROPERTY
@given(numbers=st.lists(st.from_regex(r"\+49 ?[1-9]\d{6,9}", fullmatch=True), min_size=1, max_size=20),
       sep=st.sampled_from([",", ";", "\t"]), header=st.booleans())
def test_every_line_of_a_list_is_one_entry_in_order(numbers: list[str], sep: str, header: bool) -> None:
    lines = ([f"Fax{sep}Reference"] if header else []) + [f"{n}{sep}ref-{i}" for i, n in enumerate(numbers)]
    entries = parse_recipient_list("\n".join(lines).encode(), "l.csv")
    assert [(e.address, e.reference) for e in entries] == [(n, f"ref-{i}") for i, n in enumerate(numbers)]


# -- mail: MIME parsing never crashes ----------------------------------------------------------

ADDRESSEES = (Addressee("+494012345678@fax.example.com", JobType.FAX, "+494012345678"),
              Addressee("+491701234567@sms.example.com", JobType.SMS, "+491701234567"))
SETTINGS = MailSettings()
PDF = make_pdf(1, tag="property")

header_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["=?utf-8?q?Angebot_=C3=BC?=", "=?bogus?x?abc?=", "=?utf-8?b?////?=", "\"unterminated",
                     "a@b, <c@d", "(((((", "2025-03-01T14:30+01:00", "0001-01-01T00:00+14:00",
                     "Tue, 31 Feb 2026 25:61:00 +9999", "STATIONID=ACME;;=", "\udcff"]),
)


def build_mail(subject: str, body: str, attachments: list[tuple[str, bytes, str]], extra: list[tuple[str, str]]) -> bytes:
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["To"] = "+494012345678@fax.example.com"
    message["Subject"] = subject
    message.set_content(body)
    for filename, data, ctype in attachments:
        maintype, _, subtype = ctype.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if message.is_multipart():
        message.set_boundary("==faxbridge-property==")  # the email package would draw it at random
    # Extra headers as a client writes them, raw: the email package would refuse some on setting.
    raw = b"".join(f"{name}: {value}\r\n".encode("utf-8") for name, value in extra)
    return raw + message.as_bytes()


def safe_header(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable() and not unicodedata.category(ch).startswith("C")) or "x"


mails = st.builds(
    build_mail,
    st.text(max_size=40).map(safe_header),
    st.text(max_size=200),
    st.lists(st.tuples(st.text(max_size=30).map(safe_header).map(lambda n: n + st_suffix(n)),
                       st.one_of(st.binary(max_size=200), st.just(PDF)),
                       st.sampled_from(["application/pdf", "image/tiff", "application/octet-stream",
                                        "text/plain", "application/ms-tnef"])),
             max_size=4),
    st.lists(st.tuples(st.sampled_from(["X-Fax-Send-At", "X-Fax-Options", "X-Fax-Stationid", "Reply-To",
                                        "Message-ID", "Content-Language"]),
                       header_values.map(safe_header)), max_size=3),
)


def st_suffix(name: str) -> str:
    return ".pdf" if len(name) % 3 == 0 else ".tif" if len(name) % 3 == 1 else ".txt"


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A well-formed mail, then cut, spliced and sprinkled with bytes, as broken clients send."""
    data = bytearray(draw(mails))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cut", "insert", "delete", "replace", "boundary"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\n\n", b"--", b"=?utf-8?q?", b"\x00", b"\xff\xfe",
                                                b"Content-Type: multipart/mixed; boundary=\"b\"\n",
                                                b"Content-Transfer-Encoding: base64\n", b"\n--b\n",
                                                b"filename*=utf-8''%ff%fe.pdf;"]))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = b"\nContent-Type: multipart/mixed; boundary=\"" + draw(st.binary(max_size=8)) + b"\"\n"
    return bytes(data)


@PROPERTY
@given(data=st.one_of(mangled(), st.binary(max_size=500)))
@example(data=build_mail("t", "b", [], [("X-Fax-Send-At", "0001-01-01T00:00+14:00")]))  # OverflowError
@example(data=b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
              b'hi\n--b\nContent-Type: image/tiff\nContent-Disposition: attachment; filename*')  # IndexError
def test_any_mail_bytes_become_a_plan_or_a_refusal_in_words(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as work:
        plan = plan_mail(data, ADDRESSEES, SETTINGS, Path(work) / "work",
                         now=dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc))
    assert isinstance(plan, MailPlan)
    for recipient, problem in plan.problems:
        assert isinstance(problem, str) and problem.strip(), plan.problems
        assert "Traceback" not in problem
    assert plan.parts or plan.problems, "neither a job nor a reason"
    for part in plan.parts:
        assert part.request.text or part.request.documents


# -- file names ------------------------------------------------------------------------------

UNSAFE = set("/\\")


@PROPERTY
@given(name=st.text(max_size=300))
@example(name="a" * 119 + " " + "b" * 10)  # cut at 120 characters, it ended in a space
def test_safe_filename_never_yields_a_path_or_control_characters(name: str) -> None:
    safe = safe_filename(name)
    assert safe and len(safe) <= 120
    assert not UNSAFE & set(safe)
    assert safe not in (".", "..") and not safe.startswith(".")
    assert not safe.endswith((" ", "."))  # Windows (FAX.de's server) would drop them
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in safe)
    assert safe_filename(safe) == safe  # stable: a name that is safe stays as it is


fs_names = st.binary(min_size=1, max_size=80).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).map(os.fsdecode)


@PROPERTY
@given(name=st.one_of(fs_names, st.text(min_size=1, max_size=80)))
def test_names_from_the_disk_become_safe_text_and_come_back_as_they_were(name: str) -> None:
    shown = display_name(name)
    shown.encode("utf-8")  # valid text for the journal, a log line, SendFilename
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in shown)
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return  # not a name a file system could hand us
    assert decode_name(encode_name(name)) == name
    encode_name(name).encode("utf-8")
    stem, ext = split_name(name)
    assert stem + ext == name
    assert with_suffix(name, "") == name
    assert split_name(with_suffix(name, " (2)"))[1] == ext
    if name.startswith("."):
        assert ignored(name)


@PROPERTY
@given(stem=st.text(max_size=60))
def test_a_recipient_in_a_name_is_taken_from_its_start(stem: str) -> None:
    found = recipient_from_name(stem)
    if found is None:
        return
    assert found.number and found.number in stem
    assert stem.lstrip().startswith(found.number)
    assert sum(ch.isdigit() for ch in found.number) >= 5
    assert found.number[0] in "+0"
    assert not found.shorter or found.number.startswith(found.shorter)


@PROPERTY
@given(name=st.text(max_size=300))
def test_an_inbound_file_name_is_never_hidden_a_path_or_too_long(name: str) -> None:
    safe = sanitise_name(name)
    assert safe.lower().endswith((".tif", ".tiff"))
    assert not UNSAFE & set(safe) and not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 200
    assert all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") for ch in safe)
