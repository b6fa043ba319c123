"""The FAX.de XML web service client: the five operations in, plain values out.

zeep reads the WSDL, builds each envelope and parses each reply; nothing zeep-shaped leaves this
module. Documents never pass through zeep's lxml tree: the envelope is built with a short
placeholder in each SendFile part and the base64 text is spliced in while the request body is
streamed from the files (the performance issue measured 5 MB of memory per MB of document
the other way). Each operation comes twice: blocking, over urllib3 (the command line, and the
daemon behind a proxy), and as a coroutine ``…_on_loop`` over adapters/loop_http.py, which the
daemon calls from its event loop — the same bytes, without handing the GIL to a thread and back
for every call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import os
import secrets as _secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import certifi
import pybase64
import requests
import urllib3
import zeep
import zeep.exceptions
from lxml import etree
from urllib3 import exceptions as u3
from zeep.transports import Transport

from faxbridge import __version__
from faxbridge.adapters import faxde_codes
from faxbridge.adapters.faxde_codes import Outcome
from faxbridge.adapters.loop_http import HTTPFailure, LoopHTTP
from faxbridge.crashpoints import crash_point
from faxbridge.errors import DocumentError, ProviderError
from faxbridge.model import Accepted, InboundFax, JobStatusReport, SendRequest
from faxbridge.adapters.reports import parse_status_file

log = logging.getLogger(__name__)

DEFAULT_WSDL = "https://ccs.fax.de/xmlws.exe?wsdl/IntfXMLWS"
BINDING = "{http://tempuri.org/}IIntfXMLWSbinding"
SOAP_ENCODING_URL = "http://schemas.xmlsoap.org/soap/encoding/"

# "A missing value or a time in the past will cause immediately sending" (FAXDE-API.md,
# SendDateTime) — and the WSDL makes the part required, so "now" is sent as a fixed past time.
SEND_IMMEDIATELY = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)

# zeep's transport logger writes whole envelopes (password included) at DEBUG.
logging.getLogger("zeep.transports").setLevel(logging.WARNING)
logging.getLogger("zeep.transports").propagate = False

# A multiple of 3, so base64 chunks join without padding. Small enough that a block and its
# base64 stay a fraction of a 1 MB document (768 KiB blocks made sending 1 MB cost 2.7 MB of
# peak memory, bench.send_memory); encoding block by block costs nothing measurable.
_ENCODE_BLOCK = 3 * 64 * 1024
_ENCODED_BLOCK = _ENCODE_BLOCK // 3 * 4  # what one block of the document is on the wire
_READ_ON_LOOP = 1 << 20  # a SendJob's documents up to this size are read on the event loop
_PARSE_ON_LOOP = 256 * 1024  # answers up to this size are parsed on the event loop


def bundled_wsdl() -> Path:
    return Path(str(resources.files("faxbridge.adapters").joinpath("IntfXMLWS.wsdl")))


def _bundled_soap_encoding() -> bytes:
    return resources.files("faxbridge.adapters").joinpath("soap-encoding.xsd").read_bytes()


class _OfflineTransport(Transport):
    """A zeep transport that never fetches the soap-encoding schema from the internet."""

    def load(self, url: str) -> bytes:
        if url.rstrip("/") == SOAP_ENCODING_URL.rstrip("/"):
            return _bundled_soap_encoding()
        return super().load(url)


def resolve_wsdl(
    configured: str, cache_dir: Path | None, timeout: float | tuple[float, float]
) -> tuple[Path, str]:
    """Where to read the WSDL from: (local file, description of where it came from).

    A URL is read from the copy cached in the state dir when there is one (and refreshed in the
    background for the next start): a start never waits for FAX.de, which may be slow or down
    at 8 a.m. Without a copy it is fetched and cached; when it cannot be fetched, the bundled copy
    is used, so a provider outage never stops the daemon starting.
    """
    if not configured.startswith(("http://", "https://")):
        path = Path(configured)
        if path.is_file():
            return path, f"file {path}"
        log.warning("WSDL file %s not found; using the bundled copy", path)
        return bundled_wsdl(), "bundled copy"
    if cache_dir is None:
        cached = Path(os.environ.get("TMPDIR", "/tmp")) / f"faxbridge-wsdl-{os.getpid()}.wsdl"
    else:
        # One copy per URL: a copy of the test service's WSDL must never send production faxes
        # to the test endpoint after the configuration changed.
        cached = cache_dir / f"IntfXMLWS-{hashlib.sha256(configured.encode()).hexdigest()[:16]}.wsdl"
        if _is_xml(cached):
            threading.Thread(target=_refresh_wsdl, args=(configured, cached, timeout),
                             name="wsdl-refresh", daemon=True).start()
            return cached, "cached copy"
    try:
        content = _fetch_wsdl(configured, timeout)
    except (requests.RequestException, etree.XMLSyntaxError) as exc:
        log.warning("cannot fetch WSDL (%s); using the bundled copy", type(exc).__name__)
        return bundled_wsdl(), "bundled copy"
    _store(cached, content)
    return cached, f"fetched from {configured.split('?')[0]}"


def _fetch_wsdl(url: str, timeout: float | tuple[float, float]) -> bytes:
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    etree.fromstring(response.content)  # must at least be XML before we trust it
    return response.content


def _refresh_wsdl(url: str, cached: Path, timeout: float | tuple[float, float]) -> None:
    """Fetch the WSDL again for the next start (in a thread: nothing waits for it)."""
    try:
        content = _fetch_wsdl(url, timeout)
        if content != cached.read_bytes():
            _store(cached, content)
            log.warning("FAX.de's WSDL has changed since it was cached; faxbridge uses the new"
                        " one from its next start")
    except Exception as exc:  # offline, slow, a half-written file: the cached copy stays
        log.debug("WSDL not refreshed: %s", type(exc).__name__)


def _is_xml(path: Path) -> bool:
    try:
        etree.parse(str(path))
    except (OSError, etree.XMLSyntaxError):
        return False
    return True


def _store(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically (a daemon and a CLI command may refresh it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


class _SplicedBody(io.RawIOBase):
    """The SendJob request body: zeep's envelope with each placeholder replaced by a file's base64.

    Read by urllib3 (``read``) or LoopHTTP (``blocks``); the files are encoded block by block, so
    memory stays flat however large the documents are. ``len()`` is exact, so the request carries
    Content-Length.
    """

    def __init__(self, envelope: bytes, splices: list[tuple[bytes, Path, int]]) -> None:
        super().__init__()
        self._pieces: list[bytes | tuple[Path, int]] = []
        length = 0
        rest = envelope
        for placeholder, path, size in splices:
            head, found, rest = rest.partition(placeholder)
            if not found:
                raise RuntimeError("placeholder missing from the SendJob envelope")
            self._pieces += [head, (path, size)]
            length += len(head) + 4 * ((size + 2) // 3)
        self._pieces.append(rest)
        self._length = length + len(rest)
        self._chunks = self._generate()
        self._buffer = b""
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def _generate(self) -> Iterator[bytes]:
        for index, piece in enumerate(self._pieces):
            if index == 1:
                # The request is on its way, part of it still unsent (the test hook's "during
                # SendJob"; a text-only job has one piece and is sent whole before this).
                crash_point("faxde.during_sendjob")
            if isinstance(piece, bytes):
                yield piece
                continue
            path, size = piece
            seen = 0
            try:
                with open(path, "rb") as f:
                    while block := f.read(_ENCODE_BLOCK):
                        seen += len(block)
                        yield pybase64.b64encode(block)
            except OSError as exc:
                raise DocumentUnreadable(f"{path.name} cannot be read ({exc.strerror or exc})") from None
            if seen != size:  # the file changed under us: the Content-Length would lie
                raise DocumentUnreadable(f"{path.name} changed size while being sent")

    async def blocks(self) -> AsyncGenerator[bytes, None]:
        """The same bytes for a send on the event loop (``LoopHTTP``), from a fresh generator.

        Documents of up to 1 MiB in all — most faxes — are read and encoded on the loop, a block
        (~0.1 ms) at a time between writes: they were hashed moments ago and come from the page
        cache, where a thread hop per block would cost more than the read. Larger ones are read
        and encoded in a worker thread, so that a slow disk never stalls the loop.
        """
        chunks = self._generate()
        if sum(piece[1] for piece in self._pieces if isinstance(piece, tuple)) <= _READ_ON_LOOP:
            for chunk in chunks:
                yield chunk
            return
        loop = asyncio.get_running_loop()
        while (block := await loop.run_in_executor(None, _next_or_none, chunks)) is not None:
            yield block

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            rest = self._buffer[self._pos:] + b"".join(self._chunks)
            self._buffer, self._pos = b"", 0
            return rest
        # Serve from the current chunk by offset: slicing off the front instead would copy the
        # rest of a 1 MB chunk on every 16 KB read.
        while self._pos >= len(self._buffer):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer, self._pos = chunk, 0
        out = self._buffer[self._pos:self._pos + size]
        self._pos += len(out)
        return out


class DocumentUnreadable(DocumentError):
    """A document could not be read while its SendJob was being sent.

    Not an OSError on purpose: the HTTP layers take OSError for a broken connection, which
    would leave the job "maybe sent" and re-send it for ever. The body was cut short, so
    FAX.de, reading Content-Length, never takes the job: it fails, for this reason.
    """


def _next_or_none(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class FaxDeClient:
    """FAX.de over SOAP. Thread-safe: each call may run in its own worker thread."""

    def __init__(
        self,
        *,
        account: str,
        password: str,
        wsdl: str = DEFAULT_WSDL,
        endpoint: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        cache_dir: Path | None = None,
        pool_size: int = 8,
    ) -> None:
        self._account = account
        self._password = password
        self._timeouts = (connect_timeout, timeout)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=timeout)
        # A read timeout of its own: a FAX.de that accepts connections and never answers must not
        # hold the start for the minute a 20 MB SendJob may take.
        wsdl_path, self.wsdl_source = resolve_wsdl(wsdl, cache_dir, (connect_timeout, min(timeout, 15.0)))
        # zeep's own transport only ever reads the WSDL and its schemas, once.
        transport = _OfflineTransport(timeout=connect_timeout + timeout)
        # xml_huge_tree: lxml refuses text nodes over 10 MB by default, and a FaxImage is one
        # text node — a received fax over ~7.5 MB could never be fetched and would block the
        # inbox for good. Entities and DTDs stay forbidden (zeep's defaults).
        settings = zeep.Settings(xml_huge_tree=True)
        self._client = zeep.Client(str(wsdl_path), transport=transport, settings=settings)
        self._binding = self._client.wsdl.bindings[BINDING]
        self.endpoint = endpoint or self._service_address()
        self._service = self._client.create_service(BINDING, self.endpoint)
        # The calls go through urllib3 directly: requests costs about 1.5 ms of CPU per call in
        # header merging and environment look-ups — a third of all the work per job.
        proxy, ca_bundle = _proxy_for(self.endpoint), _ca_bundle()
        self._http = _connection_pool(proxy, ca_bundle, pool_size)
        # The daemon calls FAX.de from its event loop (loop_http: no thread hand-offs); LoopHTTP
        # speaks no proxy, so behind one every call goes through urllib3 in worker threads.
        self.calls_on_loop = proxy is None
        self._loop_http = LoopHTTP(self.endpoint, connect_timeout=connect_timeout, read_timeout=timeout,
                                   ca_bundle=ca_bundle, keep=pool_size)

    def __repr__(self) -> str:
        return f"FaxDeClient(account={self._account!r}, endpoint={self.endpoint!r}, password='***')"

    def _service_address(self) -> str:
        for service in self._client.wsdl.services.values():
            for port in service.ports.values():
                if port.binding.name == self._binding.name:
                    return str(port.binding_options["address"])
        raise ProviderError("setup", "the WSDL names no address for the FAX.de binding")

    def close(self) -> None:
        self._http.clear()
        self._loop_http.close()

    # -- the five operations -------------------------------------------------------------

    def send_job(self, request: SendRequest) -> Accepted:
        """SendJob. Raises ProviderError; ``outcome_unknown`` when the request may have arrived."""
        reply = self._post("SendJob", self._sendjob_body(request), sends_job=True)
        return self._accepted(reply)

    async def send_job_on_loop(self, request: SendRequest) -> Accepted:
        """SendJob from the event loop: the same bytes as ``send_job``, no worker thread.

        Only where ``calls_on_loop`` (no proxy). Building the envelope costs ~0.3 ms on the
        loop whatever the size of the documents, which are spliced in as it is sent.
        """
        body = self._sendjob_body(request)
        return self._accepted(await self._post_on_loop("SendJob", len(body), body.blocks(), sends_job=True))

    def _sendjob_body(self, request: SendRequest) -> _SplicedBody:
        params: dict[str, Any] = {
            "Account": self._account,
            "Password": self._password,
            "JobType": request.job_type.code,
            "Recipient": request.recipient_param(),
            "RecipientFile": request.recipient_file(),
            "SendText": request.text,
            "SendDateTime": request.send_at or SEND_IMMEDIATELY,
            "Options": request.options_string,
        }
        splices: list[tuple[bytes, Path, int]] = []
        for slot in (1, 2, 3):
            name, data = f"SendFilename{slot}", f"SendFile{slot}"
            if slot <= len(request.documents):
                document = request.documents[slot - 1]
                # A random placeholder cannot occur in the rest of the envelope by chance.
                marker = _secrets.token_bytes(18)
                params[name] = document.filename
                params[data] = marker
                try:
                    size = document.path.stat().st_size
                except OSError as exc:
                    raise DocumentUnreadable(
                        f"{document.filename} cannot be read ({exc.strerror or exc})") from None
                splices.append((pybase64.b64encode(marker), document.path, size))
            else:
                params[name] = ""
                params[data] = b""
        envelope = self._client.create_message(self._service, "SendJob", **params)
        wire = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return _SplicedBody(wire, splices)

    def _accepted(self, reply: Any) -> Accepted:
        self._check("SendJob", int(reply["return"]))
        return Accepted(
            faxde_job_id=int(reply["JobId"]),
            recipients_count=int(reply["RecipientsCount"] or 0),
            page_count=int(reply["PageCount"] or 0),
        )

    def job_status(self, faxde_job_id: int) -> JobStatusReport:
        return self._status_of(self._call("JobStatus", JobId=faxde_job_id))

    async def job_status_on_loop(self, faxde_job_id: int) -> JobStatusReport:
        return self._status_of(await self._call_on_loop("JobStatus", JobId=faxde_job_id))

    def cancel_job(self, faxde_job_id: int) -> None:
        self._check_plain("CancelJob", self._call("CancelJob", JobId=faxde_job_id))

    async def cancel_job_on_loop(self, faxde_job_id: int) -> None:
        self._check_plain("CancelJob", await self._call_on_loop("CancelJob", JobId=faxde_job_id))

    def request_received(self) -> InboundFax | None:
        """The oldest fax waiting on the server, or None when the inbox is empty."""
        return self._fax_of(self._call("RequestReceived"))

    async def request_received_on_loop(self) -> InboundFax | None:
        return self._fax_of(await self._call_on_loop("RequestReceived"))

    def delete_received(self, fax_id: int) -> None:
        self._check_plain("DeleteReceived", self._call("DeleteReceived", FaxId=fax_id))

    async def delete_received_on_loop(self, fax_id: int) -> None:
        self._check_plain("DeleteReceived", await self._call_on_loop("DeleteReceived", FaxId=fax_id))

    # -- answers -------------------------------------------------------------------------

    def _status_of(self, reply: Any) -> JobStatusReport:
        code = int(reply["return"])
        if faxde_codes.lookup("JobStatus", code).outcome is Outcome.PENDING:
            return JobStatusReport(finished=False)
        self._check("JobStatus", code)
        status_file = reply["StatusFile"] or b""
        return JobStatusReport(
            finished=True,
            send_result=_text(reply["SendResult"]),
            send_datetime=reply["SendDateTime"],
            remote_id=_text(reply["RemoteId"]),
            status_file=status_file,
            rows=parse_status_file(status_file),
        )

    def _fax_of(self, reply: Any) -> InboundFax | None:
        code = int(reply["return"])
        if faxde_codes.lookup("RequestReceived", code).outcome is Outcome.PENDING:
            return None
        self._check("RequestReceived", code)
        return InboundFax(
            fax_id=int(reply["FaxId"]),
            called_number=_text(reply["CalledNumber"]),
            received_at=reply["ReceiveDate"],
            originator=_text(reply["Originator"]),
            remote_id=_text(reply["RemoteId"]),
            pages=int(reply["Pages"] or 0),
            image=reply["FaxImage"] or b"",
        )

    def _check_plain(self, operation: str, reply: Any) -> None:
        self._check(operation, int(reply if isinstance(reply, int) else reply["return"]))

    # -- plumbing ------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        return self._post(operation, self._envelope(operation, params), sends_job=False)

    async def _call_on_loop(self, operation: str, **params: Any) -> Any:
        wire = self._envelope(operation, params)
        return await self._post_on_loop(operation, len(wire), _once(wire), sends_job=False)

    async def _post_on_loop(self, operation: str, length: int, blocks: AsyncGenerator[bytes, None],
                            *, sends_job: bool) -> Any:
        """``_post`` from the event loop, over LoopHTTP."""
        op = self._binding.get(operation)
        log.debug("%s → %s (%d bytes)", operation, self.endpoint, length)
        started = time.monotonic()
        try:
            answer = await self._loop_http.post(self._headers(op, length), blocks)
        except HTTPFailure as exc:  # only a SendJob can have arrived and cost money
            raise self._transport_error(operation, exc.what, exc, exc.maybe_sent and sends_job) from None
        log.debug("%s ← HTTP %d in %.0f ms", operation, answer.status_code, (time.monotonic() - started) * 1000)
        if len(answer.content) > _PARSE_ON_LOOP:
            # A received fax is one base64 text of up to tens of MB: lxml and the decoding
            # would hold the loop for as many tens of milliseconds.
            return await asyncio.to_thread(self._reply, operation, op, answer, sends_job=sends_job)
        return self._reply(operation, op, answer, sends_job=sends_job)

    def _envelope(self, operation: str, params: dict[str, Any]) -> bytes:
        params = {"Account": self._account, "Password": self._password, **params}
        envelope = self._client.create_message(self._service, operation, **params)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def _post(self, operation: str, body: bytes | _SplicedBody, *, sends_job: bool) -> Any:
        op = self._binding.get(operation)
        log.debug("%s → %s (%d bytes)", operation, self.endpoint, len(body))
        # Past this point a SendJob may reach FAX.de; failures below say whether it could have.
        started = time.monotonic()
        try:
            raw = self._http.urlopen(
                "POST", self.endpoint, body=body, headers=self._headers(op, len(body)),
                timeout=self._timeout, retries=False, redirect=False, preload_content=True,
            )
        except u3.ConnectTimeoutError as exc:  # NewConnectionError too: never connected
            refused = isinstance(exc, u3.NewConnectionError)
            raise self._transport_error(
                operation, "could not connect" + ("" if refused else " (timeout)"), exc, False
            )
        except u3.SSLError as exc:  # the TLS handshake failed: nothing was sent
            raise self._transport_error(operation, "TLS handshake failed", exc, False)
        except u3.ReadTimeoutError as exc:
            raise self._transport_error(
                operation, f"no answer within {self._timeouts[1]:g} s", exc, sends_job
            )
        except (u3.HTTPError, OSError) as exc:  # reset, closed, truncated: sent or not, unknown
            raise self._transport_error(
                operation, "connection dropped before the answer", exc, sends_job
            )
        response = _Reply(raw)
        log.debug("%s ← HTTP %d in %.0f ms", operation, response.status_code,
                  (time.monotonic() - started) * 1000)
        return self._reply(operation, op, response, sends_job=sends_job)

    def _headers(self, op: Any, length: int) -> dict[str, str]:
        return {
            "SOAPAction": f'"{op.soapaction}"',
            "Content-Type": "text/xml; charset=utf-8",
            # Always a length, never chunked transfer: the provider's Delphi server reads
            # Content-Length, and a streamed body would otherwise go chunked.
            "Content-Length": str(length),
            "User-Agent": f"faxbridge/{__version__}",
        }

    def _reply(self, operation: str, op: Any, response: Any, *, sends_job: bool) -> Any:
        """zeep's reading of an answer; what it cannot read becomes a ProviderError."""
        try:
            return self._binding.process_reply(self._client, op, response)
        except zeep.exceptions.Fault as exc:
            # The Delphi server answers an exception inside the operation with a SOAP fault;
            # FAX.de documents no fault that follows an accepted job, so it is retried.
            message = _text(exc.message)[:200]
            if self._password:
                message = message.replace(self._password, "***")
            raise ProviderError(
                operation, f"SOAP fault from the server: {message}", retryable=True
            ) from None
        except (zeep.exceptions.TransportError, zeep.exceptions.XMLSyntaxError) as exc:
            status = response.status_code
            # A gateway timeout means a proxy gave up waiting: FAX.de may have the job.
            unknown = sends_job and status in (502, 504)
            raise ProviderError(
                operation,
                f"HTTP {status} without a usable SOAP answer",
                retryable=True,
                outcome_unknown=unknown,
            ) from None
        except (zeep.exceptions.Error, ValueError, etree.XMLSyntaxError) as exc:
            raise ProviderError(
                operation,
                f"unreadable SOAP answer ({type(exc).__name__})",
                retryable=True,
                outcome_unknown=sends_job,
            ) from None

    def _transport_error(
        self, operation: str, what: str, exc: Exception, unknown: bool
    ) -> ProviderError:
        log.debug("%s transport failure: %s", operation, type(exc).__name__)
        return ProviderError(
            operation,
            f"{what} ({self.endpoint})" + ("; FAX.de may have received the job" if unknown else ""),
            retryable=True,
            outcome_unknown=unknown,
        )

    @staticmethod
    def _check(operation: str, code: int) -> None:
        entry = faxde_codes.lookup(operation, code)
        if entry.outcome is Outcome.OK:
            return
        raise ProviderError(
            operation,
            entry.sentence,
            code=code,
            name=entry.name,
            retryable=entry.outcome is Outcome.RETRYABLE,
            stops_account=entry.outcome is Outcome.ACCOUNT,
            action=entry.action,
        )


class _Reply:
    """The little of requests.Response that zeep's process_reply reads."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.status_code = raw.status
        self.content = raw.data
        self.headers = raw.headers
        self.encoding = None


def _proxy_for(endpoint: str) -> str | None:
    """The proxy from the environment for ``endpoint``, read once."""
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(urllib.parse.urlsplit(endpoint).scheme) or proxies.get("all")


def _ca_bundle() -> str:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where()


def _connection_pool(proxy: str | None, ca_bundle: str, pool_size: int) -> urllib3.PoolManager:
    """Keep-alive connections to FAX.de, through the proxy if there is one."""
    # A send per encoded block, not per 16 KiB (urllib3's default): each sendall gives up the
    # GIL, and taking it back behind busy threads cost a 100 KB SendJob 2 ms (bench.throughput).
    options: dict[str, Any] = {"maxsize": pool_size, "block": False, "ca_certs": ca_bundle,
                               "blocksize": _ENCODED_BLOCK}
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)
