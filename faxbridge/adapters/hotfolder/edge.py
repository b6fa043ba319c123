"""The hotfolder edge: inotify on the loop, the periodic jobs, and the lifecycle the daemon drives."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faxbridge.adapters.hotfolder import outcome
from faxbridge.adapters.hotfolder.inotify import Inotify
from faxbridge.adapters.hotfolder.names import PAUSE_NOTICE
from faxbridge.adapters.hotfolder.outcome import Outcomes
from faxbridge.adapters.hotfolder.watcher import FolderWatcher
from faxbridge.adapters.reports import discard, write_atomically
from faxbridge.model import JobState

log = logging.getLogger("faxbridge.adapters.hotfolder")

_SHUTDOWN_WAIT = 10.0  # seconds for units being checked to reach the journal at shutdown
_CONCURRENT_UNITS = 32  # units claimed and checked at once (threads hash and parse PDFs)
_CHECK_THREADS = 2


class HotfolderEdge:
    name = "hotfolders"

    def __init__(self, services: Any) -> None:
        self.services = services
        self.outcomes = Outcomes(services.journal, self.spawn)
        self.watchers = [FolderWatcher(self, i, c) for i, c in enumerate(services.config.hotfolders)]
        self.active_claims: set[str] = set()
        self.slots = asyncio.Semaphore(_CONCURRENT_UNITS)
        # Thread seam: claiming (renames, fsyncs) has a thread of its own, so that files leave
        # the folders while what was claimed is checked and journaled.
        self.claim_thread = ThreadPoolExecutor(1, thread_name_prefix="hotfolder-claim")
        # Thread seam: checking (pypdf, hashing) has threads of its own too. In the shared pool
        # a burst's checks queued the journal's fsyncs — and with them every SendJob — behind
        # them; and more than two threads of Python on two cores only take turns at the GIL.
        self.check_threads = ThreadPoolExecutor(_CHECK_THREADS, thread_name_prefix="hotfolder-check")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inotify: Inotify | None = None
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
                self._inotify = Inotify(self._deliver, self._overflowed)
            except OSError as exc:  # not Linux, or no inotify instance left (max_user_instances)
                log.warning("hotfolders: no inotify (%s); polling every folder instead", exc.strerror or exc)
                for watcher in self.watchers:
                    watcher.polling = True
        if self._inotify is not None:
            for watcher in self.watchers:
                if not watcher.polling:
                    self._watch(watcher)
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
        if self._inotify is not None:
            self._inotify.close()
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
        self._inotify = None
        self.claim_thread.shutdown(wait=False)
        self.check_threads.shutdown(wait=False)

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

    def _watch(self, watcher: FolderWatcher) -> None:
        assert self._inotify is not None
        try:
            watcher.watch = self._inotify.watch(watcher.key)
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

    def _deliver(self, kind: str, folder: str, name: str) -> None:
        """On the loop: an inotify event goes to the watcher of the folder it happened in."""
        watcher = self._by_folder.get(folder)
        if watcher is not None:
            watcher.on_event(kind, name, True)

    def _overflowed(self) -> None:
        """Events were lost: every watched folder is looked at again (new files are found; one
        whose close was lost is judged by the periodic rescans, as the watcher explains)."""
        for watcher in self.watchers:
            if not watcher.polling and not self._stopping:
                self.spawn(watcher.scan(periodic=False))

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
        if not watcher.polling and self._inotify is not None and not self._watch_alive(watcher):
            # The folder was removed (its watch ended with it) or missing at start: watch it anew.
            if await asyncio.to_thread(watcher.folder.is_dir):
                if watcher.watch is not None:
                    self._inotify.unwatch(watcher.watch)
                    watcher.watch = None
                self._watch(watcher)
                if watcher.watch is not None:
                    log.info("hotfolder %s: watching %s again", watcher.label, watcher.key)
        await watcher.recover()
        await watcher.scan(periodic=True)

    def _watch_alive(self, watcher: FolderWatcher) -> bool:
        return self._inotify is not None and self._inotify.alive(watcher.watch)

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


