"""File events of one hotfolder from watchdog, handed to the event loop as (kind, name).

Three ways to watch a folder, all watchdog's:
* Linux: its inotify layer (``watchdog.observers.inotify_c.Inotify``) read by a thread of our own.
  Not its ``InotifyObserver``: that one's ``InotifyBuffer`` holds every IN_MOVED_FROM back 0.5 s
  to pair it with an IN_MOVED_TO, and the events behind it wait too; every claim is such a move,
  so a file dropped after a claim was seen up to half a second late (issue 7). A hotfolder needs
  no pairing: a move out is "gone", a move in is "moved_in". inotify reports closes, so a file
  counts as complete when its writer closes it.
* Network shares (``watch: poll``): its ``PollingObserver``, listing the folder every poll interval.
* Elsewhere (macOS, BSD, Windows): its native observer (FSEvents, kqueue, ReadDirectoryChangesW).
With the last two, no close is reported: the watcher judges a file complete by looking (unchanged
over the settle time, in polling mode at least one poll interval).

Thread seam: watchdog's threads only hand events to the loop with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

log = logging.getLogger("faxbridge.edges.hotfolder")

# Called on the loop for every file event: kind is created, modified, closed, moved_in or gone.
Deliver = Callable[[str, str], None]
# Called on the loop when events may have been lost (the kernel's queue overflowed).
Lost = Callable[[], None]


class FolderWatch(Protocol):
    """One folder being watched; ``closes`` says whether writers' closes are reported."""

    closes: bool
    description: str

    def alive(self) -> bool:
        """Whether events still come (a watch ends when its folder is removed or moved)."""
        ...

    def close(self) -> None:
        """Stop watching (on the loop; does not wait for the watching thread)."""
        ...

    def join(self, timeout: float) -> None:
        """Wait for the watching thread to end (in a worker thread, after close)."""
        ...


def inotify_available() -> bool:
    return sys.platform.startswith("linux")


def watch_events(folder: str, loop: asyncio.AbstractEventLoop, deliver: Deliver, lost: Lost) -> FolderWatch:
    """The platform's own file events for ``folder``. OSError: it cannot be watched so (missing,
    inotify's watch or instance limit reached, …); the caller may poll instead."""
    if inotify_available():
        return InotifyWatch(folder, loop, deliver, lost)
    from watchdog.observers import Observer

    return ObserverWatch(Observer(), folder, loop, deliver, "native events")


def watch_by_polling(folder: str, interval: float, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> FolderWatch:
    """Looking at ``folder`` every ``interval`` seconds (network shares, where no event comes)."""
    from watchdog.observers.polling import PollingObserver

    return ObserverWatch(PollingObserver(timeout=interval), folder, loop, deliver, f"polling every {interval:g} s")


# -- Linux: watchdog's inotify layer, read by a thread -------------------------------------------

# Bytes per read(2). inotify's queue holds 16 384 events by default (fs.inotify.max_queued_events);
# an event of a file in the folder takes at least 32 bytes (struct inotify_event and its name,
# padded to 16), so whenever the queue overflowed the next read fills this buffer (see _read_all).
_READ_SIZE: Final = 256 * 1024
_MAX_EVENT: Final = 16 + 256  # struct inotify_event and the longest name (NAME_MAX + NUL, padded)


def inotify_kind(mask: int) -> str | None:
    """An inotify event's meaning for the watcher (created, modified, closed, moved_in, gone),
    or None (directories — sent/, failed/, .faxbridge/ — and the folder's own events)."""
    isdir, kinds = _inotify_kinds()
    if mask & isdir:
        return None
    for bit, kind in kinds:
        if mask & bit:
            return kind
    return None


@functools.cache
def _inotify_kinds() -> tuple[int, tuple[tuple[int, str], ...]]:
    from watchdog.observers.inotify_c import InotifyConstants as C  # Linux only

    return C.IN_ISDIR, (
        (C.IN_CLOSE_WRITE, "closed"),  # the first bit that matches wins
        (C.IN_MOVED_TO, "moved_in"),
        (C.IN_MOVED_FROM, "gone"),
        (C.IN_DELETE, "gone"),
        (C.IN_CREATE, "created"),
        (C.IN_MODIFY, "modified"),
    )


class InotifyWatch:
    """watchdog's ``Inotify`` for one folder, read by a thread that hands each batch to the loop."""

    closes = True
    description = "inotify"

    def __init__(self, folder: str, loop: asyncio.AbstractEventLoop, deliver: Deliver, lost: Lost) -> None:
        from watchdog.observers.inotify_c import Inotify, InotifyConstants as C

        # watchdog opens the inotify descriptor before it adds the watch and does not close it
        # when that fails; a folder known to be missing or unreadable is not tried at all.
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, "No such directory", folder)
        if not os.access(folder, os.R_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", folder)  # watchdog ignores EACCES
        mask = (C.IN_CREATE | C.IN_MODIFY | C.IN_CLOSE_WRITE | C.IN_MOVED_FROM | C.IN_MOVED_TO | C.IN_DELETE
                | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_ONLYDIR | C.IN_DONT_FOLLOW)
        self._inotify = Inotify(os.fsencode(folder), event_mask=mask)
        self._folder = folder
        self._loop = loop
        self._deliver = deliver
        self._lost = lost
        self._alive = True
        self._closing = False
        self._thread = threading.Thread(target=self._read_all, name="hotfolder-inotify", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._alive and not self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._inotify.close()  # wakes the thread, which then closes the descriptors

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _read_all(self) -> None:
        # Thread seam: this thread only reads inotify and hands what it read to the loop.
        behind = False
        while not self._closing:
            try:
                events = self._inotify.read_events(event_buffer_size=_READ_SIZE)
            except Exception as exc:  # noqa: BLE001 - reported on the loop; the rescan watches anew
                self._alive = False
                self._call(log.error, "hotfolder %s: reading inotify events failed: %s", self._folder, exc)
                return
            if self._closing:
                return
            batch: list[tuple[str, str]] = []
            size = 0
            for event in events:
                name = event.name
                size += 16 + ((len(name) + 16) // 16 * 16 if name else 0)
                if not name:  # the folder itself: removed or moved away, its watch is over
                    if event.is_delete_self or event.is_move_self or event.is_ignored:
                        self._alive = False
                    continue
                kind = inotify_kind(event.mask)
                if kind is not None:
                    batch.append((kind, os.fsdecode(name)))
            # watchdog drops inotify's IN_Q_OVERFLOW (its descriptor is -1), so a lost event is
            # recognised another way: an overflow leaves 16 384 events queued, and the next read
            # fills the buffer. Once a read comes back short again the reader has caught up, and
            # the folder is looked at once, to find whatever the overflow lost.
            # (A read of nothing but events watchdog drops is the overflow notice itself.)
            full = size > _READ_SIZE - _MAX_EVENT - 16
            self._inotify.clear_move_records()  # no pairing here; watchdog would keep each move
            if batch:
                self._call(self._hand_over, batch)
            if full:
                behind = True
            elif behind or not events:
                behind = False
                self._call(self._lost)
            if not self._alive:
                self._call(self._lost)  # the watcher scans; the rescan watches a new folder anew
                return

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the daemon is gone
            self._closing = True

    def _hand_over(self, batch: list[tuple[str, str]]) -> None:
        if self._closing:
            return
        for kind, name in batch:
            self._deliver(kind, name)


# -- elsewhere, and polling: a watchdog observer ------------------------------------------------


class ObserverWatch:
    """A watchdog observer (polling or the platform's native one) watching one folder."""

    closes = False

    def __init__(self, observer: BaseObserver, folder: str, loop: asyncio.AbstractEventLoop,
                 deliver: Deliver, description: str) -> None:
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, "No such directory", folder)
        self.description = description
        self._observer = observer
        self._closing = False
        handler = _Handover(folder, loop, self._hand_over)
        observer.schedule(handler, folder, recursive=False)
        self._deliver = deliver
        observer.start()

    def alive(self) -> bool:
        # An emitter stops when its folder is gone (the polling one: when listing it fails).
        return (not self._closing and self._observer.is_alive()
                and all(e.is_alive() for e in self._observer.emitters))

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._observer.stop()

    def join(self, timeout: float) -> None:
        self._observer.join(timeout)

    def _hand_over(self, kind: str, name: str) -> None:
        if not self._closing:
            self._deliver(kind, name)


class _Handover(FileSystemEventHandler):
    """On the observer's thread: each file event of the folder goes to the loop, and nothing else."""

    def __init__(self, folder: str, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._folder = os.path.normpath(folder)
        self._loop = loop
        self._deliver = deliver

    def dispatch(self, event: FileSystemEvent) -> None:
        # Thread seam: the observer's thread only hands the event to the loop.
        if event.is_directory:
            return
        events: list[tuple[str, str]] = []
        if isinstance(event, FileMovedEvent):
            events.append(("gone", os.fsdecode(event.src_path)))
            events.append(("moved_in", os.fsdecode(event.dest_path)))
        elif isinstance(event, FileClosedEvent):
            events.append(("closed", os.fsdecode(event.src_path)))
        elif isinstance(event, FileCreatedEvent):
            events.append(("created", os.fsdecode(event.src_path)))
        elif isinstance(event, FileModifiedEvent):
            events.append(("modified", os.fsdecode(event.src_path)))
        elif isinstance(event, FileDeletedEvent):
            events.append(("gone", os.fsdecode(event.src_path)))
        for kind, path in events:
            parent, name = os.path.split(path)
            if os.path.normpath(parent) == self._folder and name:  # a move to elsewhere is only "gone"
                try:
                    self._loop.call_soon_threadsafe(self._deliver, kind, name)
                except RuntimeError:  # the loop is closed: the daemon is gone
                    return
