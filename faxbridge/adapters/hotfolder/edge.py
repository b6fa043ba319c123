"""The hotfolder edge: watchdog observers, the periodic jobs, and the lifecycle the daemon drives."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from faxbridge.adapters.hotfolder import outcome
from faxbridge.adapters.hotfolder.names import PAUSE_NOTICE
from faxbridge.adapters.hotfolder.outcome import Outcomes
from faxbridge.adapters.hotfolder.watcher import FolderWatcher
from faxbridge.adapters.reports import discard, write_atomically
from faxbridge.model import JobState

log = logging.getLogger("faxbridge.adapters.hotfolder")

# Only these reach the handler: opens and reads (our own too) would be noise.
_EVENT_KINDS = {"created": "created", "modified": "modified", "closed": "closed", "deleted": "gone"}
_SHUTDOWN_WAIT = 10.0  # seconds for units being checked to reach the journal at shutdown
_CONCURRENT_UNITS = 8  # units claimed and checked at once (threads hash and parse PDFs)
_OBSERVER_JOIN = 0.1  # seconds to wait for watchdog's threads at close


class _Handler(FileSystemEventHandler):
    """watchdog's handler: hands each event to the loop and does nothing else."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Any) -> None:
        super().__init__()
        self._loop = loop
        self._deliver = deliver

    def dispatch(self, event: FileSystemEvent) -> None:
        # Thread seam: watchdog's observer thread. Never touches state; never raises (an exception
        # here would end the observer thread and with it all watching).
        try:
            dest = getattr(event, "dest_path", "") or ""
            self._loop.call_soon_threadsafe(
                self._deliver, event.event_type, os.fsdecode(event.src_path), os.fsdecode(dest)
            )
        except RuntimeError:
            pass  # the loop is closed: faxbridge is shutting down
        except Exception:  # pragma: no cover - defensive
            log.exception("hotfolder: dropping a file-system event")


class _QuietStopRace(logging.Filter):
    """watchdog logs an ERROR when its emitter thread loops once more after being stopped (a
    race inside watchdog at shutdown, harmless): not worth waking an administrator for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


def _make_observer() -> tuple[Any, bool]:
    """An inotify observer with full move events (Linux), else the platform's; and whether it
    reports closes. Full events tell a file moved in from outside (complete) from one created
    here (being written). Raises OSError when the system has no inotify instance left."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        from watchdog.observers import Observer

        return Observer(), False
    inotify_log = logging.getLogger("watchdog.observers.inotify")
    if not any(isinstance(f, _QuietStopRace) for f in inotify_log.filters):
        inotify_log.addFilter(_QuietStopRace())
    return InotifyObserver(generate_full_events=True), True


class HotfolderEdge:
    name = "hotfolders"

    def __init__(self, services: Any) -> None:
        self.services = services
        self.outcomes = Outcomes(services.journal, self.spawn)
        self.watchers = [FolderWatcher(self, i, c) for i, c in enumerate(services.config.hotfolders)]
        self.active_claims: set[str] = set()
        self.slots = asyncio.Semaphore(_CONCURRENT_UNITS)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._observer: Any = None
        self._stopper: threading.Thread | None = None
        self._closes = False
        self._by_folder = {w.key: w for w in self.watchers}
        self._job_ids: list[str] = []
        self._notice: object = object()  # what the pause notices say now (sentinel: unknown)
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        outbound = self.services.outbound
        outbound.add_reporter(outcome.SOURCE, self.outcomes.report)
        outbound.add_acceptance_hook(outcome.SOURCE, self.outcomes.accepted)
        for watcher in self.watchers:
            try:
                await asyncio.to_thread(watcher.folder.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                log.error("hotfolder %s: cannot create %s: %s", watcher.label, watcher.key, exc.strerror or exc)
        if any(not w.polling for w in self.watchers):
            try:
                self._observer, self._closes = await asyncio.to_thread(_make_observer)
            except OSError as exc:
                log.warning("hotfolders: no inotify (%s); polling every folder instead", exc.strerror or exc)
                for watcher in self.watchers:
                    watcher.polling = True
        if self._observer is not None:
            for watcher in self.watchers:
                if not watcher.polling:
                    await self._watch(watcher)
            await asyncio.to_thread(self._observer.start)
        # Watching first, then looking: a file arriving in between is seen either way.
        for watcher in self.watchers:
            await watcher.recover()
            await watcher.scan(periodic=False)
        self._schedule()
        await self._sync_notices()
        for watcher in self.watchers:
            mode = "polling" if watcher.polling else "inotify"
            log.info("hotfolder %s: watching %s (%s, %s)", watcher.label, watcher.key, watcher.config.job_type, mode)

    async def stop_intake(self) -> None:
        self._stopping = True
        scheduler = self.services.scheduler
        for job_id in self._job_ids:
            with contextlib.suppress(Exception):
                scheduler.remove_job(job_id)
        self._job_ids.clear()
        for watcher in self.watchers:
            watcher.stop()
        if self._observer is not None:
            # Thread seam: watchdog's stop() joins its emitter threads, which hold a file moved
            # out of the folder for 0.5 s (to pair it with its arrival elsewhere). The watchers
            # already ignore events, so the loop need not wait for that.
            self._stopper = threading.Thread(
                target=self._observer.stop, name="hotfolder-observer-stop", daemon=True
            )
            self._stopper.start()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            # Units being checked reach the journal (or failed/) now; a claim cut short is
            # finished at the next start.
            _, late = await asyncio.wait(pending, timeout=_SHUTDOWN_WAIT)
            for task in late:
                task.cancel()

    async def close(self) -> None:
        if not self._stopping:
            await self.stop_intake()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._stopper is not None:
            # Daemon threads that deliver nothing more: a short wait, not the full 0.5 s.
            await asyncio.to_thread(self._stopper.join, _OBSERVER_JOIN)
            self._stopper = None
        self._observer = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task that is kept (not garbage-collected) and whose failure is logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hotfolder: a background task failed", exc_info=task.exception())

    # -- events ----------------------------------------------------------------------------

    async def _watch(self, watcher: FolderWatcher) -> None:
        handler = _Handler(asyncio.get_running_loop(), self._deliver)
        kinds = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent]
        try:
            watcher.watch = await asyncio.to_thread(
                self._observer.schedule, handler, watcher.key, recursive=False, event_filter=kinds
            )
            watcher.unsay("watch")
        except FileNotFoundError:
            watcher.watch = None  # the scan says so; the rescan watches it once it is there
        except OSError as exc:
            # No inotify (watch limit, a file system without it): looking is slower but works.
            watcher.say_once("watch", logging.WARNING, "cannot watch %s (%s); polling it instead",
                             watcher.key, exc.strerror or exc)
            watcher.polling = True
            self._add_job(f"hotfolder-poll-{watcher.index}", watcher.scan, watcher.config.poll_interval,
                          periodic=True)

    def _deliver(self, kind: str, src: str, dest: str) -> None:
        """On the loop: route a watchdog event to the watcher of the folder it happened in."""
        try:
            if kind == "moved":
                self._route("gone", src)
                self._route("moved_in", dest)
            elif kind in _EVENT_KINDS:
                self._route(_EVENT_KINDS[kind], src)
        except Exception:
            log.exception("hotfolder: handling a file-system event failed")

    def _route(self, kind: str, path: str) -> None:
        if not path:
            return
        folder, _, name = path.rpartition(os.sep)
        watcher = self._by_folder.get(folder)
        if watcher is not None and name:
            watcher.on_event(kind, name, self._closes)

    # -- periodic work -----------------------------------------------------------------------

    def _schedule(self) -> None:
        for watcher in self.watchers:
            if watcher.polling and f"hotfolder-poll-{watcher.index}" not in self._job_ids:
                self._add_job(f"hotfolder-poll-{watcher.index}", watcher.scan, watcher.config.poll_interval,
                              periodic=True)
            if watcher.config.rescan_interval > 0:
                self._add_job(f"hotfolder-rescan-{watcher.index}", self._rescan,
                              watcher.config.rescan_interval, watcher)
        self._add_job("hotfolder-pause-notice", self._sync_notices, 0.5)

    def _add_job(self, job_id: str, fn: Any, seconds: float, *args: Any, **kwargs: Any) -> None:
        scheduler = self.services.scheduler
        if scheduler is None:
            return
        scheduler.add_job(
            fn, "interval", seconds=seconds, args=args, kwargs=kwargs, id=job_id, replace_existing=True,
            # As the daemon's own jobs: a late run still runs, once, never overlapping itself.
            misfire_grace_time=None, coalesce=True, max_instances=1,
        )
        self._job_ids.append(job_id)

    async def _rescan(self, watcher: FolderWatcher) -> None:
        """The safety net: claims left over, watches lost (folder recreated), events missed."""
        if self._stopping:
            return
        if not watcher.polling and self._observer is not None and not self._watch_alive(watcher):
            # The folder was removed (its watch ended with it) or missing at start: watch it anew.
            if await asyncio.to_thread(watcher.folder.is_dir):
                if watcher.watch is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(self._observer.unschedule, watcher.watch)
                    watcher.watch = None
                await self._watch(watcher)
                if watcher.watch is not None:
                    log.info("hotfolder %s: watching %s again", watcher.label, watcher.key)
        await watcher.recover()
        await watcher.scan(periodic=True)

    def _watch_alive(self, watcher: FolderWatcher) -> bool:
        if watcher.watch is None:
            return False
        emitters = getattr(self._observer, "emitters", ())
        return any(getattr(e, "watch", None) == watcher.watch and e.is_alive() for e in emitters)

    async def _sync_notices(self) -> None:
        """While the core has paused all sending, each folder holds FAXBRIDGE-PAUSED.txt saying why."""
        paused = self.services.outbound.paused
        if paused == self._notice:
            return
        self._notice = paused
        waiting = len(self.services.journal.jobs.in_states(JobState.QUEUED, source=outcome.SOURCE)) if paused else 0
        for watcher in self.watchers:
            path = watcher.folder / PAUSE_NOTICE
            try:
                if paused is None:
                    await asyncio.to_thread(discard, path)
                else:
                    text = _notice_text(paused, waiting)
                    await asyncio.to_thread(write_atomically, path, text.encode("utf-8"))
            except OSError as exc:
                log.warning("hotfolder %s: cannot update %s: %s", watcher.label, path, exc.strerror or exc)


def _notice_text(reason: str, waiting: int) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "faxbridge has PAUSED ALL SENDING.\n\n"
        f"Why: {reason}\n\n"
        f"Documents dropped here are still checked and queued ({waiting} waiting now); none is lost\n"
        "and none is sent twice. They go out as soon as sending resumes.\n\n"
        "What to do: correct the FAX.de account or password in the faxbridge configuration (or\n"
        "settle the account with FAX.de), then restart faxbridge. This file disappears when\n"
        "sending resumes.\n\n"
        f"Since: {when}\n"
    )


def build(services: Any) -> HotfolderEdge | None:
    """The daemon's entry point: None when no hotfolder is configured."""
    if not services.config.hotfolders:
        return None
    return HotfolderEdge(services)


