"""The FAX.de XML web service client: the five operations in, plain values out, on the event loop.

zeep reads the WSDL (from local files only), builds each envelope and parses each reply; nothing
zeep-shaped leaves this module, and zeep never does HTTP: every call goes through one aiohttp
session (faxde/http.py). Documents never pass through zeep's lxml tree: the envelope is
built with a short placeholder in each SendFile part and the base64 text is spliced in while the
request body is streamed from the files (the performance issue measured 5 MB of memory per MB of
document the other way).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import logging
import os
import secrets as _secrets
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pybase64
import zeep
import zeep.exceptions
from lxml import etree

from faxbridge import __version__
from faxbridge.faxde import codes as faxde_codes
from faxbridge.faxde.codes import Outcome
from faxbridge.faxde.http import Answer, HTTPFailure, LoopHTTP
from faxbridge.faxde.statusfile import parse_status_file
from faxbridge.crashpoints import crash_point
from faxbridge.errors import DocumentError, ProviderError
from faxbridge.model import Accepted, InboundFax, JobStatusReport, SendRequest

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
_READ_ON_LOOP = 1 << 20  # a SendJob's documents up to this size are read on the event loop
_PARSE_ON_LOOP = 256 * 1024  # answers up to this size are parsed on the event loop


def bundled_wsdl() -> Path:
    return Path(str(resources.files("faxbridge.faxde").joinpath("IntfXMLWS.wsdl")))


def _bundled_soap_encoding() -> bytes:
    return resources.files("faxbridge.faxde").joinpath("soap-encoding.xsd").read_bytes()


class _LocalFiles:
    """zeep's transport: reads the WSDL and its schemas from local files, never from the network.

    The WSDL is fetched and cached by ``resolve_wsdl``; the soap-encoding schema a Delphi WSDL
    refers to is bundled. zeep's own transport would pull in requests for this; the calls
    themselves go through aiohttp.
    """

    def load(self, url: str) -> bytes:
        if url.rstrip("/") == SOAP_ENCODING_URL.rstrip("/"):
            return _bundled_soap_encoding()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("", "file"):
            return Path(urllib.request.url2pathname(parts.path) if parts.scheme else url).read_bytes()
        raise ProviderError("setup", f"the WSDL refers to {url}; faxbridge reads only local schemas")


def resolve_wsdl(configured: str, cache_dir: Path | None, timeout: float) -> tuple[Path, str]:
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
    except (OSError, http.client.HTTPException, etree.XMLSyntaxError, ValueError) as exc:
        log.warning("cannot fetch WSDL (%s); using the bundled copy", type(exc).__name__)
        return bundled_wsdl(), "bundled copy"
    _store(cached, content)
    return cached, f"fetched from {configured.split('?')[0]}"


def _fetch_wsdl(url: str, timeout: float) -> bytes:
    """One GET (honouring the proxy and CA settings of the environment, as the calls do)."""
    context = tls_context() if url.startswith("https://") else None  # None: urllib's default
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        content: bytes = response.read()
    etree.fromstring(content)  # must at least be XML before we trust it
    return content


def _refresh_wsdl(url: str, cached: Path, timeout: float) -> None:
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


class _SplicedBody:
    """The SendJob request body: zeep's envelope with each placeholder replaced by a file's base64.

    The files are encoded block by block as the body is sent, so memory stays flat however large
    the documents are. ``len()`` is exact, so the request carries Content-Length.
    """

    def __init__(self, envelope: bytes, splices: list[tuple[bytes, Path, int]]) -> None:
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

    def __len__(self) -> int:
        return self._length

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, read and encoded as they are asked for."""
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
        """``chunks()`` for the event loop: what aiohttp streams as the request body.

        Documents of up to 1 MiB in all — most faxes — are read and encoded on the loop, a block
        (~0.1 ms) at a time between writes: they were hashed moments ago and come from the page
        cache, where a thread hop per block would cost more than the read. Larger ones are read
        and encoded in a worker thread, so that a slow disk never stalls the loop.
        """
        chunks = self.chunks()
        if sum(piece[1] for piece in self._pieces if isinstance(piece, tuple)) <= _READ_ON_LOOP:
            for chunk in chunks:
                yield chunk
            return
        loop = asyncio.get_running_loop()
        # Thread seam: a large document is read and encoded off the loop, block by block.
        while (block := await loop.run_in_executor(None, _next_or_none, chunks)) is not None:
            yield block


class DocumentUnreadable(DocumentError):
    """A document could not be read while its SendJob was being sent.

    Not an OSError on purpose: the HTTP layer takes OSError for a broken connection, which
    would leave the job "maybe sent" and re-send it for ever. The body was cut short, so
    FAX.de, reading Content-Length, never takes the job: it fails, for this reason.
    """


def _next_or_none(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class FaxDeClient:
    """FAX.de over SOAP, called from the event loop: one coroutine per operation.

    ``await close()`` on the loop that made the calls; a call after it opens new connections.
    """

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
        self._read_timeout = timeout
        # A read timeout of its own: a FAX.de that accepts connections and never answers must not
        # hold the start for the minute a 20 MB SendJob may take.
        wsdl_path, self.wsdl_source = resolve_wsdl(wsdl, cache_dir, connect_timeout + min(timeout, 15.0))
        # xml_huge_tree: lxml refuses text nodes over 10 MB by default, and a FaxImage is one
        # text node — a received fax over ~7.5 MB could never be fetched and would block the
        # inbox for good. Entities and DTDs stay forbidden (zeep's defaults).
        settings = zeep.Settings(xml_huge_tree=True)
        self._client = zeep.Client(str(wsdl_path), transport=_LocalFiles(), settings=settings)
        self._binding: Any = self._client.wsdl.bindings[BINDING]  # a zeep SoapBinding
        self.endpoint = endpoint or self._service_address()
        self._service = self._client.create_service(BINDING, self.endpoint)
        self._http = LoopHTTP(self.endpoint, connect_timeout=connect_timeout, read_timeout=timeout,
                              tls=tls_context(), proxy=proxy_for(self.endpoint), keep=pool_size)
        self.proxy = self._http.proxy  # without credentials: safe to show

    def __repr__(self) -> str:
        return f"FaxDeClient(account={self._account!r}, endpoint={self.endpoint!r}, password='***')"

    def _service_address(self) -> str:
        for service in self._client.wsdl.services.values():
            for port in service.ports.values():
                if port.binding.name == self._binding.name:
                    return str(port.binding_options["address"])
        raise ProviderError("setup", "the WSDL names no address for the FAX.de binding")

    async def close(self) -> None:
        await self._http.close()

    # -- the five operations -------------------------------------------------------------

    async def send_job(self, request: SendRequest) -> Accepted:
        """SendJob. Raises ProviderError; ``outcome_unknown`` when the request may have arrived.

        Building the envelope costs ~0.3 ms on the loop whatever the size of the documents,
        which are spliced in as it is sent.
        """
        body = self._sendjob_body(request)
        reply = await self._post("SendJob", len(body), body.blocks(), sends_job=True)
        return self._accepted(reply)

    async def job_status(self, faxde_job_id: int) -> JobStatusReport:
        return self._status_of(await self._call("JobStatus", JobId=faxde_job_id))

    async def cancel_job(self, faxde_job_id: int) -> None:
        self._check_plain("CancelJob", await self._call("CancelJob", JobId=faxde_job_id))

    async def request_received(self) -> InboundFax | None:
        """The oldest fax waiting on the server, or None when the inbox is empty."""
        return self._fax_of(await self._call("RequestReceived"))

    async def delete_received(self, fax_id: int) -> None:
        self._check_plain("DeleteReceived", await self._call("DeleteReceived", FaxId=fax_id))

    # -- envelopes -----------------------------------------------------------------------

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

    def _envelope(self, operation: str, params: dict[str, Any]) -> bytes:
        params = {"Account": self._account, "Password": self._password, **params}
        envelope = self._client.create_message(self._service, operation, **params)
        return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))

    # -- answers -------------------------------------------------------------------------

    def _accepted(self, reply: Any) -> Accepted:
        self._check("SendJob", int(reply["return"]))
        return Accepted(
            faxde_job_id=int(reply["JobId"]),
            recipients_count=int(reply["RecipientsCount"] or 0),
            page_count=int(reply["PageCount"] or 0),
        )

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

    async def _call(self, operation: str, **params: Any) -> Any:
        wire = self._envelope(operation, params)
        return await self._post(operation, len(wire), wire, sends_job=False)

    async def _post(self, operation: str, length: int, body: bytes | AsyncGenerator[bytes, None],
                    *, sends_job: bool) -> Any:
        """POST one envelope and read zeep's reading of the answer."""
        op = self._binding.get(operation)
        log.debug("%s → %s (%d bytes)", operation, self.endpoint, length)
        # Past this point a SendJob may reach FAX.de; failures below say whether it could have.
        started = time.monotonic()
        try:
            answer = await self._http.post(self._headers(op, length), body)
        except HTTPFailure as exc:  # only a SendJob can have arrived and cost money
            raise self._transport_error(operation, exc.what, exc, exc.maybe_sent and sends_job) from None
        log.debug("%s ← HTTP %d in %.0f ms", operation, answer.status_code, (time.monotonic() - started) * 1000)
        if len(answer.content) > _PARSE_ON_LOOP:
            # A received fax is one base64 text of up to tens of MB: lxml and the decoding
            # would hold the loop for as many tens of milliseconds.
            # Thread seam: parsing a large answer.
            return await asyncio.to_thread(self._reply, operation, op, answer, sends_job=sends_job)
        return self._reply(operation, op, answer, sends_job=sends_job)

    def _headers(self, op: Any, length: int) -> dict[str, str]:
        return {
            "SOAPAction": f'"{op.soapaction}"',
            "Content-Type": "text/xml; charset=utf-8",
            # Always a length, never chunked transfer: the provider's Delphi server reads
            # Content-Length, and a streamed body would otherwise go chunked.
            "Content-Length": str(length),
            "User-Agent": f"faxbridge/{__version__}",
        }

    def _reply(self, operation: str, op: Any, response: Answer, *, sends_job: bool) -> Any:
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
        except (zeep.exceptions.TransportError, zeep.exceptions.XMLSyntaxError):
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


def proxy_for(endpoint: str) -> str | None:
    """The proxy the environment names for ``endpoint`` (``https_proxy``, ``no_proxy``), read once."""
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(urllib.parse.urlsplit(endpoint).scheme) or proxies.get("all")


def tls_context() -> ssl.SSLContext | None:
    """A company CA the environment names, or None: the system's CAs, in the default context
    (aiohttp's, shared: each context holds its own copy of the CA store, ~2 MB)."""
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile) if cafile else None
