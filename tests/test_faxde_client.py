"""The FAX.de client against the simulator over real HTTP: every operation, every result code."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import socket
import urllib.request
from pathlib import Path

import pytest
import zeep
from lxml import etree

from faxbridge.faxde import codes as faxde_codes
from faxbridge.faxde.client import (
    BINDING,
    SEND_IMMEDIATELY,
    FaxDeClient,
    _SplicedBody,
    bundled_wsdl,
    resolve_wsdl,
)
from faxbridge.faxde.codes import Outcome
from faxbridge.errors import ProviderError
from faxbridge.model import Document, JobType, Recipient, SendRequest
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import ACCOUNT, PASSWORD, wait_until


def client_for(sim: Simulator, tmp_path: Path, **kwargs) -> FaxDeClient:
    options = dict(account=ACCOUNT, password=PASSWORD, wsdl=sim.wsdl_url, timeout=5.0,
                   connect_timeout=2.0, cache_dir=tmp_path / "wsdl-cache")
    options.update(kwargs)
    return FaxDeClient(**options)


@pytest.fixture
def client(simulator: Simulator, tmp_path: Path):
    c = client_for(simulator, tmp_path)
    yield c
    close(c)


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "Rechnung Nr. 42 – Müller.pdf"
    path.write_bytes(make_pdf(3))
    return path


@pytest.fixture
def on():
    """``on(client, "job_status", 42)``: one operation from its own event loop, as a command of the
    CLI makes it; the client's connections are closed on that loop afterwards, as the daemon does."""

    async def call(client: FaxDeClient, method: str, *args):
        try:
            return await getattr(client, method)(*args)
        finally:
            await client.close()

    return lambda client, method, *args: asyncio.run(call(client, method, *args))


def close(client: FaxDeClient) -> None:
    asyncio.run(client.close())


def fax(pdf: Path, *numbers: str, **kwargs) -> SendRequest:
    return SendRequest(
        job_type=kwargs.pop("job_type", JobType.FAX),
        recipients=tuple(Recipient(n) for n in (numbers or ("+494012345678",))),
        documents=(Document(pdf.name, pdf),),
        **kwargs,
    )


# -- WSDL -----------------------------------------------------------------------------------


def test_the_endpoint_comes_from_the_fetched_wsdl_and_is_cached(simulator, tmp_path) -> None:
    client = client_for(simulator, tmp_path)
    assert client.endpoint == simulator.url
    assert client.wsdl_source.startswith("fetched")
    [copy] = (tmp_path / "wsdl-cache").glob("IntfXMLWS-*.wsdl")
    with urllib.request.urlopen(simulator.wsdl_url, timeout=5) as served:
        assert copy.read_bytes() == served.read()
    close(client)


def test_a_start_reads_the_cached_wsdl_and_refreshes_it_in_the_background(simulator, tmp_path) -> None:
    close(client_for(simulator, tmp_path))  # fills the cache
    [copy] = (tmp_path / "wsdl-cache").glob("IntfXMLWS-*.wsdl")
    fresh = copy.read_bytes()
    copy.write_bytes(fresh.replace(b"<definitions", b"<!-- an older copy --><definitions", 1))
    before = len(simulator.calls)
    client = client_for(simulator, tmp_path)
    assert client.wsdl_source == "cached copy" and client.endpoint == simulator.url
    wait_until(lambda: copy.read_bytes() == fresh, what="the cached WSDL refreshed")
    assert len(simulator.calls) == before  # fetching the WSDL is no SOAP call
    close(client)


def test_the_cached_wsdl_belongs_to_its_url(simulator, tmp_path) -> None:
    # Switching faxde.wsdl from a test service to production must not keep using the test
    # service's WSDL (its endpoint address) from the cache.
    close(client_for(simulator, tmp_path))
    other = Simulator().start()
    try:
        client = client_for(other, tmp_path)
        assert client.wsdl_source.startswith("fetched") and client.endpoint == other.url
        close(client)
    finally:
        other.stop()
    assert len(list((tmp_path / "wsdl-cache").glob("IntfXMLWS-*.wsdl"))) == 2


def test_an_unreachable_wsdl_falls_back_to_the_cache_then_the_bundled_copy(simulator, tmp_path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/wsdl"
    bundled = client_for(simulator, tmp_path, wsdl=dead, endpoint=simulator.url)
    assert bundled.wsdl_source == "bundled copy"
    assert bundled.send_job  # usable: the endpoint override points it at the simulator
    close(bundled)
    # A copy cached before the outage is used (its refresh fails quietly in the background).
    gone = Simulator().start()
    close(client_for(gone, tmp_path))
    gone.stop()
    cached = client_for(simulator, tmp_path, wsdl=gone.wsdl_url)
    assert cached.wsdl_source == "cached copy" and cached.endpoint == gone.url
    close(cached)


def test_building_a_client_never_fetches_the_soap_encoding_schema(tmp_path, monkeypatch) -> None:
    # A Delphi WSDL refers to soapenc types; zeep would fetch that schema from the internet.
    wsdl = bundled_wsdl().read_text().replace(
        'xmlns:tns="http://tempuri.org/"',
        'xmlns:tns="http://tempuri.org/" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"',
    ).replace(
        "<message name=\"SendJob0Request\">",
        "<types><xs:schema targetNamespace=\"urn:x\"><xs:import namespace=\"http://schemas.xmlsoap.org/soap/encoding/\"/>"
        "<xs:complexType name=\"TList\"><xs:complexContent><xs:restriction base=\"soapenc:Array\"/>"
        "</xs:complexContent></xs:complexType></xs:schema></types>\n  <message name=\"SendJob0Request\">",
    )
    path = tmp_path / "delphi.wsdl"
    path.write_text(wsdl)
    fetched: list[object] = []

    def no_network(self, address, *a, **k):
        fetched.append(address)
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    client = FaxDeClient(account="1", password="x", wsdl=str(path), endpoint="http://127.0.0.1:9/")
    assert fetched == []
    close(client)


# -- SendJob ----------------------------------------------------------------------------------


def test_send_job_passes_every_parameter_and_the_exact_bytes(client, simulator, pdf, tmp_path, on) -> None:
    tiff = tmp_path / "anlage.tif"
    tiff.write_bytes(make_tiff(2) * 2000)  # over 1 MiB: read and encoded in a worker thread on the loop
    request = SendRequest(
        job_type=JobType.FAX,
        recipients=(Recipient("+494012345678", "INV-42"),),
        documents=(Document(pdf.name, pdf), Document("anlage.tif", tiff)),
        text="Bitte beachten Sie die Anlage.",
        options=(("STATIONID", "ACME"), ("FAXHEADER", "ACME GmbH")),
    )
    accepted = on(client, "send_job", request)
    assert accepted.recipients_count == 1 and accepted.page_count == 6  # note + 3 + 2
    [call] = simulator.calls_for("SendJob")
    p = call.params
    assert p["Account"] == ACCOUNT and p["Password"] == PASSWORD
    assert p["JobType"] == 0 and p["Recipient"] == "+494012345678[INV-42]"
    assert p["SendText"] == "Bitte beachten Sie die Anlage."
    assert (p["SendFilename1"], p["SendFile1"]) == (pdf.name, pdf.read_bytes())
    assert (p["SendFilename2"], p["SendFile2"]) == ("anlage.tif", tiff.read_bytes())
    assert p["SendFilename3"] == "" and not p["SendFile3"]
    assert p["Options"] == "STATIONID=ACME;FAXHEADER=ACME GmbH"
    assert simulator.job(accepted.faxde_job_id).recipients[0].reference == "INV-42"


def test_the_spliced_body_is_byte_identical_to_what_zeep_would_send(pdf, tmp_path) -> None:
    tiff = tmp_path / "b.tif"
    tiff.write_bytes(make_tiff(3) * 50)  # not a multiple of the encode block, nor of 3
    client = zeep.Client(str(bundled_wsdl()))
    service = client.create_service(BINDING, "http://127.0.0.1:9/")
    params = dict(Account="1", Password="p", JobType=0, Recipient="+49", RecipientFile=b"",
                  SendText="", SendFilename1="a.pdf", SendFilename2="b.tif", SendFilename3="",
                  SendFile3=b"", SendDateTime=SEND_IMMEDIATELY, Options="")
    expected = etree.tostring(
        client.create_message(service, "SendJob", SendFile1=pdf.read_bytes(),
                              SendFile2=tiff.read_bytes(), **params),
        xml_declaration=True, encoding="utf-8",
    )
    import pybase64

    marks = [b"\x01" * 18, b"\x02" * 18]
    skeleton = etree.tostring(
        client.create_message(service, "SendJob", SendFile1=marks[0], SendFile2=marks[1], **params),
        xml_declaration=True, encoding="utf-8",
    )
    body = _SplicedBody(skeleton, [
        (pybase64.b64encode(marks[0]), pdf, pdf.stat().st_size),
        (pybase64.b64encode(marks[1]), tiff, tiff.stat().st_size),
    ])
    assert len(body) == len(expected)
    assert b"".join(body.chunks()) == expected


def test_a_large_document_is_spliced_block_by_block_in_little_memory(tmp_path) -> None:
    # Blocks join without padding, and a 3 MB document never has more than a fraction of itself
    # in memory (768 KiB blocks cost 2.7 MB of peak memory for a 1 MB document, issue 7).
    import os
    import tracemalloc

    import pybase64

    big = tmp_path / "big.pdf"
    data = os.urandom(3_000_001)  # several encode blocks, not a multiple of 3
    big.write_bytes(data)
    marker = pybase64.b64encode(b"\x01" * 18)
    body = _SplicedBody(b"<a>" + marker + b"</a>", [(marker, big, len(data))])
    expected_length = len(body)
    del data
    tracemalloc.start()
    try:
        digest = hashlib.sha256()
        total = 0
        for chunk in body.chunks():
            digest.update(chunk)
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == expected_length
    assert digest.hexdigest() == hashlib.sha256(b"<a>" + pybase64.b64encode(big.read_bytes()) + b"</a>").hexdigest()
    assert peak < 1_000_000


def test_several_recipients_go_as_a_recipient_file(client, simulator, pdf, on) -> None:
    accepted = on(client, "send_job", fax(pdf, "+494012345678", "+493012345678"))
    assert accepted.recipients_count == 2
    [call] = simulator.calls_for("SendJob")
    assert call.params["Recipient"] == ""
    assert call.params["RecipientFile"] == b"+494012345678\n+493012345678\n"


def test_a_scheduled_job_carries_its_time_in_utc(client, simulator, pdf, on) -> None:
    when = dt.datetime(2031, 1, 2, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    on(client, "send_job", fax(pdf, send_at=when))
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendDateTime"] == when


# Result codes the simulator produces from real input, and those only reachable by injection.
def _natural_sendjob_cases(pdf: Path, tmp_path: Path):
    png = tmp_path / "scan.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    return {
        -1: ({"password": "wrong-password"}, fax(pdf)),
        -2: ({"account": "99999"}, fax(pdf)),
        -6: ({}, fax(odd)),
        -7: ({}, fax(png)),
        8: ({}, fax(pdf, "not-a-number")),
        45: ({}, fax(pdf, "+499001234567")),
        75: ({}, SendRequest(JobType.FAX, (Recipient("+494012345678"),))),
    }


def test_every_sendjob_result_code_becomes_a_provider_error(simulator, pdf, tmp_path, on) -> None:
    natural = _natural_sendjob_cases(pdf, tmp_path)
    for code, entry in faxde_codes.RESULT_CODES["SendJob"].items():
        if code == 0:
            continue
        kwargs, request = natural.get(code, ({}, fax(pdf)))
        client = client_for(simulator, tmp_path, **kwargs)
        simulator.clear_faults()
        if code not in natural:
            simulator.set_faults(Fault(FaultKind.RESULT, operation="SendJob", code=code))
        with pytest.raises(ProviderError) as err:
            on(client, "send_job", request)
        close(client)
        e = err.value
        assert (e.code, e.name, e.sentence) == (code, entry.name, entry.sentence), code
        assert e.retryable == (entry.outcome is Outcome.RETRYABLE)
        assert e.stops_account == (entry.outcome is Outcome.ACCOUNT)
        assert not e.outcome_unknown
        assert PASSWORD not in str(e) and PASSWORD not in repr(e)


@pytest.mark.parametrize("operation", ["JobStatus", "CancelJob", "RequestReceived", "DeleteReceived"])
def test_every_result_code_of_the_other_operations(simulator, client, operation, on) -> None:
    call = {
        "JobStatus": lambda: on(client, "job_status", 1),
        "CancelJob": lambda: on(client, "cancel_job", 1),
        "RequestReceived": lambda: on(client, "request_received"),
        "DeleteReceived": lambda: on(client, "delete_received", 1),
    }[operation]
    for code, entry in faxde_codes.RESULT_CODES[operation].items():
        simulator.set_faults(Fault(FaultKind.RESULT, operation=operation, code=code))
        if entry.outcome in (Outcome.OK, Outcome.PENDING):
            continue  # success paths are tested with real data below
        with pytest.raises(ProviderError) as err:
            call()
        assert (err.value.code, err.value.name) == (code, entry.name)
        assert err.value.stops_account == (entry.outcome is Outcome.ACCOUNT)


def test_natural_errors_of_the_other_operations(simulator, client, tmp_path, on) -> None:
    with pytest.raises(ProviderError) as err:
        on(client, "job_status", 424242)
    assert err.value.code == 5
    with pytest.raises(ProviderError) as err:
        on(client, "cancel_job", 424242)
    assert err.value.code == -2
    with pytest.raises(ProviderError) as err:
        on(client, "delete_received", 424242)
    assert err.value.code == 5
    wrong = client_for(simulator, tmp_path, password="nope")
    for call, code in ((lambda: on(wrong, "job_status", 1), 2), (lambda: on(wrong, "cancel_job", 1), -1),
                       (lambda: on(wrong, "request_received"), 2), (lambda: on(wrong, "delete_received", 1), 2)):
        with pytest.raises(ProviderError) as err:
            call()
        assert err.value.code == code and err.value.stops_account
    close(wrong)


# -- JobStatus, CancelJob ---------------------------------------------------------------------


def test_job_status_reports_progress_then_the_protocol(client, simulator, pdf, on) -> None:
    simulator.polls_until_done = 2
    accepted = on(client, "send_job", fax(pdf))
    assert not on(client, "job_status", accepted.faxde_job_id).finished
    assert not on(client, "job_status", accepted.faxde_job_id).finished
    report = on(client, "job_status", accepted.faxde_job_id)
    assert report.finished and report.send_result == "OK"
    assert report.status_file.startswith(b'"RECIPIENT","JOBTYPE","RESULT"')
    [row] = report.rows
    assert (row.recipient, row.job_type, row.result, row.pages) == ("+494012345678", "FAX", "OK", "3")
    assert report.send_datetime is not None


def test_multi_recipient_status_shows_each_result(client, simulator, pdf, on) -> None:
    simulator.set_result("+493012345678", "Busy")
    accepted = on(client, "send_job", fax(pdf, "+494012345678", "+493012345678"))
    simulator.finish_job(accepted.faxde_job_id)
    report = on(client, "job_status", accepted.faxde_job_id)
    assert report.send_result == "multi"
    assert {(r.recipient, r.result) for r in report.rows} == {
        ("+494012345678", "OK"), ("+493012345678", "Busy"),
    }


def test_cancel_before_and_after_the_end(client, simulator, pdf, on) -> None:
    first = on(client, "send_job", fax(pdf, send_at=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)))
    on(client, "cancel_job", first.faxde_job_id)
    second = on(client, "send_job", fax(pdf, "+493012345678"))
    simulator.finish_job(second.faxde_job_id)
    with pytest.raises(ProviderError) as err:
        on(client, "cancel_job", second.faxde_job_id)
    assert err.value.code == 1 and not err.value.retryable


# -- inbound ----------------------------------------------------------------------------------


def test_request_and_delete_received(client, simulator, on) -> None:
    assert on(client, "request_received") is None
    image = make_tiff(3)
    simulator.add_inbound(image, called_number="+494099999", originator="+4930111", remote_id="ACME")
    fax_ = on(client, "request_received")
    assert fax_ is not None and fax_.image == image and fax_.pages == 3
    assert (fax_.called_number, fax_.originator, fax_.remote_id) == ("+494099999", "+4930111", "ACME")
    assert fax_.fax_id > 2**31  # FaxId is xsd:long
    assert on(client, "request_received").fax_id == fax_.fax_id  # the same until deleted
    on(client, "delete_received", fax_.fax_id)
    assert on(client, "request_received") is None


# -- transport failures -----------------------------------------------------------------------


def test_connection_refused_is_retryable_and_certainly_not_sent(simulator, tmp_path, pdf, on) -> None:
    client = client_for(simulator, tmp_path, endpoint=f"http://127.0.0.1:{_free_port()}/soap")
    with pytest.raises(ProviderError) as err:
        on(client, "send_job", fax(pdf))
    assert err.value.retryable and not err.value.outcome_unknown
    close(client)


@pytest.mark.parametrize(
    "kind, unknown",
    [(FaultKind.HTTP_500, False), (FaultKind.SOAP_FAULT, False), (FaultKind.DROP_BEFORE, True),
     (FaultKind.DROP_AFTER, True)],
)
def test_transport_faults_are_classified(client, simulator, pdf, kind, unknown, on) -> None:
    # A dropped connection cannot tell "before" from "after processing": both are unknown.
    simulator.set_faults(Fault(kind, operation="SendJob", calls=frozenset({1})))
    with pytest.raises(ProviderError) as err:
        on(client, "send_job", fax(pdf))
    assert err.value.retryable and err.value.outcome_unknown is unknown
    # The same fault on a read-only call is never "unknown": nothing is paid for twice.
    simulator.set_faults(Fault(kind, operation="JobStatus", calls=frozenset({1})))
    with pytest.raises(ProviderError) as err:
        on(client, "job_status", 1)
    assert err.value.retryable and not err.value.outcome_unknown


def test_a_reply_slower_than_the_timeout_leaves_the_outcome_unknown(simulator, tmp_path, pdf, on) -> None:
    client = client_for(simulator, tmp_path, timeout=0.3)
    simulator.set_faults(Fault(FaultKind.DELAY, operation="SendJob", seconds=1.5, calls=frozenset({1})))
    with pytest.raises(ProviderError) as err:
        on(client, "send_job", fax(pdf))
    assert err.value.outcome_unknown and "0.3 s" in str(err.value)
    assert len(simulator.jobs) == 1  # the simulator did take the job
    # …and FAX.de's duplicate check is what makes a reconciling re-send safe:
    with pytest.raises(ProviderError) as err:
        on(client, "send_job", fax(pdf))
    assert err.value.code == -77
    close(client)


def test_the_password_never_reaches_logs_even_at_debug(simulator, tmp_path, pdf, caplog, on) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(simulator, tmp_path)
    on(client, "send_job", fax(pdf))
    simulator.set_faults(Fault(FaultKind.SOAP_FAULT, operation="JobStatus", message=f"bad {PASSWORD}"))
    with pytest.raises(ProviderError) as err:
        on(client, "job_status", 1)
    assert PASSWORD not in str(err.value)
    assert PASSWORD not in repr(client)
    assert PASSWORD not in caplog.text
    close(client)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
