"""Status reports as CSV: reading FAX.de's StatusFile and writing faxbridge's report beside a document."""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import hashlib
import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from faxbridge.crashpoints import crash_point
from faxbridge.model import Job, StatusRow

# The StatusFile columns, in the order FAXDE-API.md gives them (JobStatus, StatusFile).
STATUS_COLUMNS = (
    "RECIPIENT", "JOBTYPE", "RESULT", "REMOTEID", "PAGES", "SENDDATETIME", "DURATION", "REFID",
)
REPORT_COLUMNS = STATUS_COLUMNS + ("FAXBRIDGE_JOB", "FAXDE_JOBID")

# A cell starting with one of these is a formula to Excel/LibreOffice (CSV injection, OWASP).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def parse_status_file(data: bytes) -> tuple[StatusRow, ...]:
    """The rows of a StatusFile; tolerant of BOMs, CRLF/LF, a missing header and Latin-1 text."""
    if not data:
        return ()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and [c.strip().upper() for c in rows[0]][:3] == list(STATUS_COLUMNS[:3]):
        header = [c.strip().upper() for c in rows[0]]
        rows = rows[1:]
    else:
        header = list(STATUS_COLUMNS)
    parsed = []
    for row in rows:
        cells = dict(zip(header, (c.strip() for c in row)))
        parsed.append(
            StatusRow(
                recipient=cells.get("RECIPIENT", ""),
                job_type=cells.get("JOBTYPE", ""),
                result=cells.get("RESULT", ""),
                remote_id=cells.get("REMOTEID", ""),
                pages=cells.get("PAGES", ""),
                send_datetime=cells.get("SENDDATETIME", ""),
                duration=cells.get("DURATION", ""),
                ref_id=cells.get("REFID", ""),
            )
        )
    return tuple(parsed)


def spreadsheet_safe(value: object) -> str:
    """A cell value that a spreadsheet shows as text, never evaluates.

    Phone numbers start with '+' legitimately, so a leading apostrophe is used only where the rest
    is not a plain number; anything else starting with a formula character is prefixed.
    """
    text = "" if value is None else str(value)
    text = "".join(ch if ch >= " " or ch == "\t" else " " for ch in text)
    if text.startswith(_FORMULA_PREFIXES):
        if text[0] == "+" and text[1:].replace(" ", "").isdigit():
            return text
        return "'" + text
    return text


def report_rows(job: Job, rows: Iterable[StatusRow]) -> list[list[str]]:
    out = []
    for row in rows:
        out.append(
            [
                spreadsheet_safe(v)
                for v in (
                    row.recipient, row.job_type, row.result, row.remote_id, row.pages,
                    row.send_datetime, row.duration, row.ref_id, job.id, job.faxde_job_id or "",
                )
            ]
        )
    return out


def render_report(job: Job, rows: Iterable[StatusRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(report_rows(job, rows))
    return buffer.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


TEMPORARY_SUFFIX = ".faxbridge-tmp"
_NAME_MAX = 255  # bytes in a file name on the usual file systems
# Two threads of this process never write one target at once (their temporary file is the same);
# a fixed set of locks, so that writing ever new names never grows a table.
_write_locks = tuple(threading.Lock() for _ in range(64))


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: a hidden name derived from it.

    The same name every time, so a write cut short by a crash leaves at most one temporary file per
    target, which the next write of that target reuses and renames away. (A random name would be
    left behind for good: nothing would ever know it belonged to anything.)
    """
    name = f".{path.name}{TEMPORARY_SUFFIX}"
    if len(os.fsencode(name)) > _NAME_MAX:
        name = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:32]}{TEMPORARY_SUFFIX}"
    return path.with_name(name)


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write to a temporary name in the same folder, fsync, rename, fsync the folder.

    ``sync=False``: no fsyncs; the caller makes the file durable (sync_file_system, or
    fsync_file + fsync_dir) before relying on it.
    """
    tmp = temporary_path(path)
    with _write_locks[hash(os.fspath(path)) % len(_write_locks)]:
        # 0600 as before (tempfile.mkstemp's mode): the folder's permissions decide who may read.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            crash_point("reports.during_write")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    if sync:
        fsync_dir(path.parent)


def discard(path: Path) -> None:
    """Remove a file written with write_atomically, and its temporary file if a crash left one."""
    path.unlink(missing_ok=True)
    temporary_path(path).unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_syncfs: Any = None


def sync_file_system(path: Path) -> bool:
    """syncfs(2) on the file system holding the folder ``path``: everything written to it so far,
    data and names, is on disk — one flush of the disk's cache where an fsync per file and folder
    costs one each. False where there is no syncfs (not Linux): the caller fsyncs instead.

    It also writes what other programs left unwritten on that file system: for the state dir
    and the hotfolders, which faxbridge owns, that is little.
    """
    global _syncfs
    if _syncfs is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _syncfs = libc.syncfs
            _syncfs.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs is False:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}", str(path))
    finally:
        os.close(fd)
    return True


def write_report(job: Job, rows: Iterable[StatusRow], path: Path) -> Path:
    write_atomically(path, render_report(job, rows))
    return path
