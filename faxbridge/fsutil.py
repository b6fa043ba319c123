"""Durable files: write atomically (temporary name, fsync, rename, fsync the folder), fsync helpers, syncfs.

Everything that must survive a power cut (reports, spooled mail, inbound faxes, the outbox) is written
through these few functions, so the order of fsyncs and renames is decided in one place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from faxbridge.crashpoints import crash_point

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
