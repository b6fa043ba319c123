"""HTTP/1.1 POSTs on the event loop: keep-alive connections, a streamed body, the answer read whole.

The daemon calls FAX.de from here rather than from urllib3 in worker threads: a 100 KB SendJob
spent more CPU handing the GIL between the loop and four sender threads (futex calls, ~370 a
job) than on the HTTP itself, and the daemon as a whole is bound by one CPU (bench.throughput:
4.7 → 2.1–2.6 ms of CPU a job). Only what a SOAP client needs: POST with a Content-Length,
answers with a Content-Length, chunked or until close; no redirects, no proxies (with a proxy
configured, the client stays on urllib3).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from requests.structures import CaseInsensitiveDict

# An answer larger than this is refused rather than held in memory: a received fax of a few
# hundred pages is ~30 MB of base64; nothing FAX.de sends comes near.
MAX_ANSWER = 256 * 1024 * 1024
_MAX_HEADERS = 100
# A connection idle for longer is not reused: a server closing an idle connection just as a
# request goes out would leave that request's fate unknown (for a SendJob: "maybe sent"). Common
# servers keep idle connections 5 s (Apache) to 120 s (IIS); 4 s stays under both, and a new
# connection costs a handshake, never a fax.
IDLE_REUSE_SECONDS = 4.0


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
    headers: CaseInsensitiveDict[str]
    content: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        # The server closed it, or sent something nobody asked for: never write into that.
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and not self.reader._buffer  # type: ignore[attr-defined]  # no public way to ask
                and time.monotonic() - self.idle_since < IDLE_REUSE_SECONDS)

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its loop is closed and can no longer close it: close the socket
            sock = self.writer.transport.get_extra_info("socket")
            if sock is not None:
                sock._sock.close()  # noqa: SLF001 — asyncio's wrapper refuses close()


class LoopHTTP:
    """POSTs to one URL from the running event loop. Not thread-safe: one loop uses it."""

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float,
                 ca_bundle: str | None = None, keep: int = 8) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        self.host_header = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):  # IPv6 literal
            self.host_header = f"[{self.host}]" + ("" if default_port else f":{self.port}")
        self.tls = ssl.create_default_context(cafile=ca_bundle) if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._keep = keep
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.opened = 0  # connections opened so far (tests check reuse with it)

    async def post(self, headers: dict[str, str], body: AsyncGenerator[bytes, None]) -> Answer:
        """Send ``body`` (exactly ``headers['Content-Length']`` bytes) and read the answer."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # idle connections of an earlier loop cannot serve this one
            self._close_idle()
            self._loop = loop
        connection: _Connection | None = None
        reusable = False
        try:
            connection = await self._connection()
            answer, reusable = await self._exchange(connection, headers, body)
            return answer
        finally:
            await body.aclose()  # a body cut short closes its files now, not at collection
            if connection is not None and reusable and len(self._idle) < self._keep:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            elif connection is not None:
                connection.close()

    def close(self) -> None:
        """Close the idle connections; from any thread (a call in flight closes its own)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._close_idle()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._close_idle()
        else:
            try:
                loop.call_soon_threadsafe(self._close_idle)
            except RuntimeError:  # closed meanwhile
                self._close_idle()

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None, limit=1 << 16,
                )
        except ssl.SSLError as exc:
            raise HTTPFailure(f"TLS handshake failed ({exc.reason or type(exc).__name__})",
                              maybe_sent=False) from None
        except TimeoutError:
            raise HTTPFailure("could not connect (timeout)", maybe_sent=False) from None
        except OSError as exc:
            raise HTTPFailure(f"could not connect ({exc.strerror or type(exc).__name__})",
                              maybe_sent=False) from None
        self.opened += 1
        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, headers: dict[str, str],
                        body: AsyncGenerator[bytes, None]) -> tuple[Answer, bool]:
        reader, writer = connection.reader, connection.writer
        # Without Accept-Encoding a server may compress the answer (RFC 9110, 12.5.3).
        head = [f"POST {self.target} HTTP/1.1", f"Host: {self.host_header}", "Accept-Encoding: identity"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        loop = asyncio.get_running_loop()
        try:
            # One deadline, pushed back whenever bytes move either way: like a socket timeout,
            # a large document that keeps flowing never times out, a silent server does.
            async with asyncio.timeout(self.read_timeout) as deadline:
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                async for block in body:
                    writer.write(block)
                    await writer.drain()
                    deadline.reschedule(loop.time() + self.read_timeout)
                await writer.drain()
                return await _read_answer(reader, deadline, self.read_timeout)
        except TimeoutError:
            raise HTTPFailure(f"no answer within {self.read_timeout:g} s", maybe_sent=True) from None
        except (OSError, asyncio.IncompleteReadError):
            raise HTTPFailure("connection dropped before the answer", maybe_sent=True) from None
        except (asyncio.LimitOverrunError, ValueError, zlib.error) as exc:
            raise HTTPFailure(f"unreadable HTTP answer ({exc})", maybe_sent=True) from None


async def _read_answer(reader: asyncio.StreamReader, deadline: asyncio.Timeout,
                       read_timeout: float) -> tuple[Answer, bool]:
    loop = asyncio.get_running_loop()
    while True:
        status_line = await reader.readuntil(b"\r\n")
        version, _, rest = status_line.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError("not an HTTP answer")
        status = int(rest[:3])
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for _ in range(_MAX_HEADERS):
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ValueError("malformed header line")
            headers[name.strip()] = value.strip()
        else:
            raise ValueError("too many header lines")
        if status >= 200:
            break  # 1xx (100 Continue) precedes the real answer
    deadline.reschedule(loop.time() + read_timeout)
    connection = headers.get("Connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        content = await _read_chunked(reader, deadline, read_timeout)
    elif "Content-Length" in headers:
        content = await _read_exactly(reader, int(headers["Content-Length"]), deadline, read_timeout)
    else:  # the answer ends with the connection
        content = await _read_to_eof(reader, deadline, read_timeout)
        keep_alive = False
    encoding = headers.get("Content-Encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):  # asked for none, but a proxy may still
        content = zlib.decompress(content, 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
    elif encoding != "identity":
        raise ValueError(f"answer in an unknown encoding: {encoding}")
    return Answer(status, headers, content), keep_alive


async def _read_exactly(reader: asyncio.StreamReader, size: int, deadline: asyncio.Timeout,
                        read_timeout: float) -> bytes:
    if not 0 <= size <= MAX_ANSWER:
        raise ValueError(f"answer of {size} bytes")
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    left = size
    while left:
        part = await reader.read(min(left, 1 << 20))
        if not part:
            raise asyncio.IncompleteReadError(b"".join(parts), size)
        parts.append(part)
        left -= len(part)
        deadline.reschedule(loop.time() + read_timeout)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader, deadline: asyncio.Timeout,
                        read_timeout: float) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_ANSWER:
            raise ValueError("answer too large")
        parts.append(await _read_exactly(reader, size, deadline, read_timeout))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("malformed chunk")


async def _read_to_eof(reader: asyncio.StreamReader, deadline: asyncio.Timeout,
                       read_timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    total = 0
    while part := await reader.read(1 << 20):
        parts.append(part)
        total += len(part)
        if total > MAX_ANSWER:
            raise ValueError("answer too large")
        deadline.reschedule(loop.time() + read_timeout)
    return b"".join(parts)
