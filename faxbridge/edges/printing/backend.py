"""The CUPS backend (backend(7)) CUPS runs for each job on a faxbridge queue.

It streams the document to the daemon's socket (named in the queue's device URI,
``faxbridge:/run/faxbridge/print.sock``) and exits 0 only once the daemon answers that the job is
journaled. Daemon down (no socket, connection refused or cut) → CUPS_BACKEND_RETRY: CUPS keeps
the job and tries again (JobRetryInterval). A job the daemon refuses (no recipient, a premium
number …) → CUPS_BACKEND_CANCEL with the reason as the job's state message; the document is in
the print failed/ folder by then. Standard library only: CUPS starts it for every job.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
from typing import BinaryIO

from faxbridge.edges.printing.wire import OK, REFUSED, PrintHeader, Reply

SCHEME = "faxbridge"
# backend(7) exit codes
CUPS_BACKEND_OK = 0
CUPS_BACKEND_FAILED = 1
CUPS_BACKEND_CANCEL = 5
CUPS_BACKEND_RETRY = 6

# How long the daemon may take to check and journal a job (a 200-page serial fax is rendered
# page by page before the answer).
REPLY_TIMEOUT = 600.0
_CHUNK = 1 << 16


def socket_path(device_uri: str) -> str:
    """faxbridge:/run/faxbridge/print.sock (or faxbridge:///run/…) → /run/faxbridge/print.sock"""
    parsed = urllib.parse.urlsplit(device_uri)
    if parsed.scheme != SCHEME or not parsed.path.startswith("/"):
        raise ValueError(f"expected a device URI like {SCHEME}:/run/faxbridge/print.sock; got {device_uri!r}")
    return urllib.parse.unquote(parsed.path)


def hand_over(path: str, header: PrintHeader, document: BinaryIO, timeout: float = REPLY_TIMEOUT) -> Reply:
    """Send one job to the daemon at ``path``; its answer. OSError: the daemon is not there, or
    went away before answering (the job is not journaled)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(header.encode())
        while chunk := document.read(_CHUNK):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while not answer.endswith(b"\n"):
            data = conn.recv(4096)
            if not data:
                raise ConnectionResetError("faxbridge closed the connection without an answer")
            answer += data
            if len(answer) > 65536:
                raise ConnectionError("faxbridge's answer is too long")
    try:
        return Reply.decode(answer)
    except ValueError as exc:
        raise ConnectionError(str(exc)) from None


def _say(level: str, message: str) -> None:
    # CUPS reads "LEVEL: text" lines on stderr; ERROR/INFO lines become the job's state message.
    print(f"{level}: {' '.join(message.split())}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    if len(argv) == 1:  # device discovery (lpinfo -v)
        print(f'network {SCHEME} "Unknown" "faxbridge (fax through FAX.de)"')
        return CUPS_BACKEND_OK
    if len(argv) not in (6, 7):
        _say("ERROR", f"usage: {SCHEME} job-id user title copies options [file]")
        return CUPS_BACKEND_FAILED
    job, user, title, copies, options = argv[1:6]
    try:
        path = socket_path(os.environ.get("DEVICE_URI", ""))
    except ValueError as exc:
        _say("ERROR", str(exc))
        return CUPS_BACKEND_FAILED
    header = PrintHeader(
        job=job, user=user, title=title, copies=copies, options=options,
        printer=os.environ.get("PRINTER", ""),
        content_type=os.environ.get("FINAL_CONTENT_TYPE") or os.environ.get("CONTENT_TYPE", ""),
    )
    try:
        with (open(argv[6], "rb") if len(argv) == 7 else sys.stdin.buffer) as document:
            reply = hand_over(path, header, document)
    except OSError as exc:
        _say("ERROR", f"faxbridge is not taking print jobs ({exc.strerror or exc}); CUPS will try again")
        return CUPS_BACKEND_RETRY
    if reply.status == OK:
        _say("INFO", reply.message or "handed to faxbridge")
        return CUPS_BACKEND_OK
    _say("ERROR", reply.message)
    return CUPS_BACKEND_CANCEL if reply.status == REFUSED else CUPS_BACKEND_RETRY


if __name__ == "__main__":
    raise SystemExit(main())
