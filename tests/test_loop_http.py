"""FAX.de's HTTP on the event loop (faxde/http.py, over aiohttp): connections kept and
dropped, every way an HTTP answer can be framed, proxies, TLS, and documents that change while
they are sent.

The tests in test_faxde_client.py run this path too; these are what only it has. The odd answers come from a small asyncio server on loopback that answers
each request with prepared bytes; everything else from the simulator.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.faxde.client import DocumentUnreadable, FaxDeClient, bundled_wsdl
from faxbridge.faxde.http import HTTPFailure, LoopHTTP
from faxbridge.errors import ProviderError
from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
from faxbridge.outbound import Outbound
from faxbridge.provider import ProviderCalls
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import ACCOUNT, PASSWORD
from test_outbound import run as run_outbound


def on_loop(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def client_for(simulator: Simulator, tmp_path: Path, **kwargs: Any) -> FaxDeClient:
    return FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url, timeout=5.0,
                       connect_timeout=2.0, cache_dir=tmp_path / "wsdl", **kwargs)


def fax(path: Path) -> SendRequest:
    return SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(path.name, path),))


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "letter.pdf"
    path.write_bytes(make_pdf(2))
    return path


# -- connections --------------------------------------------------------------------------------


def test_one_connection_carries_one_send_after_another(simulator: Simulator, tmp_path: Path, pdf: Path) -> None:
    client = client_for(simulator, tmp_path)
    letters = []
    for i in range(5):  # five different letters: FAX.de refuses the same one twice as a duplicate
        letters.append(tmp_path / f"letter-{i}.pdf")
        letters[-1].write_bytes(make_pdf(1, tag=str(i)))

    async def five() -> list[int]:
        try:
            return [(await client.send_job(fax(letter))).faxde_job_id for letter in letters]
        finally:
            await client.close()

    ids = on_loop(five)
    assert len(set(ids)) == 5 and len(simulator.calls_for("SendJob")) == 5
    assert client._http.opened == 1


class Canned:
    """A loopback HTTP server that reads each request whole and answers with the next prepared
    bytes; ``close_after`` closes the connection once that answer is out."""

    def __init__(self, answers: list[bytes], close_after: bool = False, silent: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.answers = list(answers)
        self.close_after = close_after
        self.silent = silent
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/soap"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.silent and await reader.read(65536):
                pass  # takes the request, never answers
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.answers.pop(0))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def http(timeout: float = 2.0, ca_bundle: str | None = None, proxy: str | None = None) -> Callable[[str], LoopHTTP]:
    tls = ssl.create_default_context(cafile=ca_bundle)
    return lambda url: LoopHTTP(url, connect_timeout=1.0, read_timeout=timeout, tls=tls, proxy=proxy)


def idle(client: LoopHTTP) -> list[Any]:
    """The connections waiting in the pool for the next call, still open."""
    connector = client._session.connector if client._session is not None else None
    if connector is None:
        return []
    return [proto for conns in connector._conns.values() for proto, _ in conns if proto.is_connected()]


async def post(client: LoopHTTP, body: bytes = b"<x/>") -> Any:
    async def blocks():
        yield body

    return await client.post({"Content-Length": str(len(body))}, blocks())


def ok(body: bytes = b"<ok/>", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_a_connection_the_server_closed_while_idle_is_not_written_into() -> None:
    async def main() -> None:
        server = Canned([ok(b"<one/>"), ok(b"<two/>")], close_after=True)
        async with server as url:
            client = http()(url)
            assert (await post(client)).content == b"<one/>"
            await asyncio.sleep(0)  # let the loop see the server's FIN, as any busy loop has
            for _ in range(100):
                if not idle(client):
                    break
                await asyncio.sleep(0.01)
            assert (await post(client)).content == b"<two/>"
            assert client.opened == 2 and server.connections == 2
            await client.close()

    on_loop(main)


@pytest.mark.parametrize("answer, content, kept", [
    (ok(b"<a/>"), b"<a/>", True),
    (ok(b"<a/>", "Connection: close\r\n"), b"<a/>", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<a/\r\n1;x=y\r\n>\r\n0\r\n\r\n", b"<a/>", True),
    (b"HTTP/1.0 200 OK\r\n\r\n<until-close/>", b"<until-close/>", False),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"<after-100/>"), b"<after-100/>", True),
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!", b"oops!", True),
    (ok(gzip.compress(b"<zipped/>"), "Content-Encoding: gzip\r\n"), b"<zipped/>", True),
], ids=["length", "close", "chunked", "until-close", "100-continue", "500", "gzip"])
def test_every_framing_of_an_answer_is_read_whole(answer: bytes, content: bytes, kept: bool) -> None:
    async def main() -> None:
        server = Canned([answer], close_after=b"until-close" in answer)
        async with server as url:
            client = http()(url)
            got = await post(client, b"<request/>")
            assert got.content == content
            assert len(idle(client)) == (1 if kept else 0)
            assert server.requests[0].endswith(b"\r\n\r\n<request/>")
            assert b"POST /soap HTTP/1.1\r\nHost: 127.0.0.1:" in server.requests[0]
            assert b"\r\nAccept-Encoding: identity\r\n" in server.requests[0]
            await client.close()

    on_loop(main)


@pytest.mark.parametrize("answer, what", [
    (b"SMTP ready\r\n\r\n", "unreadable HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n<short/>", "connection dropped before the answer"),
    (b"", "connection dropped before the answer"),
    (ok(b"not gzip at all", "Content-Encoding: gzip\r\n"), "unreadable HTTP answer"),
    (ok(b"<x/>", "Content-Encoding: br\r\n"), "unknown encoding"),
])
def test_a_broken_answer_may_have_been_sent(answer: bytes, what: str) -> None:
    async def main() -> None:
        async with Canned([answer], close_after=True) as url:
            client = http()(url)
            with pytest.raises(HTTPFailure) as err:
                await post(client)
            assert err.value.maybe_sent and what in str(err.value)
            assert idle(client) == []
            await client.close()

    on_loop(main)


def test_a_server_that_never_answers_times_out_as_maybe_sent() -> None:
    async def main() -> None:
        async with Canned([], silent=True) as url:
            client = http(timeout=0.2)(url)
            with pytest.raises(HTTPFailure) as err:
                await post(client)
            assert err.value.maybe_sent and "no answer within 0.2 s" in str(err.value)
            await client.close()

    on_loop(main)


def test_a_server_that_stops_taking_the_body_times_out_as_maybe_sent() -> None:
    # aiohttp times only the answer; a server that stops reading a large body must not hold the
    # call for ever. The socket buffers fill, then no block goes out within the read timeout.
    async def main() -> None:
        done = asyncio.Event()

        async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await done.wait()  # reads nothing more, answers nothing
            writer.close()
            await writer.wait_closed()


        server = await asyncio.start_server(deaf, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = http(timeout=0.3)(f"http://127.0.0.1:{port}/soap")
        size, block = 256 * 1024 * 1024, b"x" * (256 * 1024)
        sent = 0

        async def body():
            nonlocal sent
            while sent < size:
                sent += len(block)
                yield block

        try:
            with pytest.raises(HTTPFailure) as err:
                await client.post({"Content-Length": str(size)}, body())
            assert err.value.maybe_sent and "no answer within 0.3 s" in str(err.value)
            assert sent < size  # it stopped on the way, not after the whole body
        finally:
            await client.close()
            done.set()
            server.close()
            await server.wait_closed()

    on_loop(main)


def test_https_checks_the_certificate_and_keeps_the_connection(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    ca_file = cert  # self-signed: its own authority

    async def main() -> None:
        async with Canned([ok(b"<one/>"), ok(b"<two/>")], tls=server_tls) as url:
            client = http(ca_bundle=str(ca_file))(url)
            assert (await post(client)).content == b"<one/>"
            assert (await post(client)).content == b"<two/>"
            assert client.opened == 1
            await client.close()
        async with Canned([ok()], tls=server_tls) as url:  # a CA this client does not trust
            stranger = http()(url)
            with pytest.raises(HTTPFailure) as err:
                await post(stranger)
            assert "TLS handshake failed" in str(err.value) and not err.value.maybe_sent
            await stranger.close()

    on_loop(main)


# -- documents that change under the send --------------------------------------------------------


@pytest.mark.parametrize("size", [1_200_000, 200_000], ids=["read-in-a-thread", "read-on-the-loop"])
def test_a_document_that_shrinks_while_sent_is_never_taken_by_fax_de(simulator: Simulator, tmp_path: Path,
                                                                     size: int) -> None:
    # Over 1 MiB the document is read in a worker thread, under it on the loop: either way the
    # failure is the document's, never an OSError that would pass for a dropped connection.
    big = tmp_path / "big.pdf"
    big.write_bytes(make_pdf(1) + b"%" * size)
    client = client_for(simulator, tmp_path)

    async def main() -> None:
        body = client._sendjob_body(fax(big))
        big.write_bytes(make_pdf(1))  # replaced by a smaller one after its size was taken
        with pytest.raises(DocumentUnreadable, match="changed size while being sent"):
            await client._http.post({"Content-Length": str(len(body))}, body.blocks())
        await client.close()

    on_loop(main)
    assert simulator.calls_for("SendJob") == []  # the body was cut short: nothing to process


def test_a_vanished_document_fails_its_job_with_the_reason_instead_of_leaving_it_unknown(
    simulator: Simulator, tmp_path: Path, pdf: Path
) -> None:
    async def body(outbound: Outbound) -> Any:
        job = await outbound.submit(fax(pdf), source="test", source_ref="1")
        pdf.unlink()  # between being journaled and being sent
        return await outbound.send_now(job.id)

    job = run_outbound(simulator, tmp_path, body)
    assert job.state is JobState.REJECTED
    assert "letter.pdf cannot be read" in job.last_error
    assert simulator.calls_for("SendJob") == []


def test_a_provider_behind_a_proxy_sends_through_it(simulator: Simulator, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, pdf: Path) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=str(bundled_wsdl()),
                         endpoint=simulator.url, timeout=2.0, connect_timeout=1.0)
    assert client.proxy == "http://127.0.0.1:9"

    async def main() -> None:
        calls = ProviderCalls(client, concurrency=1)
        try:
            with pytest.raises(ProviderError) as err:  # nothing listens where the proxy should be
                await calls.send_job(fax(pdf))
            assert "could not connect" in str(err.value) and not err.value.outcome_unknown
        finally:
            await calls.close()

    on_loop(main)
    assert simulator.calls_for("SendJob") == []  # not sent around the proxy


def test_a_request_through_a_proxy_names_the_whole_url_and_the_proxy_credentials() -> None:
    # An HTTP proxy is asked for the absolute URL (RFC 9112, 3.2.2) and answers for the server;
    # credentials in the proxy's URL (https_proxy=http://user:pw@host:port) go as Proxy-Authorization.
    async def main() -> None:
        proxy = Canned([ok(b"<through/>"), ok(b"<again/>")])
        async with proxy as proxy_url:
            plain = http(proxy=proxy_url.removesuffix("/soap"))("http://fax.example:8080/soap")
            assert (await post(plain)).content == b"<through/>"
            await plain.close()
            with_user = http(proxy=proxy_url.removesuffix("/soap").replace("//", "//faxer:s%3Acret@"))(
                "http://fax.example:8080/soap")
            assert (await post(with_user)).content == b"<again/>"
            await with_user.close()
        first, second = proxy.requests
        assert first.startswith(b"POST http://fax.example:8080/soap HTTP/1.1\r\n")
        assert b"proxy-authorization" not in first.lower()
        assert b"\r\nProxy-Authorization: Basic ZmF4ZXI6czpjcmV0\r\n" in second  # faxer:s:cret

    on_loop(main)


def test_a_document_gone_before_a_reconciling_resend_leaves_the_job_for_the_operator(
    simulator: Simulator, tmp_path: Path, pdf: Path
) -> None:
    # The first request may have reached FAX.de (the connection dropped after it was taken): the
    # job must not be reported failed because the document cannot be sent again to find out.
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))

    async def body(outbound: Outbound) -> Any:
        job = await outbound.submit(fax(pdf), source="test", source_ref="1")
        first = await outbound.send_now(job.id)
        pdf.unlink()
        return first, await outbound.send_now(job.id)

    first, again = run_outbound(simulator, tmp_path, body)
    assert first.state is JobState.UNKNOWN
    assert again.state is JobState.UNKNOWN
    assert "cannot be asked again" in again.last_error and "letter.pdf cannot be read" in again.last_error
    assert len(simulator.calls_for("SendJob")) == 1


def test_a_large_received_fax_comes_whole_through_the_loop(simulator: Simulator, tmp_path: Path) -> None:
    # Over the size parsed on the loop: lxml and the base64 decoding run in a worker thread.
    image = make_tiff(3, width=1728, height=2200, tag="fine")  # three fine-resolution pages, ~1.4 MB
    assert len(image) > 512 * 1024
    sent = simulator.add_inbound(image, originator="+4930111")
    client = client_for(simulator, tmp_path)

    async def main() -> Any:
        try:
            got = await client.request_received()
            await client.delete_received(sent.fax_id)
            return got, await client.request_received()
        finally:
            await client.close()

    got, after = on_loop(main)
    assert got.fax_id == sent.fax_id and got.image == image and got.pages == 3
    assert after is None
