"""The FAX.de simulator, spoken to for real over loopback HTTP: by zeep with the bundled WSDL (as faxbridge
does), and by raw requests where transport details matter (faults, WSDL, admin endpoints)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions

from faxbridge.faxde.codes import RESULT_CODES
from faxbridge.simulator import AccountState, Fault, FaultKind, Simulator
from faxbridge.simulator.documents import DocumentProblem, count_pages, tiff_page_count
from faxbridge.simulator.faults import FaultPlan
from faxbridge.simulator.record import JSON_INLINE_BYTES
from faxbridge.simulator.recipients import Verdict, judge_address, judge_number, parse_recipient_file
from faxbridge.simulator.samples import make_pdf, make_tiff

WSDL_PATH = str(resources.files("faxbridge.faxde").joinpath("IntfXMLWS.wsdl"))
BINDING = "{http://tempuri.org/}IIntfXMLWSbinding"
ACCOUNT, PASSWORD = "12345", "secret"
IMMEDIATELY = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # in the past: "send at once"
START = dt.datetime(2017, 6, 1, 15, 53, 6, tzinfo=dt.timezone.utc)  # the spec's sample timestamp
FAX = "+4940123456789"
PDF2 = make_pdf(2)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504


class FakeClock:
    """The simulator's time, moved by the test: no sleeps, no races."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def zeep_client() -> Iterator[zeep.Client]:
    client = zeep.Client(WSDL_PATH)
    yield client
    client.transport.session.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
def fx(zeep_client: zeep.Client, sim: Simulator) -> Any:
    """The simulator's operations through zeep, as faxbridge's client calls them."""
    return zeep_client.create_service(BINDING, sim.url)


def job_args(**overrides: Any) -> dict[str, Any]:
    """Every SendJob part, unused ones empty, as faxbridge sends them."""
    args: dict[str, Any] = dict(
        Account=ACCOUNT, Password=PASSWORD, JobType=0, Recipient=FAX, RecipientFile=b"", SendText="",
        SendFilename1="letter.pdf", SendFile1=PDF2, SendFilename2="", SendFile2=b"", SendFilename3="",
        SendFile3=b"", SendDateTime=IMMEDIATELY, Options="",
    )
    args.update(overrides)
    return args


def rc(reply: Any) -> int:
    """The result code: zeep returns a bare int for operations whose only part is "return"."""
    return reply if isinstance(reply, int) else int(reply["return"])


def creds(**overrides: Any) -> dict[str, Any]:
    return {"Account": ACCOUNT, "Password": PASSWORD, **overrides}


def soap_post(url: str, operation: str, parts: str, **kwargs: Any) -> requests.Response:
    body = (
        '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
        f'<ns0:{operation} xmlns:ns0="urn:IntfXMLWS-IIntfXMLWS">{parts}</ns0:{operation}>'
        "</soap-env:Body></soap-env:Envelope>"
    )
    return requests.post(url, data=body.encode(), headers={"Content-Type": "text/xml"}, **kwargs)


# ---- SendJob: every result code the simulator produces by itself ----------------------------------------

Setup = Callable[[Simulator], object]


def _send_first(fx: Any) -> None:
    assert fx.SendJob(**job_args())["return"] == 0


SEND_JOB_CASES: list[tuple[str, Setup | None, dict[str, Any], int]] = [
    ("accepted", None, {}, 0),
    ("wrong password", None, {"Password": "nope"}, -1),
    ("unknown account", None, {"Account": "99999"}, -2),
    ("blank account", None, {"Account": "  "}, 2),
    ("locked account", lambda s: setattr(s, "account_state", "locked"), {}, 1),
    ("evaluation expired", lambda s: setattr(s, "account_state", AccountState.EXPIRED), {}, 3),
    ("job type 5", None, {"JobType": 5}, 4),
    ("job type -1", None, {"JobType": -1}, 4),
    ("no text, no files", None, {"SendFilename1": "", "SendFile1": b""}, 75),
    ("sms without text", None, {"JobType": 1}, 75),
    ("letter without file", None, {"JobType": 3, "SendText": "hello", "SendFilename1": "", "SendFile1": b""}, 15),
    ("file name without file", None, {"SendFile1": b""}, -3),
    ("file without name", None, {"SendFilename1": ""}, -6),
    ("docx", None, {"SendFilename1": "letter.docx"}, -6),
    ("no extension", None, {"SendFilename1": "letter"}, -6),
    ("pdf named tif", None, {"SendFilename1": "letter.tif"}, -7),
    ("broken pdf", None, {"SendFile1": b"%PDF-1.4\nnot really"}, -7),
    ("binary html", None, {"SendFilename1": "page.html", "SendFile1": b"<html>\x00\x01"}, -7),
    ("national number", None, {"Recipient": "040123456789"}, 8),
    ("letters as number", None, {"Recipient": "fax me"}, 8),
    ("mail address for fax", None, {"Recipient": "a@example.com"}, 8),
    ("number for mail", None, {"JobType": 2, "Recipient": FAX}, 8),
    ("no recipient", None, {"Recipient": ""}, 8),
    ("premium 0900", None, {"Recipient": "+49900123456"}, 45),
    ("shared cost 0180", None, {"Recipient": "00491801234567"}, 45),
    ("short number", None, {"Recipient": "+49110"}, 45),
    ("premium in a list", None, {"Recipient": f"{FAX},+491371234567"}, 45),
    ("binary recipient file", None, {"Recipient": "", "RecipientFile": b"\x00\x01\x02"}, -65),
    ("qsign to a list", None, {"JobType": 8, "Recipient": f"{FAX},+4940111222333"}, 11),
    ("email not activated", lambda s: s.settings.update({"email_enabled": False}),
     {"JobType": 2, "Recipient": "a@example.com"}, -8),
    ("foreign not activated", lambda s: s.settings.update({"foreign_enabled": False}),
     {"Recipient": "+33123456789"}, -8),
    ("multi not activated", lambda s: s.settings.update({"multi_recipient_enabled": False}),
     {"Recipient": f"{FAX},+4940111222333"}, 1),
    ("blocked number", lambda s: s.set_refusal(FAX, -5), {}, -5),
    ("blacklisted number", lambda s: s.set_refusal("0049 40 123456789", 9), {}, 9),
    ("evaluation, 4 pages", lambda s: setattr(s, "account_state", "evaluation"),
     {"SendFile1": make_pdf(3), "SendText": "cover"}, -1309),
    ("evaluation, 3 pages", lambda s: setattr(s, "account_state", "evaluation"), {"SendFile1": make_pdf(3)}, 0),
]


@pytest.mark.parametrize(("setup", "overrides", "expected"), [c[1:] for c in SEND_JOB_CASES],
                         ids=[c[0] for c in SEND_JOB_CASES])
def test_send_job_result_codes(sim: Simulator, fx: Any, setup: Setup | None, overrides: dict[str, Any],
                               expected: int) -> None:
    if setup:
        setup(sim)
    reply = fx.SendJob(**job_args(**overrides))
    assert reply["return"] == expected
    assert expected in RESULT_CODES["SendJob"]
    if expected != 0:
        assert (reply["JobId"], reply["RecipientsCount"], reply["PageCount"]) == (0, 0, 0)
        assert sim.jobs == []


def test_send_job_duplicate_within_window_only(sim: Simulator, fx: Any, clock: FakeClock) -> None:
    first = fx.SendJob(**job_args())
    assert first["return"] == 0
    clock.advance(59)  # the default duplicate window: a minute
    assert fx.SendJob(**job_args())["return"] == -77
    # Anything different is no duplicate: options, text, a byte of a document, the file name.
    assert fx.SendJob(**job_args(Options="FAXRETRY=3"))["return"] == 0
    assert fx.SendJob(**job_args(SendFile1=make_pdf(2, tag="other")))["return"] == 0
    assert fx.SendJob(**job_args(SendFilename1="other.pdf"))["return"] == 0
    clock.advance(1)
    again = fx.SendJob(**job_args())
    assert again["return"] == 0 and again["JobId"] > first["JobId"]


def test_duplicate_window_is_configurable(sim: Simulator, fx: Any) -> None:
    sim.duplicate_window = 0
    assert fx.SendJob(**job_args())["return"] == 0
    assert fx.SendJob(**job_args())["return"] == 0


def test_accepted_job_ids_increase_and_job_is_recorded(sim: Simulator, fx: Any) -> None:
    ids = [fx.SendJob(**job_args(SendText=str(n)))["JobId"] for n in range(3)]
    assert ids == [881000, 881001, 881002]
    job = sim.job(881001)
    assert (job.job_type, job.text, job.filenames) == (0, "1", ["letter.pdf"])
    assert job.file_sha256 == [hashlib.sha256(PDF2).hexdigest()]
    assert [j.job_id for j in sim.jobs] == ids


# ---- the other operations' result codes ---------------------------------------------------------------------


def _job(sim: Simulator, fx: Any) -> int:
    return int(fx.SendJob(**job_args())["JobId"])


OTHER_CASES: list[tuple[str, str, Setup | None, dict[str, Any], int]] = [
    ("JobStatus", "in progress", None, {}, 6),
    ("JobStatus", "finished", lambda s: s.finish_job(s.jobs[0].job_id), {}, 0),
    ("JobStatus", "unknown customer", None, {"Account": "99999"}, 1),
    ("JobStatus", "blank customer", None, {"Account": ""}, 1),
    ("JobStatus", "wrong password", None, {"Password": "nope"}, 2),
    ("JobStatus", "expired", lambda s: setattr(s, "account_state", "expired"), {}, 3),
    ("JobStatus", "locked", lambda s: setattr(s, "account_state", "locked"), {}, 4),
    ("JobStatus", "unknown job", None, {"JobId": 1}, 5),
    ("CancelJob", "cancelled", None, {}, 0),
    ("CancelJob", "already finished", lambda s: s.finish_job(s.jobs[0].job_id), {}, 1),
    ("CancelJob", "unknown customer", None, {"Account": "99999"}, -1),
    ("CancelJob", "wrong password", None, {"Password": "nope"}, -1),
    ("CancelJob", "unknown job", None, {"JobId": 1}, -2),
    ("CancelJob", "locked", lambda s: setattr(s, "account_state", "locked"), {}, -3),
    ("RequestReceived", "fax returned", lambda s: s.add_inbound(make_tiff(1)), {}, 0),
    ("RequestReceived", "unknown customer", None, {"Account": "99999"}, 1),
    ("RequestReceived", "wrong password", None, {"Password": "nope"}, 2),
    ("RequestReceived", "expired", lambda s: setattr(s, "account_state", "expired"), {}, 3),
    ("RequestReceived", "locked", lambda s: setattr(s, "account_state", "locked"), {}, 4),
    ("RequestReceived", "inbox empty", None, {}, 5),
    ("DeleteReceived", "deleted", None, {}, 0),
    ("DeleteReceived", "unknown customer", None, {"Account": "99999"}, 1),
    ("DeleteReceived", "wrong password", None, {"Password": "nope"}, 2),
    ("DeleteReceived", "expired", lambda s: setattr(s, "account_state", "expired"), {}, 3),
    ("DeleteReceived", "locked", lambda s: setattr(s, "account_state", "locked"), {}, 4),
    ("DeleteReceived", "unknown fax", None, {"FaxId": 42}, 5),
]


@pytest.mark.parametrize(("operation", "setup", "overrides", "expected"), [c[:1] + c[2:] for c in OTHER_CASES],
                         ids=[f"{c[0]}-{c[1]}" for c in OTHER_CASES])
def test_other_operations_result_codes(sim: Simulator, fx: Any, operation: str, setup: Setup | None,
                                       overrides: dict[str, Any], expected: int) -> None:
    args = creds()
    if operation in ("JobStatus", "CancelJob"):
        args["JobId"] = _job(sim, fx)  # created before the account is changed
    if operation == "DeleteReceived":
        args["FaxId"] = sim.add_inbound(make_tiff(1)).fax_id
    if setup:
        setup(sim)
    args.update(overrides)
    assert rc(getattr(fx, operation)(**args)) == expected
    assert expected in RESULT_CODES[operation]


# Codes the simulator never gives by itself (server trouble, billing, QSign internals): only by injection.
INJECTED_ONLY = {
    "SendJob": {-4, -14, -66, 6, 7, 10, 46, 47, 54, 58, 61},
    "JobStatus": set(),
    "CancelJob": set(),
    "RequestReceived": set(),
    "DeleteReceived": set(),
}


def test_every_documented_code_is_produced_naturally_or_by_injection() -> None:
    natural: dict[str, set[int]] = {op: set() for op in RESULT_CODES}
    for case in SEND_JOB_CASES:
        natural["SendJob"].add(case[3])
    natural["SendJob"].add(-77)  # test_send_job_duplicate_within_window_only
    for operation, *_, expected in OTHER_CASES:
        natural[operation].add(expected)
    for operation, codes in RESULT_CODES.items():
        assert natural[operation] | INJECTED_ONLY[operation] == set(codes), operation
        assert not natural[operation] & INJECTED_ONLY[operation]


MINIMAL_ARGS = {
    "SendJob": job_args(),
    "JobStatus": creds(JobId=1),
    "CancelJob": creds(JobId=1),
    "RequestReceived": creds(),
    "DeleteReceived": creds(FaxId=1),
}


@pytest.mark.parametrize(("operation", "code"), [(op, code) for op, codes in RESULT_CODES.items() for code in codes])
def test_result_fault_injects_any_documented_code(sim: Simulator, fx: Any, operation: str, code: int) -> None:
    sim.set_faults(Fault(FaultKind.RESULT, operation=operation, code=code))
    assert rc(getattr(fx, operation)(**MINIMAL_ARGS[operation])) == code
    call = sim.calls[-1]
    assert (call.result, call.fault, call.processed) == (code, "result", False)
    assert sim.jobs == []


# ---- page counting and recipients ---------------------------------------------------------------------------


@pytest.mark.parametrize(("files", "text", "pages"), [
    ([("a.pdf", make_pdf(3))], "", 3),
    ([("a.tif", make_tiff(4))], "", 4),
    ([("a.TIFF", make_tiff(2))], "cover note", 3),
    ([("a.pdf", make_pdf(2)), ("b.tif", make_tiff(3)), ("c.bmp", b"BM" + b"\x00" * 60)], "", 6),
    ([("a.doc", OLE2), ("b.xls", OLE2), ("c.htm", b"<html><body>Hi</body></html>")], "", 3),
    ([], "just a note", 1),
])
def test_fax_page_count(fx: Any, files: list[tuple[str, bytes]], text: str, pages: int) -> None:
    slots: dict[str, Any] = {"SendFilename1": "", "SendFile1": b""}
    for number, (name, data) in enumerate(files, 1):
        slots[f"SendFilename{number}"] = name
        slots[f"SendFile{number}"] = data
    reply = fx.SendJob(**job_args(SendText=text, **slots))
    assert (reply["return"], reply["PageCount"]) == (0, pages)


@pytest.mark.parametrize(("length", "messages"), [(1, 1), (160, 1), (161, 2), (480, 3)])
def test_sms_page_count_is_messages_of_160_chars(fx: Any, length: int, messages: int) -> None:
    reply = fx.SendJob(**job_args(JobType=1, SendText="x" * length, SendFilename1="", SendFile1=b""))
    assert (reply["return"], reply["PageCount"]) == (0, messages)


def test_recipients_from_list_and_file_with_references(sim: Simulator, fx: Any, clock: FakeClock) -> None:
    sim.polls_until_done = 0
    recipient_file = b"+4940111222333,cust-1\r\n0049 40 444555666\r\nnot a number,x\n+4930777888999,\"ref, quoted\"\n"
    reply = fx.SendJob(**job_args(Recipient=f"{FAX}[A-7], +4989123456789", RecipientFile=recipient_file))
    assert (reply["return"], reply["RecipientsCount"]) == (0, 5)
    status = fx.JobStatus(**creds(JobId=reply["JobId"]))
    rows = status["StatusFile"].decode().split("\r\n")[1:-1]
    assert [row.split('","')[0].strip('"') for row in rows] == [
        FAX, "+4989123456789", "+4940111222333", "+4940444555666", "+4930777888999"]
    assert [row.rsplit(",", 1)[-1] for row in rows][:4] == ['"A-7"', '""', '"cust-1"', '""']
    assert rows[4].endswith('"ref, quoted"')


def test_email_and_letter_recipients(fx: Any) -> None:
    mail = fx.SendJob(**job_args(JobType=2, Recipient="a@example.com,b@example.org[7], nonsense"))
    assert (mail["return"], mail["RecipientsCount"]) == (0, 2)
    letter = fx.SendJob(**job_args(JobType=4, Recipient=""))
    assert (letter["return"], letter["RecipientsCount"], letter["PageCount"]) == (0, 1, 2)


@pytest.mark.parametrize(("text", "verdict"), [
    ("+49 40 123456-789", Verdict.VALID),
    ("0049 (40) 123456789", Verdict.VALID),
    ("+1 212 555 0100", Verdict.VALID),
    ("040 123456", Verdict.INVALID),
    ("+49 40 1234567890123456", Verdict.INVALID),
    ("+0 123456789", Verdict.INVALID),
    ("", Verdict.INVALID),
    ("+49 900 1234567", Verdict.PREMIUM),
    ("+49 137 1234567", Verdict.PREMIUM),
    ("+49 180 5123456", Verdict.PREMIUM),
    ("+49 190 123456", Verdict.PREMIUM),
    ("+49 118 80", Verdict.PREMIUM),
    ("+49112", Verdict.PREMIUM),
])
def test_judge_number(text: str, verdict: Verdict) -> None:
    assert judge_number(text) is verdict


@pytest.mark.parametrize(("text", "verdict"), [
    ("a@example.com", Verdict.VALID), ("  first.last+tag@sub.example.de ", Verdict.VALID),
    ("a@example", Verdict.INVALID), ("a b@example.com", Verdict.INVALID), ("@example.com", Verdict.INVALID),
    ("a@@example.com", Verdict.INVALID),
])
def test_judge_address(text: str, verdict: Verdict) -> None:
    assert judge_address(text) is verdict


def test_recipient_file_in_windows_encoding() -> None:
    entries = parse_recipient_file("+4940111222333,Müller\r\n".encode("cp1252"))
    assert [(e.address, e.reference) for e in entries] == [("+4940111222333", "Müller")]


# ---- documents and samples ----------------------------------------------------------------------------------


def _tiff_chain(order: str, first: int, links: dict[int, int], size: int = 64) -> bytes:
    """A big- or little-endian TIFF skeleton: empty IFDs at the keys of ``links``, each pointing to its value."""
    mark = b"II" if order == "<" else b"MM"
    data = bytearray(mark + struct.pack(order + "HI", 42, first) + b"\x00" * (size - 8))
    for here, following in links.items():
        struct.pack_into(order + "HI", data, here, 0, following)
    return bytes(data)


def test_tiff_page_count_walks_the_ifd_chain() -> None:
    assert tiff_page_count(_tiff_chain(">", 8, {8: 20, 20: 40, 40: 0})) == 3
    assert tiff_page_count(_tiff_chain("<", 30, {30: 0})) == 1
    broken = [
        _tiff_chain("<", 8, {8: 20, 20: 8}),  # loops
        _tiff_chain("<", 8, {8: 200}),  # points outside the file
        _tiff_chain("<", 0, {}),  # no image at all
        b"II*\x00",  # header truncated
        b"XX*\x00\x08\x00\x00\x00",  # no byte order mark
        b"II\x2b\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00",  # BigTIFF, IFD beyond the end
    ]
    for data in broken:
        with pytest.raises(ValueError):
            tiff_page_count(data)


def test_count_pages_refusals() -> None:
    with pytest.raises(DocumentProblem) as unsupported:
        count_pages("a.png", b"\x89PNG")
    assert unsupported.value.kind == "unsupported"
    for name, data in [("a.bmp", b"XX"), ("a.doc", b"%PDF-"), ("a.html", b"%PDF-1.4"), ("a.tif", b"II*\x00\xff\xff\xff\xff")]:
        with pytest.raises(DocumentProblem) as conversion:
            count_pages(name, data)
        assert conversion.value.kind == "conversion"


def test_samples_are_valid_deterministic_documents() -> None:
    assert make_tiff(3) == make_tiff(3) != make_tiff(3, tag="other")
    assert make_pdf(2) == make_pdf(2) != make_pdf(2, tag="other")
    assert tiff_page_count(make_tiff(5)) == 5
    assert count_pages("x.pdf", make_pdf(4)) == 4
    image = pytest.importorskip("PIL.Image")
    import io

    with image.open(io.BytesIO(make_tiff(3))) as tiff:
        assert (tiff.n_frames, tiff.size) == (3, (64, 32))
        tiff.seek(2)
        tiff.load()


# ---- JobStatus: progression, StatusFile, multi, cancel ------------------------------------------------------


def test_status_file_format_exactly_as_the_spec_shows(sim: Simulator, fx: Any) -> None:
    job_id = fx.SendJob(**job_args())["JobId"]
    assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6
    status = fx.JobStatus(**creds(JobId=job_id))
    assert status["return"] == 0
    assert status["SendResult"] == "OK"
    assert status["RemoteId"] == FAX
    assert status["SendDateTime"] == START
    assert status["StatusFile"] == (
        b'"RECIPIENT","JOBTYPE","RESULT","REMOTEID","PAGES","SENDDATETIME","DURATION","REFID"\r\n'
        b'"+4940123456789","FAX","OK","+4940123456789","2","2017-06-01 15:53:06","19",""\r\n'
    )


def test_multi_recipient_results_per_number(sim: Simulator, fx: Any, clock: FakeClock) -> None:
    sim.polls_until_done = 0
    job_id = fx.SendJob(**job_args(Recipient=f"{FAX},+4940111222333[x],+4940999888777"))["JobId"]
    sim.set_result("+49 40 111222333", "Busy")  # may be set after SendJob: decided when the job finishes
    sim.set_result("+4940999888777", "OK", remote_id="ACME Corp")
    clock.advance(60)
    status = fx.JobStatus(**creds(JobId=job_id))
    assert (status["return"], status["SendResult"], status["RemoteId"]) == (0, "multi", None)
    assert status["SendDateTime"] == START + dt.timedelta(seconds=60)
    lines = status["StatusFile"].decode().split("\r\n")
    assert lines[1:] == [
        '"+4940123456789","FAX","OK","+4940123456789","2","2017-06-01 15:54:06","19",""',
        '"+4940111222333","FAX","Busy","","0","2017-06-01 15:54:06","0","x"',
        '"+4940999888777","FAX","OK","ACME Corp","2","2017-06-01 15:54:06","19",""',
        "",
    ]


@pytest.mark.parametrize("result", ["Busy", "No Answer", "Voice", "No Service", "Send-Fail", "Call failed", "Black-List"])
def test_single_fax_failure_results(sim: Simulator, fx: Any, result: str) -> None:
    sim.polls_until_done = 0
    sim.set_result(FAX, result)
    status = fx.JobStatus(**creds(JobId=_job(sim, fx)))
    assert (status["return"], status["SendResult"]) == (0, result)
    assert f'"{result}"'.encode() in status["StatusFile"]


@pytest.mark.parametrize(("job_type", "word", "recipient"), [
    (1, "SMS", FAX), (2, "mail", "a@example.com"), (3, "letter", ""), (4, "letter", ""), (8, "QSign", ""),
])
def test_status_file_job_type_words_and_non_fax_results(sim: Simulator, fx: Any, job_type: int, word: str,
                                                         recipient: str) -> None:
    sim.polls_until_done = 0
    sim.set_result(FAX, "Busy")  # only fax jobs have detailed results
    job_id = fx.SendJob(**job_args(JobType=job_type, Recipient=recipient, SendText="hi"))["JobId"]
    status = fx.JobStatus(**creds(JobId=job_id))
    assert status["SendResult"] == "OK" and status["RemoteId"] is None
    assert status["StatusFile"].split(b"\r\n")[1].split(b",")[1:4] == [f'"{word}"'.encode(), b'"OK"', b'""']


def test_job_progression_counts_polls(sim: Simulator, fx: Any) -> None:
    sim.polls_until_done = 3
    job_id = _job(sim, fx)
    sim.polls_until_done = 0  # taken when the job was created: no effect on it
    assert [fx.JobStatus(**creds(JobId=job_id))["return"] for _ in range(5)] == [6, 6, 6, 0, 0]
    assert sim.job(job_id).phase == "done"


def test_scheduled_job_stays_in_progress_until_its_time(sim: Simulator, fx: Any, clock: FakeClock) -> None:
    sim.polls_until_done = 0
    job_id = fx.SendJob(**job_args(SendDateTime=START + dt.timedelta(hours=1)))["JobId"]
    assert sim.job(job_id).send_at == START + dt.timedelta(hours=1)
    assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6
    clock.advance(3599)
    assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6
    assert rc(fx.CancelJob(**creds(JobId=job_id))) == 0  # still cancellable
    assert fx.JobStatus(**creds(JobId=job_id))["SendResult"] == "Cancelled"


def test_cancel_then_status_reports_cancelled(sim: Simulator, fx: Any) -> None:
    job_id = fx.SendJob(**job_args(Recipient=f"{FAX},+4940111222333"))["JobId"]
    assert rc(fx.CancelJob(**creds(JobId=job_id))) == 0
    assert rc(fx.CancelJob(**creds(JobId=job_id))) == 1
    status = fx.JobStatus(**creds(JobId=job_id))
    assert (status["return"], status["SendResult"]) == (0, "multi")
    rows = status["StatusFile"].decode().split("\r\n")[1:-1]
    assert all('"Cancelled"' in row and ',"0",' in row for row in rows)
    assert sim.job(job_id).phase == "cancelled"


def test_cancel_after_finish_is_too_late(sim: Simulator, fx: Any) -> None:
    job_id = _job(sim, fx)
    assert [fx.JobStatus(**creds(JobId=job_id))["return"] for _ in range(2)] == [6, 0]
    assert rc(fx.CancelJob(**creds(JobId=job_id))) == 1
    assert fx.JobStatus(**creds(JobId=job_id))["SendResult"] == "OK"


def test_finish_job_from_python(sim: Simulator, fx: Any, clock: FakeClock) -> None:
    sim.polls_until_done = 5
    job_id = fx.SendJob(**job_args(SendDateTime=START + dt.timedelta(days=1)))["JobId"]
    sim.set_result(FAX, "No Answer")
    assert sim.finish_job(job_id).recipients[0].result == "No Answer"
    assert fx.JobStatus(**creds(JobId=job_id))["SendResult"] == "No Answer"
    assert rc(fx.CancelJob(**creds(JobId=job_id))) == 1
    with pytest.raises(KeyError):
        sim.finish_job(1)


# ---- inbox --------------------------------------------------------------------------------------------------


def test_inbox_returns_oldest_until_deleted(sim: Simulator, fx: Any) -> None:
    late = sim.add_inbound(make_tiff(1, tag="late"), originator="+4930111", received_at=START + dt.timedelta(minutes=5))
    early = sim.add_inbound(make_tiff(3, tag="early"), called_number="+4930999", originator="+4930222",
                            remote_id="ACME FAX", received_at=START)
    assert late.fax_id < early.fax_id and late.fax_id > 2**31  # FaxId is an xsd:long
    first = fx.RequestReceived(**creds())
    assert (first["return"], first["FaxId"], first["Pages"]) == (0, early.fax_id, 3)
    assert (first["CalledNumber"], first["Originator"], first["RemoteId"]) == ("+4930999", "+4930222", "ACME FAX")
    assert first["ReceiveDate"] == START and first["FaxImage"] == make_tiff(3, tag="early")
    assert fx.RequestReceived(**creds())["FaxId"] == early.fax_id  # again, until deleted
    assert rc(fx.DeleteReceived(**creds(FaxId=early.fax_id))) == 0
    assert rc(fx.DeleteReceived(**creds(FaxId=early.fax_id))) == 5
    second = fx.RequestReceived(**creds())
    assert (second["FaxId"], second["CalledNumber"], second["Pages"]) == (late.fax_id, "+4930555000", 1)
    assert rc(fx.DeleteReceived(**creds(FaxId=late.fax_id))) == 0
    empty = fx.RequestReceived(**creds())
    assert (empty["return"], empty["FaxId"], empty["FaxImage"], empty["ReceiveDate"]) == (5, 0, None, None)
    assert sim.inbox == []


def test_add_inbound_counts_pages_or_trusts_the_caller(sim: Simulator) -> None:
    assert sim.add_inbound(make_tiff(4)).pages == 4
    assert sim.add_inbound(b"not a tiff", pages=2).pages == 2
    with pytest.raises(ValueError):
        sim.add_inbound(b"not a tiff")


def test_inbox_via_admin_post(sim: Simulator) -> None:
    image = make_tiff(2)
    reply = requests.post(f"{sim.base_url}/admin/inbox?originator=%2B4930111&received_at=2017-06-01T10:00:00Z",
                          data=image, headers={"X-Remote-Id": "Remote GmbH", "X-Called-Number": "+4930123"})
    assert reply.status_code == 200
    assert reply.json()["pages"] == 2 and reply.json()["sha256"] == hashlib.sha256(image).hexdigest()
    [fax] = sim.inbox
    assert (fax.originator, fax.remote_id, fax.called_number, fax.image) == ("+4930111", "Remote GmbH", "+4930123", image)
    assert fax.received_at == dt.datetime(2017, 6, 1, 10, tzinfo=dt.timezone.utc)
    assert requests.post(f"{sim.base_url}/admin/inbox", data=b"junk").status_code == 400
    assert [f["fax_id"] for f in requests.get(f"{sim.base_url}/admin/inbox").json()] == [fax.fax_id]


def test_inbox_folder_is_picked_up(tmp_path: Path, zeep_client: zeep.Client, clock: FakeClock) -> None:
    with Simulator(state_dir=tmp_path, clock=clock) as sim:
        fx = zeep_client.create_service(BINDING, sim.url)
        folder = tmp_path / "inbox"
        assert folder.is_dir()  # created for users to drop faxes into
        (folder / "a.tif").write_bytes(make_tiff(1, tag="a"))
        (folder / "a.json").write_text("{broken")  # ignored, not blocking the inbox
        os.utime(folder / "a.tif", (0, 0))  # the oldest file comes first
        (folder / "b.json").write_text(json.dumps({"originator": "+4930111", "remote_id": "ID B",
                                                   "received_at": "2017-06-01T16:00:00"}))
        (folder / "b.tif.part").write_bytes(make_tiff(2))
        (folder / "b.tif.part").rename(folder / "b.tif")
        (folder / "half.tif").write_bytes(b"II*\x00")  # still being written: left alone
        first = fx.RequestReceived(**creds())
        assert (first["FaxImage"], first["Originator"], first["ReceiveDate"]) == (make_tiff(1, tag="a"), None, START)
        assert rc(fx.DeleteReceived(**creds(FaxId=first["FaxId"]))) == 0
        reply = fx.RequestReceived(**creds())
        assert (reply["return"], reply["Pages"], reply["Originator"], reply["RemoteId"]) == (0, 2, "+4930111", "ID B")
        assert reply["FaxImage"] == make_tiff(2)
        assert reply["ReceiveDate"] == dt.datetime(2017, 6, 1, 16, tzinfo=dt.timezone.utc)
        assert sorted(p.name for p in folder.iterdir()) == ["half.tif"]


# ---- faults -------------------------------------------------------------------------------------------------


def test_http_500_fault(sim: Simulator, fx: Any) -> None:
    sim.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob"))
    with pytest.raises(zeep.exceptions.TransportError) as error:
        fx.SendJob(**job_args())
    assert error.value.status_code == 500
    assert fx.RequestReceived(**creds())["return"] == 5  # other operations unaffected
    assert sim.jobs == []
    call = sim.calls_for("SendJob")[0]
    assert (call.http_status, call.fault, call.processed, call.result) == (500, "http_500", False, None)


def test_soap_fault(sim: Simulator, fx: Any) -> None:
    sim.set_faults(Fault(FaultKind.SOAP_FAULT, message="Access violation at address 0040A1B2"))
    with pytest.raises(zeep.exceptions.Fault) as fault:
        fx.JobStatus(**creds(JobId=1))
    assert fault.value.message == "Access violation at address 0040A1B2"
    assert fault.value.code == "SOAP-ENV:Server"
    raw = soap_post(sim.url, "RequestReceived", f"<Account>{ACCOUNT}</Account><Password>{PASSWORD}</Password>")
    assert raw.status_code == 500 and b"<faultstring>Access violation" in raw.content


def test_drop_before_processing_creates_nothing(sim: Simulator, fx: Any) -> None:
    sim.set_faults(Fault(FaultKind.DROP_BEFORE, operation="SendJob", calls=frozenset({1})))
    with pytest.raises(requests.ConnectionError):
        fx.SendJob(**job_args())
    assert sim.jobs == []
    call = sim.calls[0]
    assert (call.http_status, call.fault, call.processed, call.result) == (None, "drop_before", False, None)
    assert fx.SendJob(**job_args())["return"] == 0  # the resend is the first real one


def test_drop_after_processing_leaves_the_job_and_resend_is_duplicate(sim: Simulator, fx: Any) -> None:
    sim.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))
    with pytest.raises(requests.ConnectionError):
        fx.SendJob(**job_args())
    [job] = sim.jobs
    call = sim.calls[0]
    assert (call.http_status, call.fault, call.processed, call.result) == (None, "drop_after", True, 0)
    assert call.outs["JobId"] == job.job_id
    assert fx.SendJob(**job_args())["return"] == -77


def test_delay_answers_late_after_processing(sim: Simulator, fx: Any) -> None:
    sim.set_faults(Fault(FaultKind.DELAY, operation="SendJob", seconds=30))
    # A client that gives up first sees a read timeout, though the job exists: outcome unknown.
    with pytest.raises(requests.ReadTimeout):
        requests.post(sim.url, data=_raw_sendjob(), headers={"Content-Type": "text/xml"}, timeout=0.2)
    assert len(sim.jobs) == 1
    sim.set_faults(Fault(FaultKind.DELAY, seconds=0.05))
    before = dt.datetime.now(dt.timezone.utc)
    assert fx.RequestReceived(**creds())["return"] == 5
    assert dt.datetime.now(dt.timezone.utc) - before >= dt.timedelta(seconds=0.05)
    assert sim.calls[-1].fault == "delay"


def _raw_sendjob() -> bytes:
    pdf = base64.b64encode(PDF2).decode()
    return (
        '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
        '<ns0:SendJob xmlns:ns0="urn:IntfXMLWS-IIntfXMLWS">'
        f"<Account>{ACCOUNT}</Account><Password>{PASSWORD}</Password><JobType>0</JobType>"
        f"<Recipient>{FAX}</Recipient><RecipientFile></RecipientFile><SendText></SendText>"
        f"<SendFilename1>a.pdf</SendFilename1><SendFile1>{pdf}</SendFile1><SendFilename2></SendFilename2>"
        "<SendFile2></SendFile2><SendFilename3></SendFilename3><SendFile3></SendFile3>"
        "<SendDateTime>2000-01-01T00:00:00Z</SendDateTime><Options></Options>"
        "</ns0:SendJob></soap-env:Body></soap-env:Envelope>"
    ).encode()


def test_fault_call_numbers_count_per_operation_or_overall(sim: Simulator, fx: Any) -> None:
    sim.set_faults(
        Fault(FaultKind.RESULT, operation="JobStatus", calls=frozenset({2}), code=4),
        Fault(FaultKind.RESULT, calls=frozenset({5}), code=1),
    )
    results = [fx.JobStatus(**creds(JobId=1))["return"] for _ in range(3)]
    results += [fx.RequestReceived(**creds())["return"] for _ in range(3)]
    assert results == [5, 4, 5, 5, 1, 5]


def test_fault_rate_is_repeatable_with_a_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan()
        plan.replace([Fault(FaultKind.HTTP_500, rate=0.3)], seed=seed)
        return [plan.decide("SendJob").fault is not None for _ in range(200)]

    assert pattern(7) == pattern(7) != pattern(8)
    assert 30 < sum(pattern(7)) < 90


def test_faults_and_reset_over_admin_http(sim: Simulator, fx: Any) -> None:
    rules: Any = {"seed": 3, "faults": [{"kind": "drop_before", "operation": "RequestReceived", "calls": [1]},
                                   {"kind": "delay", "seconds": 0.01}]}
    reply = requests.post(f"{sim.base_url}/admin/faults", json=rules)
    assert reply.status_code == 200 and reply.json()["faults"][0]["kind"] == "drop_before"
    assert requests.get(f"{sim.base_url}/admin/faults").json()["seed"] == 3
    with pytest.raises(requests.ConnectionError):
        fx.RequestReceived(**creds())
    assert requests.post(f"{sim.base_url}/admin/faults", json=[{"kind": "nonsense"}]).status_code == 400
    assert requests.post(f"{sim.base_url}/admin/faults", json=[{"kind": "delay", "bogus": 1}]).status_code == 400
    assert requests.post(f"{sim.base_url}/admin/reset").json() == {"reset": True}
    assert sim.plan.rules == [] and sim.calls == []
    assert fx.RequestReceived(**creds())["return"] == 5


def test_reset_with_state_forgets_jobs_but_not_ids(sim: Simulator, fx: Any) -> None:
    first = _job(sim, fx)
    sim.add_inbound(make_tiff(1))
    assert requests.post(f"{sim.base_url}/admin/reset?state=1").status_code == 200
    assert sim.jobs == [] and sim.inbox == []
    assert _job(sim, fx) == first + 1  # ids are never reused; the duplicate memory went with the jobs


# ---- record -------------------------------------------------------------------------------------------------


def test_record_keeps_exact_bytes_and_hides_the_password(sim: Simulator, fx: Any) -> None:
    big = make_tiff(2, width=1024, height=64)
    recipient_file = b"+4940111222333,r1\n+4940444555666\n"
    fx.SendJob(**job_args(Recipient="", RecipientFile=recipient_file, SendFilename2="b.tif", SendFile2=big,
                          Options="FAXRETRY=3;STATIONID=ACME"))
    [call] = sim.calls_for("SendJob")
    params = call.params
    assert params["SendFile1"] == PDF2 and params["SendFile2"] == big and params["RecipientFile"] == recipient_file
    assert params["SendFile3"] == b"" and params["SendDateTime"] == IMMEDIATELY and params["JobType"] == 0
    assert params["Options"] == "FAXRETRY=3;STATIONID=ACME"
    assert params["Password"] == PASSWORD and params["Password"].reveal() == PASSWORD
    assert PASSWORD not in repr(params) and PASSWORD not in f"{params['Password']}" and str(params["Password"]) == "***"
    assert (call.result, call.http_status, call.processed, call.fault) == (0, 200, True, None)
    assert call.outs == {"JobId": 881000, "RecipientsCount": 2, "PageCount": 4}
    assert call.started_at <= call.finished_at

    [shown] = requests.get(f"{sim.base_url}/admin/calls?operation=SendJob").json()
    assert shown["params"]["Password"] == "***"
    assert shown["params"]["SendFile1"] == {"sha256": hashlib.sha256(PDF2).hexdigest(), "size": len(PDF2),
                                            "base64": base64.b64encode(PDF2).decode()}
    assert len(big) > JSON_INLINE_BYTES and "base64" not in shown["params"]["SendFile2"]
    assert shown["params"]["SendFile2"]["size"] == len(big)
    assert PASSWORD not in requests.get(f"{sim.base_url}/admin/calls").text
    assert requests.get(f"{sim.base_url}/admin/calls?operation=JobStatus").json() == []


def test_record_limit_keeps_the_latest_calls(clock: FakeClock, zeep_client: zeep.Client) -> None:
    with Simulator(clock=clock, record_limit=2) as sim:
        fx = zeep_client.create_service(BINDING, sim.url)
        for _ in range(3):
            fx.RequestReceived(**creds())
        assert [c.seq for c in sim.calls] == [2, 3]
        sim.clear_calls()
        fx.RequestReceived(**creds())
        assert [c.seq for c in sim.calls] == [4]


def test_unreadable_requests_get_a_soap_fault(sim: Simulator) -> None:
    for body in (b"not xml", b"<a/>", b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>'):
        reply = requests.post(sim.url, data=body)
        assert reply.status_code == 500 and b"<faultcode>SOAP-ENV:Client</faultcode>" in reply.content
    unknown = soap_post(sim.url, "SendFax", "<Account>1</Account>")
    assert unknown.status_code == 500 and b"No method named 'SendFax'" in unknown.content
    bad_int = soap_post(sim.url, "JobStatus", "<Account>1</Account><Password>p</Password><JobId>abc</JobId>")
    assert bad_int.status_code == 500 and b"not a valid integer" in bad_int.content
    assert [c.fault for c in sim.calls] == ["bad_request"] * 5


def test_encoded_request_forms_are_tolerated(sim: Simulator) -> None:
    """xsi:type annotations, other prefixes, xsi:nil, href references, missing parts, any POST path."""
    parts = (
        f'<Account xsi:type="xsd:string">{ACCOUNT}</Account><Password href="#p"/>'
        '<JobId xsi:nil="true"/>'
    )
    envelope = (
        '<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<S:Body><m:JobStatus xmlns:m="urn:IntfXMLWS-IIntfXMLWS">{parts}</m:JobStatus>'
        f'<v id="p" xsi:type="xsd:string">{PASSWORD}</v></S:Body></S:Envelope>'
    )
    reply = requests.post(sim.base_url + "/xmlws.exe/soap/IIntfXMLWS", data=envelope.encode())
    assert reply.status_code == 200
    assert b'<return xsi:type="xsd:int">5</return>' in reply.content  # authenticated; no such job
    assert b'<SendDateTime xsi:nil="true"/>' in reply.content


def test_response_is_delphi_shaped(sim: Simulator) -> None:
    reply = requests.post(sim.url, data=_raw_sendjob(), headers={"Content-Type": "text/xml"})
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert (
        '<SOAP-ENV:Body SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        '<NS1:SendJobResponse xmlns:NS1="urn:IntfXMLWS-IIntfXMLWS">'
        '<JobId xsi:type="xsd:int">881000</JobId><RecipientsCount xsi:type="xsd:int">1</RecipientsCount>'
        '<PageCount xsi:type="xsd:int">2</PageCount><return xsi:type="xsd:int">0</return>'
        "</NS1:SendJobResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ) in reply.text
    sim.add_inbound(make_tiff(1))
    inbox = soap_post(sim.url, "RequestReceived", f"<Account>{ACCOUNT}</Account><Password>{PASSWORD}</Password>")
    assert '<FaxId xsi:type="xsd:long">3000000001</FaxId>' in inbox.text
    assert '<ReceiveDate xsi:type="xsd:dateTime">2017-06-01T15:53:06.000Z</ReceiveDate>' in inbox.text


# ---- WSDL, HTTP, lifecycle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/wsdl", "/xmlws.exe?wsdl/IntfXMLWS", "/anything?WSDL"])
def test_wsdl_is_served_with_own_address(sim: Simulator, path: str) -> None:
    reply = requests.get(sim.base_url + path)
    assert reply.status_code == 200
    original = Path(WSDL_PATH).read_text("utf-8")
    expected = original.replace("https://ccs.fax.de/xmlws.exe/soap/IIntfXMLWS", sim.url)
    assert reply.text == expected != original


def test_zeep_can_use_the_served_wsdl_directly(sim: Simulator) -> None:
    client = zeep.Client(sim.wsdl_url)
    try:
        assert client.service.RequestReceived(**creds())["return"] == 5
    finally:
        client.transport.session.close()


def test_keep_alive_serves_many_requests_on_one_connection(sim: Simulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        connection.request("GET", "/wsdl")
        connection.getresponse().read()
        first_socket = connection.sock
        for _ in range(3):
            connection.request("POST", "/soap/IIntfXMLWS", body=_raw_sendjob(), headers={"Content-Type": "text/xml"})
            response = connection.getresponse()
            assert (response.status, response.getheader("Connection")) == (200, None)
            response.read()
            assert connection.sock is first_socket
    finally:
        connection.close()


def test_stop_cuts_kept_alive_connections(sim: Simulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        connection.request("GET", "/")
        assert b"FAX.de simulator" in connection.getresponse().read()
        sim.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            connection.request("GET", "/")
            connection.getresponse()
    finally:
        connection.close()
    assert not sim.running


def test_admin_views_and_settings(sim: Simulator, fx: Any) -> None:
    job_id = _job(sim, fx)
    [job] = requests.get(f"{sim.base_url}/admin/jobs").json()
    assert (job["job_id"], job["phase"], job["recipients"][0]["address"]) == (job_id, "pending", FAX)
    reply = requests.post(f"{sim.base_url}/admin/settings", json={"polls_until_done": 0, "account_state": "locked"})
    assert reply.status_code == 200 and "password" not in reply.json()
    assert sim.account_state is AccountState.LOCKED and sim.polls_until_done == 0
    for bad in ({"polls_until_done": "3"}, {"no_such": 1}, {"account_state": "frozen"}, {"email_enabled": 1}):
        assert requests.post(f"{sim.base_url}/admin/settings", json=bad).status_code == 400
    assert requests.post(f"{sim.base_url}/admin/settings", data=b"{").status_code == 400
    sim.account_state = "active"
    requests.post(f"{sim.base_url}/admin/results", json={FAX: {"result": "Voice", "remote_id": ""}})
    assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6  # polls_until_done was 1 when it was sent
    assert fx.JobStatus(**creds(JobId=job_id))["SendResult"] == "Voice"
    assert requests.get(f"{sim.base_url}/admin/nothing").status_code == 404
    assert requests.post(f"{sim.base_url}/admin/nothing").status_code == 404


def test_fifty_megabyte_document(sim: Simulator, fx: Any) -> None:
    big = make_tiff(1, width=8192, height=50_000)  # 51 MB, one page
    reply = fx.SendJob(**job_args(SendFilename1="scan.tif", SendFile1=big))
    assert (reply["return"], reply["PageCount"]) == (0, 1)
    assert sim.calls[0].params["SendFile1"] == big


def test_concurrent_sends_get_distinct_ids(sim: Simulator, zeep_client: zeep.Client) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        client = zeep.Client(WSDL_PATH)
        try:
            reply = client.create_service(BINDING, sim.url).SendJob(**job_args(SendText=f"note {n}"))
            with lock:
                results.append(reply["JobId"])
        finally:
            client.transport.session.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(881000, 881006))


def test_state_survives_a_restart(tmp_path: Path, zeep_client: zeep.Client, clock: FakeClock) -> None:
    first = Simulator(state_dir=tmp_path, clock=clock).start()
    try:
        fx = zeep_client.create_service(BINDING, first.url)
        job_id = fx.SendJob(**job_args())["JobId"]
        assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6  # the one poll is remembered
        fax = first.add_inbound(make_tiff(2), originator="+4930111")
    finally:
        first.stop()
    with Simulator(state_dir=tmp_path, port=first.port, clock=clock) as second:
        assert second.url == first.url
        assert fx.JobStatus(**creds(JobId=job_id))["return"] == 0  # same zeep service, new server
        assert fx.SendJob(**job_args())["return"] == -77
        assert fx.SendJob(**job_args(SendText="new"))["JobId"] == job_id + 1
        received = fx.RequestReceived(**creds())
        assert (received["FaxId"], received["FaxImage"], received["Originator"]) == (fax.fax_id, fax.image, "+4930111")
        assert rc(fx.DeleteReceived(**creds(FaxId=fax.fax_id))) == 0
    with Simulator(state_dir=tmp_path, clock=clock) as third:
        assert third.inbox == [] and len(third.jobs) == 2
        assert third.add_inbound(make_tiff(1)).fax_id == fax.fax_id + 1


def test_restart_of_the_same_object_keeps_port_and_record(sim: Simulator, fx: Any) -> None:
    port = sim.port
    job_id = _job(sim, fx)
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        fx.JobStatus(**creds(JobId=job_id))
    sim.start()
    assert sim.port == port
    assert fx.JobStatus(**creds(JobId=job_id))["return"] == 6  # the call that failed never arrived
    assert [c.operation for c in sim.calls] == ["SendJob", "JobStatus"]


def test_command_line_serves_until_sigterm(tmp_path: Path, zeep_client: zeep.Client) -> None:
    env = {**os.environ, "FAXBRIDGE_SIM_PASSWORD": "from-env"}
    process = subprocess.Popen(
        [sys.executable, "-m", "faxbridge.simulator", "--port", "0", "--account", "777", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        url = lines[1].split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/soap/IIntfXMLWS")
        fx = zeep_client.create_service(BINDING, url)
        assert fx.RequestReceived(Account="777", Password="from-env")["return"] == 5
        assert fx.RequestReceived(Account="777", Password="secret")["return"] == 2
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "stopped" in output and "from-env" not in "".join(lines) + output
