"""FAX.de's HTTP on the event loop, through aiohttp: POSTs to one URL, answers as plain values.

One aiohttp session per event loop keeps connections alive between calls, streams a request body
from an async iterable (the SendJob splice) with an exact Content-Length, goes through an HTTP
proxy where the environment names one, and turns every failure into ``HTTPFailure`` saying
whether the server may have the request — the question a SendJob's "maybe sent" hangs on.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp

# An answer larger than this is refused rather than held in memory: a received fax of a few
# hundred pages is ~30 MB of base64; nothing FAX.de sends comes near.
MAX_ANSWER = 256 * 1024 * 1024
# A connection idle for longer is not reused: a server closing an idle connection just as a
# request goes out would leave that request's fate unknown (for a SendJob: "maybe sent"). Common
# servers keep idle connections 5 s (Apache) to 120 s (IIS); 4 s stays under both, and a new
# connection costs a handshake, never a fax.
IDLE_REUSE_SECONDS = 4.0
# Content codings an answer may come in though none was asked for (a proxy may compress), with
# zlib's window bits for each; anything else is refused rather than handed to zeep as XML.
_DECODED = {"identity": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class HTTPFailure(Exception):
    """A POST that got no complete answer. ``maybe_sent``: the server may have the request."""

    def __init__(self, what: str, *, maybe_sent: bool) -> None:
        super().__init__(what)
        self.what = what
        self.maybe_sent = maybe_sent


@dataclass
class Answer:
    """The little of an HTTP response that zeep's ``process_reply`` reads."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    encoding: str | None = None


class LoopHTTP:
    """POSTs to one URL from the running event loop. Not thread-safe: one loop uses it at a time.

    ``close()`` must be awaited on the loop that made the calls (as with any aiohttp session);
    the next call after it opens a new session.
    """

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None = None, proxy: str | None = None, keep: int = 8) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.url = url
        self.proxy, credentials = _proxy_and_credentials(proxy)
        # The proxy reads its credentials from the CONNECT request of an HTTPS tunnel, and from
        # the request itself for plain HTTP (aiohttp sends proxy_headers with CONNECT only).
        self._tunnel_headers = credentials if parts.scheme == "https" else None
        self._request_headers = credentials if parts.scheme == "http" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls = tls
        self._keep = keep
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.opened = 0  # connections opened so far (tests check reuse with it)

    async def post(self, headers: dict[str, str], body: bytes | AsyncIterable[bytes]) -> Answer:
        """Send ``body`` (exactly ``headers['Content-Length']`` bytes) and read the answer whole."""
        session = self._session_on_this_loop()
        if self._request_headers:
            headers = {**headers, **self._request_headers}
        watched = _Watched(body, self.read_timeout) if not isinstance(body, bytes) else None
        try:
            # The write side's deadline: aiohttp times only the answer (sock_read, pushed back
            # whenever bytes arrive), so a server that stops taking a large body would hold the
            # call for ever. ``_Watched`` pushes this one back whenever a block has gone out.
            async with asyncio.timeout(None) as deadline:
                if watched is not None:
                    watched.deadline = deadline
                async with session.post(self.url, data=watched if watched is not None else body,
                                        headers=headers, proxy=self.proxy, proxy_headers=self._tunnel_headers,
                                        allow_redirects=False) as response:
                    try:
                        return await _read_answer(response)
                    except HTTPFailure:
                        # A connection that carried a broken answer is not reused. It may be
                        # back in the pool already (an answer read to its end releases it, and
                        # a small one is read with its head): close its transport, which the
                        # pool then drops.
                        protocol = getattr(response, "_protocol", None)
                        response.close()
                        if protocol is not None:
                            protocol.close()
                        raise
        except HTTPFailure:
            raise
        except BaseException as exc:
            if watched is not None and watched.failure is not None:
                raise watched.failure from None  # the body itself failed: its reason, not the socket's
            failure = _classify(exc, self.read_timeout)
            if failure is None:
                raise
            raise failure from None
        finally:
            if watched is not None:
                await watched.close()

    async def close(self) -> None:
        """Close the pooled connections (on the loop that used them)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None:
            await session.close()

    def _session_on_this_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is loop and not self._session.closed:
            return self._session
        if self._session is not None:  # left open on an earlier loop: its sockets cannot serve this one
            _abandon(self._session)
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(self._count_connection)
        connector = aiohttp.TCPConnector(
            limit=self._keep, keepalive_timeout=IDLE_REUSE_SECONDS,
            ssl=self._tls if self._tls is not None else True,  # True: aiohttp's verified default
        )
        self._session = aiohttp.ClientSession(
            connector=connector, trace_configs=[tracing],
            # FAX.de's SOAP service needs no cookies: none are kept.
            cookie_jar=aiohttp.DummyCookieJar(),
            # connect: opening the connection (TCP and TLS, or the proxy's tunnel); sock_read:
            # silence while the answer is awaited and read. No total: a 20 MB SendJob that keeps
            # flowing may take minutes.
            timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.read_timeout),
            # Without Accept-Encoding a server may compress the answer (RFC 9110, 12.5.3). What
            # comes compressed anyway is decoded in _read_answer, where an unknown coding is
            # refused by name (aiohttp's decoder would need Brotli for one of them).
            headers={"Accept-Encoding": "identity"}, auto_decompress=False,
        )
        self._loop = loop
        return self._session

    async def _count_connection(self, session: aiohttp.ClientSession, context: SimpleNamespace,
                                params: aiohttp.TraceConnectionCreateEndParams) -> None:
        self.opened += 1


class _Watched:
    """A request body passed through block by block; each block sent pushes the deadline back.

    Remembers an exception the body raised (a document that changed while it was read), which
    aiohttp would otherwise report as a broken connection.
    """

    def __init__(self, body: AsyncIterable[bytes], read_timeout: float) -> None:
        self._body = body
        self._read_timeout = read_timeout
        self.deadline: asyncio.Timeout | None = None
        self.failure: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            async for block in self._body:
                if self.deadline is not None:
                    self.deadline.reschedule(loop.time() + self._read_timeout)
                yield block
        except Exception as exc:
            self.failure = exc
            raise
        if self.deadline is not None:  # all written: aiohttp's sock_read times the answer
            self.deadline.reschedule(None)

    async def close(self) -> None:
        # A body cut short closes its files now, not at garbage collection.
        closing = getattr(self._body, "aclose", None)
        if closing is not None:
            await closing()


async def _read_answer(response: aiohttp.ClientResponse) -> Answer:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in _DECODED:
        raise HTTPFailure(f"unreadable HTTP answer (unknown encoding: {encoding})", maybe_sent=True)
    if response.content_length is not None and response.content_length > MAX_ANSWER:
        raise HTTPFailure(f"unreadable HTTP answer (answer of {response.content_length} bytes)",
                          maybe_sent=True)
    parts: list[bytes] = []
    total = 0
    async for part in response.content.iter_any():
        total += len(part)
        if total > MAX_ANSWER:
            raise HTTPFailure("unreadable HTTP answer (answer too large)", maybe_sent=True)
        parts.append(part)
    content = b"".join(parts)
    if _DECODED[encoding]:
        try:
            content = zlib.decompress(content, _DECODED[encoding])
        except zlib.error as exc:
            raise HTTPFailure(f"unreadable HTTP answer ({exc})", maybe_sent=True) from None
    return Answer(response.status, response.headers, content)


def _classify(exc: BaseException, read_timeout: float) -> HTTPFailure | None:
    """What a failed POST means: could the server have the request? None: not a transport failure."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return HTTPFailure("could not connect (timeout)", maybe_sent=False)
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        reason = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
        return HTTPFailure(f"TLS handshake failed ({getattr(reason, 'reason', None) or type(reason).__name__})",
                           maybe_sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, no such host, the proxy too
        return HTTPFailure(f"could not connect ({exc.os_error.strerror or type(exc.os_error).__name__})",
                           maybe_sent=False)
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel: nothing went on
        return HTTPFailure(f"could not connect (the proxy answered HTTP {exc.status})", maybe_sent=False)
    if isinstance(exc, TimeoutError):  # aiohttp's sock_read, or the write deadline above
        return HTTPFailure(f"no answer within {read_timeout:g} s", maybe_sent=True)
    if isinstance(exc, aiohttp.ClientResponseError):  # not HTTP at all, or malformed
        return HTTPFailure(f"unreadable HTTP answer ({exc.message})", maybe_sent=True)
    if isinstance(exc, (aiohttp.ClientError, OSError)):  # reset, closed, truncated
        return HTTPFailure("connection dropped before the answer", maybe_sent=True)
    return None


def _proxy_and_credentials(proxy: str | None) -> tuple[str | None, dict[str, str] | None]:
    """The proxy's URL without credentials, and the header that carries them (``http://user:pw@host``)."""
    if proxy is None:
        return None, None
    parts = urllib.parse.urlsplit(proxy)
    if parts.username is None:
        return proxy, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    # RFC 7617 Basic, UTF-8 (aiohttp's BasicAuth is deprecated, its successor too new to require).
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"Proxy-Authorization": header}


def _abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session whose loop has ended: close what can still be closed, quietly."""
    connector = session.connector
    if connector is None:
        return
    try:
        connector._close(abort_ssl=True)  # the public close() needs its (gone) loop
    except RuntimeError:  # "Event loop is closed": the transports go with it
        pass
