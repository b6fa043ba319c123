"""Linux inotify(7), read on the event loop: each watched folder's file events, in order, at once.

The hotfolders used watchdog's inotify observer before. It holds every IN_MOVED_FROM back for 0.5 s
to pair it with an IN_MOVED_TO, and every event queued behind it waits as long: each claim (a rename
out of the folder) delayed the next dropped file by up to half a second (bench.drop_latency: p50
330 ms). Its pairing also searches the pending queue for every IN_MOVED_TO, so a burst of files
renamed in at once is quadratic (issue 7: 20 000 files → 24 s until the last event). A hotfolder
needs neither the pairing nor a thread: a move out of a folder is "gone", a move in is "moved_in".

So the inotify descriptor is non-blocking and registered with ``loop.add_reader``; each wake-up
reads what the kernel has queued and hands every event straight to the edge. Directory events are
not reported (sent/, failed/, .faxbridge/ live inside the folders), nor are attribute changes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Callable
from typing import Final

log = logging.getLogger("faxbridge.adapters.hotfolder")

# <sys/inotify.h>
IN_MODIFY: Final = 0x00000002
IN_CLOSE_WRITE: Final = 0x00000008
IN_MOVED_FROM: Final = 0x00000040
IN_MOVED_TO: Final = 0x00000080
IN_CREATE: Final = 0x00000100
IN_DELETE: Final = 0x00000200
IN_DELETE_SELF: Final = 0x00000400
IN_MOVE_SELF: Final = 0x00000800
IN_Q_OVERFLOW: Final = 0x00004000
IN_IGNORED: Final = 0x00008000
IN_ONLYDIR: Final = 0x01000000
IN_DONT_FOLLOW: Final = 0x02000000
IN_ISDIR: Final = 0x40000000
IN_NONBLOCK: Final = os.O_NONBLOCK
IN_CLOEXEC: Final = os.O_CLOEXEC

WATCH_MASK: Final = (
    IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW
)

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 256 * 1024  # bytes per read(2): several thousand events

# What a file event means to a hotfolder; the first bit that matches wins.
_KINDS: Final = (
    (IN_CLOSE_WRITE, "closed"),
    (IN_MOVED_TO, "moved_in"),
    (IN_MOVED_FROM, "gone"),
    (IN_DELETE, "gone"),
    (IN_CREATE, "created"),
    (IN_MODIFY, "modified"),
)

Deliver = Callable[[str, str, str], None]  # (kind, folder, name)


def kind_of(mask: int) -> str | None:
    """A file event's meaning for the watcher (created, modified, closed, moved_in, gone), or None."""
    if mask & IN_ISDIR:
        return None
    for bit, kind in _KINDS:
        if mask & bit:
            return kind
    return None


def parse(buffer: bytes) -> list[tuple[int, int, str]]:
    """The events in one read(2): (watch descriptor, mask, name; "" for the folder itself)."""
    events = []
    offset, end = 0, len(buffer)
    while offset + _HEADER.size <= end:
        wd, mask, _cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        raw = buffer[offset:offset + length].rstrip(b"\0")
        offset += length
        events.append((wd, mask, os.fsdecode(raw)))
    return events


class _Libc:
    """inotify_init1, inotify_add_watch and inotify_rm_watch (the stdlib has no binding)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


_libc: _Libc | None = None


def _os_error(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


class Inotify:
    """One inotify instance for all hotfolders of the daemon, read by the running loop.

    ``deliver(kind, folder, name)`` is called on the loop for every file event in a watched
    folder; ``overflow()`` when the kernel's queue overflowed and events were lost (the edge
    then looks at every folder again).
    """

    def __init__(self, deliver: Deliver, overflow: Callable[[], None]) -> None:
        global _libc
        if _libc is None:
            try:
                _libc = _Libc()
            except (OSError, AttributeError) as exc:  # not Linux, or no inotify in this libc
                raise OSError(errno.ENOSYS, f"inotify is not available: {exc}") from None
        self._libc = _libc
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self._fd = fd
        self._deliver = deliver
        self._overflow = overflow
        self._folders: dict[int, str] = {}  # watch descriptor → folder (as configured)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def watch(self, folder: str) -> int:
        """Start watching ``folder``; returns its watch descriptor. OSError: missing (ENOENT),
        the user's watch limit reached (ENOSPC), a file system without inotify, …"""
        wd = self._libc.add_watch(self._fd, os.fsencode(folder), WATCH_MASK)
        if wd < 0:
            raise _os_error(f"cannot watch {folder}", folder)
        self._folders[wd] = folder
        return int(wd)

    def unwatch(self, wd: int) -> None:
        if self._folders.pop(wd, None) is not None:
            self._libc.rm_watch(self._fd, wd)  # EINVAL when the kernel dropped it already: fine

    def alive(self, wd: int | None) -> bool:
        """Whether the watch still reports events (it ends when its folder is removed or moved)."""
        return wd is not None and wd in self._folders

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._folders.clear()

    def _read(self) -> None:
        # On the loop. Never raises: an exception here would only be logged by asyncio, and the
        # reader would stay registered; a bug in a handler must not stop the watching.
        while self._fd >= 0:
            try:
                buffer = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("hotfolders: reading inotify events failed: %s", exc.strerror or exc)
                return
            if not buffer:
                return
            self._dispatch(parse(buffer))

    def _dispatch(self, events: list[tuple[int, int, str]]) -> None:
        for wd, mask, name in events:
            try:
                if mask & IN_Q_OVERFLOW:
                    log.warning("hotfolders: the inotify queue overflowed; looking at every folder")
                    self._overflow()
                    continue
                folder = self._folders.get(wd)
                if folder is None:
                    continue
                if mask & IN_IGNORED or (not name and mask & (IN_DELETE_SELF | IN_MOVE_SELF)):
                    # The folder was removed or moved away: its watch is over (the rescan watches
                    # a folder of that name again once it is there).
                    self._folders.pop(wd, None)
                    if mask & IN_MOVE_SELF:
                        self._libc.rm_watch(self._fd, wd)
                    continue
                kind = kind_of(mask)
                if kind is not None and name:
                    self._deliver(kind, folder, name)
            except Exception:
                log.exception("hotfolders: handling a file-system event failed")
