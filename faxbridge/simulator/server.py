"""The HTTP edge of the simulator: SOAP POSTs, the WSDL, the admin endpoints, and injected faults.

Stdlib ThreadingHTTPServer speaking HTTP/1.1 with keep-alive (zeep reuses connections through a
requests.Session). Requests are read whole by Content-Length and parsed once, so a 50 MB document costs
linear time. The service decides; this module only translates and applies the fault plan.

Admin endpoints (JSON; no authentication — the simulator binds to loopback by default):
  GET  /admin/calls[?operation=SendJob]   the call record (bytes as sha256/size, password as ***)
  GET  /admin/jobs, /admin/inbox          the simulator's jobs and inbound faxes
  GET  /admin/faults, /admin/settings     the fault plan and settings in force
  POST /admin/faults    {"seed": 1, "faults": [{"kind": "drop_after", "operation": "SendJob", "calls": [1]}]}
  POST /admin/reset[?state=1]             clear faults, record and per-number rules (and jobs + inbox)
  POST /admin/inbox?originator=…          body: a TIFF; metadata from the query or X-Called-Number,
                                          X-Originator, X-Remote-Id, X-Pages, X-Received-At headers
  POST /admin/results   {"+4940123456": "Busy", "+4940999": {"result": "OK", "remote_id": "ACME"}}
  POST /admin/settings  {"polls_until_done": 3, "account_state": "locked", …}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import selectors
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from faxbridge.model import InboundFax

from . import soap
from .faults import Fault, FaultKind, FaultPlan
from .record import Record, Secret
from .service import Reply, Service
from .settings import utc_now

log = logging.getLogger(__name__)

SOAP_PATH = "/soap/IIntfXMLWS"
WSDL_PATH = "/wsdl"
MAX_BODY = 256 * 1024 * 1024  # three 50 MB documents in base64 fit; anything larger is refused (413)
_XML = 'text/xml; charset="utf-8"'
_JSON = "application/json"


class SimulatorHTTPServer(ThreadingHTTPServer):
    """Serves one Service; remembers open connections so stop() can close idle keep-alive ones."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in an injected delay
    allow_reuse_address = True  # a restarted simulator takes its old port at once

    def __init__(self, address: tuple[str, int], service: Service, plan: FaultPlan, record: Record) -> None:
        self.service = service
        self.plan = plan
        self.record = record
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until_stopped(self) -> None:
        """serve_forever without its polling: stop() wakes the loop at once through a socket pair.

        (serve_forever notices shutdown() only at its next poll, which cost every test its poll interval.)
        """
        # Non-blocking accept: a client that gave up between select and accept must not stall the loop.
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self and not self.stopping.is_set():
                        self._accept()

    def _accept(self) -> None:
        """Accept one connection and hand it to a new thread (what serve_forever does per ready socket)."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # nothing to accept after all
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self) -> None:
        """Make serve_until_stopped return and cut open connections (the caller joins the thread)."""
        self.stopping.set()
        self._wake_writer.send(b"\0")
        self.close_connections()

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)
        if open_ and self.stopping.is_set():
            # Accepted just as stop() swept the connections: cut it too.
            connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting its connection is routine (timeouts, closed pools); anything else is a bug."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.error("error serving %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Cut every open connection, so no client keeps talking to a stopped simulator over keep-alive."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faxbridge-simulator"
    timeout = 120  # an idle keep-alive connection ends after this; a handler thread never lingers forever
    server: SimulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle and the client's delayed ACK
        # add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client is gone; nothing left to flush
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (never bodies, so never the password), and at DEBUG: tests make thousands.
        log.debug("%s %s", self.address_string(), format % args)

    # ---- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == WSDL_PATH or "wsdl" in url.query.lower():
            self._send(200, soap.wsdl_for(self._own_url(SOAP_PATH)), _XML)
        elif url.path == "/admin/calls":
            operation = query.get("operation", [None])[0]
            self._send_json([c.to_json() for c in self.server.record.calls(operation)])
        elif url.path == "/admin/jobs":
            self._send_json([job.to_json() for job in self.server.service.jobs()])
        elif url.path == "/admin/inbox":
            self._send_json([_fax_json(fax) for fax in self.server.service.inbox()])
        elif url.path == "/admin/faults":
            self._send_json(self.server.plan.to_json())
        elif url.path == "/admin/settings":
            self._send_json(self.server.service.settings.to_json())
        elif url.path == "/":
            text = f"FAX.de simulator. SOAP: {self._own_url(SOAP_PATH)}  WSDL: {self._own_url(WSDL_PATH)}\n"
            self._send(200, text.encode("utf-8"), "text/plain; charset=utf-8")
        else:
            self._send(404, b"Not found\n", "text/plain")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path.startswith("/admin/"):
            self._admin(path, body)
        else:
            # Any other path is the SOAP endpoint: the real server answers at /xmlws.exe/soap/IIntfXMLWS,
            # clients configured with either address must work.
            self._soap(body)

    # ---- SOAP ---------------------------------------------------------------------------------

    def _soap(self, body: bytes) -> None:
        started = utc_now()
        try:
            operation, params = soap.parse_request(body)
        except soap.SoapError as exc:
            self._remember("", {}, None, {}, 500, "bad_request", False, started)
            self._send(500, soap.build_fault(str(exc), exc.code), _XML)
            return
        if "Password" in params:
            params["Password"] = Secret(params["Password"])
        decision = self.server.plan.decide(operation)
        fault = decision.fault
        kind = fault.kind if fault is not None else None

        reply: Reply | None = None
        if kind in (None, FaultKind.DROP_AFTER):
            try:
                reply = self.server.service.call(operation, params)
            except Exception as exc:  # a bug in the simulator: tell the client as a Delphi server would
                log.exception("%s failed inside the simulator", operation)
                self._wait(decision.delay)
                self._remember(operation, params, None, {}, 500, "error", False, started)
                self._send(500, soap.build_fault(f"{type(exc).__name__}: {exc}"), _XML)
                return
        elif kind is FaultKind.RESULT:
            assert fault is not None
            reply = Reply(fault.code)

        self._wait(decision.delay)
        processed = kind in (None, FaultKind.DROP_AFTER)
        fault_name = kind.value if kind is not None else ("delay" if decision.delay else None)
        result = reply.code if reply is not None else None
        outs = reply.outs if reply is not None else {}
        # Always record before answering: a client that reads the record right after its call must find it.
        if kind in (FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER):
            self._remember(operation, params, result, outs, None, fault_name, processed, started)
            self._drop()
            return
        if kind is FaultKind.HTTP_500:
            status, answer, content_type = 500, b"Internal Server Error\n", "text/plain"
        elif kind is FaultKind.SOAP_FAULT:
            assert fault is not None
            status, answer, content_type = 500, soap.build_fault(fault.message), _XML
        else:
            assert reply is not None
            status, answer, content_type = 200, soap.build_response(operation, reply.code, reply.outs), _XML
        self._remember(operation, params, result, outs, status, fault_name, processed, started)
        self._send(status, answer, content_type)

    def _remember(
        self, operation: str, params: dict[str, Any], result: int | None, outs: dict[str, Any],
        status: int | None, fault: str | None, processed: bool, started: dt.datetime,
    ) -> None:
        self.server.record.append(operation=operation, params=params, result=result, outs=outs,
                                  http_status=status, fault=fault, processed=processed,
                                  started_at=started, finished_at=utc_now())

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.server.stopping.wait(seconds)  # returns early when the simulator stops

    def _drop(self) -> None:
        """Close the connection without a byte of answer: the client sees the server disappear."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- admin --------------------------------------------------------------------------------

    def _admin(self, path: str, body: bytes) -> None:
        server = self.server
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        try:
            if path == "/admin/faults":
                data = _json_body(body)
                rules = data.get("faults", []) if isinstance(data, dict) else data
                seed = data.get("seed") if isinstance(data, dict) else None
                server.plan.replace([Fault.from_json(rule) for rule in rules], seed)
                self._send_json(server.plan.to_json())
            elif path == "/admin/reset":
                server.plan.replace([])
                server.record.clear()
                server.service.clear_rules()
                if query.get("state") in ("1", "true", "yes"):
                    server.service.reset_state()
                self._send_json({"reset": True})
            elif path == "/admin/inbox":
                self._send_json(_fax_json(server.service.add_inbound(body, **self._inbound_meta(query))))
            elif path == "/admin/results":
                for number, value in _json_body(body).items():
                    if isinstance(value, str):
                        server.service.set_result(number, value)
                    else:
                        server.service.set_result(number, value["result"], value.get("remote_id"))
                self._send_json({"ok": True})
            elif path == "/admin/settings":
                server.service.settings.update(_json_body(body))
                self._send_json(server.service.settings.to_json())
            else:
                self._send(404, b"Not found\n", "text/plain")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._send_json({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    def _inbound_meta(self, query: dict[str, str]) -> dict[str, Any]:
        def value(name: str, header: str) -> str | None:
            return query.get(name, self.headers.get(header))

        meta: dict[str, Any] = {
            "called_number": value("called_number", "X-Called-Number"),
            "originator": value("originator", "X-Originator") or "",
            "remote_id": value("remote_id", "X-Remote-Id") or "",
        }
        pages = value("pages", "X-Pages")
        meta["pages"] = int(pages) if pages else None
        received = value("received_at", "X-Received-At")
        meta["received_at"] = soap.parse_datetime("received_at", received) if received else None
        return meta

    # ---- plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The whole request body, or None after an error answer (411, 413, 400)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            self._send(411, b"Length Required\n", "text/plain")
            return None
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            self._send(400, b"Bad Content-Length\n", "text/plain")
            return None
        if size > MAX_BODY:
            self.close_connection = True
            self._send(413, b"Request Entity Too Large\n", "text/plain")
            return None
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True  # the client went away mid-request
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                self._send(400, b"Bad chunk\n", "text/plain")
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)  # joined once: linear in the body size
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                self._send(413, b"Request Entity Too Large\n", "text/plain")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _own_url(self, path: str) -> str:
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        return f"http://{host}{path}"

    def _send_json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, indent=1, default=str).encode("utf-8"), _JSON)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up (e.g. its timeout ran out during an injected delay).
            self.close_connection = True


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


def _fax_json(fax: InboundFax) -> dict[str, Any]:
    return {
        "fax_id": fax.fax_id,
        "called_number": fax.called_number,
        "received_at": fax.received_at.isoformat() if fax.received_at else None,
        "originator": fax.originator,
        "remote_id": fax.remote_id,
        "pages": fax.pages,
        "size": len(fax.image),
        "sha256": hashlib.sha256(fax.image).hexdigest(),
    }
