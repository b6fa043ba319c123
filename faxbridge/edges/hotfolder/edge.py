"""The hotfolder edge: a watch per folder (watching.py), the periodic jobs, and the lifecycle the daemon drives."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faxbridge.edges.hotfolder import outcome, watching
from faxbridge.edges.hotfolder.names import PAUSE_NOTICE
from faxbridge.edges.hotfolder.outcome import Outcomes
from faxbridge.edges.hotfolder.watcher import FolderContext, FolderWatcher
from faxbridge.fsutil import discard, write_atomically
from faxbridge.config import WatchMode
from faxbridge.model import JobState

log = logging.getLogger("faxbridge.edges.hotfolder")

_SHUTDOWN_WAIT = 10.0  # seconds for units being checked to reach the journal at shutdown
_CONCURRENT_UNITS = 32  # units claimed and checked at once (threads hash and parse PDFs)
_CHECK_THREADS = 2
_JOIN_WAIT = 2.0  # seconds for a watching thread to end at close


class HotfolderEdge:
    name = "hotfolders"

    def __init__(self, services: Any) -> None:
        self.services = services
        self.outcomes = Outcomes(services.journal, self.spawn)
        # Thread seam: claiming (renames, fsyncs) has a thread of its own, so that files leave
        # the folders while what was claimed is checked and journaled.
        self.claim_thread = ThreadPoolExecutor(1, thread_name_prefix="hotfolder-claim")
        # Thread seam: checking (pypdf, hashing) has threads of its own too. In the shared pool
        # a burst's checks queued the journal's fsyncs — and with them every SendJob — behind
        # them; and more than two threads of Python on two cores only take turns at the GIL.
        self.check_threads = ThreadPoolExecutor(_CHECK_THREADS, thread_name_prefix="hotfolder-check")
        config = services.config
        self.context = FolderContext(
            spawn=self.spawn,
            active_claims=set(),
            slots=asyncio.Semaphore(_CONCURRENT_UNITS),
            claim_thread=self.claim_thread,
            check_threads=self.check_threads,
            outbound=services.outbound,
            jobs=services.journal.jobs,
            numbers=config.numbers.policy(),
            limits=config.documents.limits(),
            move_to_sent=self.outcomes.move_to_sent,
        )
        self.watchers = [FolderWatcher(self.context, i, c) for i, c in enumerate(config.hotfolders)]
        self._tasks: set[asyncio.Task[Any]] = set()
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
        for watcher in self.watchers:
            self._watch(watcher)
        # Watching first, then looking: a file arriving in between is seen either way.
        for watcher in self.watchers:
            await watcher.recover()
            await watcher.scan(periodic=False)
        self._schedule()
        await self._sync_notices()
        for watcher in self.watchers:
            how = watcher.watch.description if watcher.watch is not None else "not watched yet"
            log.info("hotfolder %s: watching %s (%s, %s)", watcher.label, watcher.key, watcher.config.job_type, how)

    async def stop_intake(self) -> None:
        self._stopping = True
        scheduler = self.services.scheduler
        for job_id in self._job_ids:
            with contextlib.suppress(Exception):
                scheduler.remove_job(job_id)
        self._job_ids.clear()
        for watcher in self.watchers:
            watcher.stop()
            if watcher.watch is not None:
                watcher.watch.close()
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
        for watcher in self.watchers:
            if watcher.watch is not None:
                await asyncio.to_thread(watcher.watch.join, _JOIN_WAIT)
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
        """Start the folder's watch as configured (watch: auto, events, poll); in ``auto``, a
        folder that cannot have file events (inotify's limits, a file system without them) is
        polled instead. A missing folder is watched by the rescan once it is there."""
        mode = watcher.config.watch
        loop = asyncio.get_running_loop()
        deliver = functools.partial(self._deliver, watcher)
        if mode is WatchMode.POLL or watcher.polling:
            watcher.polling = True
            try:
                watcher.watch = watching.watch_by_polling(watcher.key, watcher.config.poll_interval, loop, deliver)
            except FileNotFoundError:
                watcher.watch = None  # the scan says so; the rescan watches it once it is there
            return
        try:
            watcher.watch = watching.watch_events(watcher.key, loop, deliver,
                                                  functools.partial(self._lost, watcher))
            watcher.unsay("watch")
        except FileNotFoundError:
            watcher.watch = None  # the scan says so; the rescan watches it once it is there
        except OSError as exc:
            if mode is WatchMode.EVENTS:
                watcher.say_once("watch", logging.ERROR, "cannot watch %s (%s); looking again at each rescan",
                                 watcher.key, exc.strerror or exc)
                return
            # No file events (watch limit, a file system without them): looking is slower but works.
            watcher.say_once("watch", logging.WARNING, "cannot watch %s (%s); polling it instead",
                             watcher.key, exc.strerror or exc)
            watcher.polling = True
            self._watch(watcher)

    def _deliver(self, watcher: FolderWatcher, kind: str, name: str) -> None:
        """On the loop: a file event goes to its folder's watcher; a failure there is a bug,
        logged, and the watching goes on (the rescan catches up)."""
        watch = watcher.watch
        try:
            watcher.on_event(kind, name, watch is not None and watch.closes)
        except Exception:
            log.exception("hotfolder %s: handling a file-system event failed", watcher.label)

    def _lost(self, watcher: FolderWatcher) -> None:
        """Events may have been lost (inotify's queue overflowed), or the watch ended with its
        folder: the folder is looked at again (new files are found; one whose close was lost is
        judged by the periodic rescans, as the watcher explains)."""
        if not self._stopping:
            self.spawn(watcher.scan(periodic=False))

    # -- periodic work -----------------------------------------------------------------------

    def _schedule(self) -> None:
        for watcher in self.watchers:
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
        if not self._watch_alive(watcher):
            # The folder was removed (its watch ended with it) or missing at start: watch it anew.
            if await asyncio.to_thread(watcher.folder.is_dir):
                if watcher.watch is not None:
                    watcher.watch.close()
                    watcher.watch = None
                self._watch(watcher)
                if watcher.watch is not None:
                    log.info("hotfolder %s: watching %s again (%s)", watcher.label, watcher.key,
                             watcher.watch.description)
        await watcher.recover()
        await watcher.scan(periodic=True)

    def _watch_alive(self, watcher: FolderWatcher) -> bool:
        return watcher.watch is not None and watcher.watch.alive()

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


