"""One hotfolder: noticing files, deciding when each is complete, and taking units to the core.

A file is taken once it is complete and quiet for the settle time:
* complete by event: closed after writing (inotify IN_CLOSE_WRITE) or renamed/moved in (IN_MOVED_TO);
  a file that was created or written to and not closed yet is still being written, however long
  the writer pauses (where closes are not reported — polling, other platforms — writes are
  judged by looking, as below);
* complete by looking: a file found by a scan (start-up, rescan, polling mode) whose size, mtime
  and inode do not change over the settle time (in polling mode: at least one poll interval);
  a file still "being written" that two rescans find unchanged lost its close event (inotify
  overflow), and is complete too.
Everything here runs on the event loop; file-system work goes to worker threads. What the watcher
uses of its edge and of the core comes in one small context object (FolderContext).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faxbridge import documents
from faxbridge.edges.hotfolder import files, outcome
from faxbridge.edges.hotfolder.files import Claim
from faxbridge.edges.hotfolder.instructions import (
    Refusal,
    UnitFiles,
    prepare_request,
    sidecar_files,
)
from faxbridge.edges.hotfolder.names import (
    display_name,
    ignored,
    is_csv,
    is_sidecar,
    is_yaml,
    recipient_from_name,
    stem,
)
from faxbridge.edges.hotfolder.plan import BundleFiles, Unit, plan_units
from faxbridge.edges.hotfolder.watching import FolderWatch
from faxbridge.config import HotfolderConfig
from faxbridge.crashpoints import crash_point
from faxbridge.documents import DocumentLimits
from faxbridge.errors import (
    DocumentError,
    DuplicateJobError,
    FaxbridgeError,
    JournalError,
    NumberError,
    disk_full,
)
from faxbridge.journal.jobs import JobsTable
from faxbridge.model import Job, JobState
from faxbridge.numbers import NumberPolicy
from faxbridge.outbound import Checked, Outbound, mask_number

log = logging.getLogger("faxbridge.edges.hotfolder")

_WRITING, _COMPLETE, _UNKNOWN, _BLOCKED = "writing", "complete", "unknown", "blocked"
_sequence = itertools.count(1)
# Units claimed per worker-thread hop (one set of folder fsyncs each); a single file is claimed at
# once, a burst in batches, so that claiming keeps up with files renamed in by the thousand.
_CLAIM_BATCH = 100
# Claimed units checked and journaled at once per folder (the edge's slots bound all folders). A
# unit mostly waits — for a check thread, for the journal's group commit — so many at once keep
# both busy: 1000 PDFs renamed in were all journaled in ~2.4 s with 8, ~1.3 s with 32.
_HANDLERS = 32
# While units wait to be claimed, checking the claimed ones waits (at most this long): both touch
# the file system's journal, and taking every file out of the folder first made 20 000 files
# renamed in at once all claimed 4× sooner, and journaled no later (bench.hotfolder_burst).
_CLAIMS_FIRST = 10.0
# A unit put back into its folder because the disk is full is taken again after this many seconds
# (or the rescan interval, if shorter): at once it would only fail again, and again.
_DISK_FULL_RETRY = 30.0


@dataclass(frozen=True)
class FolderContext:
    """What a folder watcher needs from its edge and the core, shared by the edge's watchers."""

    spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]  # a kept, logged background task
    active_claims: set[str]  # claim folders being worked on now: recover() leaves them alone
    slots: asyncio.Semaphore  # units checked and journaled at once, all folders together
    claim_thread: Executor
    check_threads: Executor
    outbound: Outbound
    jobs: JobsTable
    numbers: NumberPolicy
    limits: DocumentLimits
    move_to_sent: Callable[[Job], Awaitable[None]]


@dataclass
class Tracked:
    """What the watcher knows about one name in the folder."""

    state: str
    sig: files.Signature | None = None  # at the last look (None: only events seen so far)
    scan_sig: files.Signature | None = None  # at the last periodic scan
    settled: bool = False  # complete and quiet for the settle time
    gen: int = 0  # bumped by every event: stale timers and checks recognise themselves
    seq: int = 0  # global order of the last change, to tell it from a scan that started earlier
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Taking:
    """A unit on its way from the folder to the journal: queued, claimed, then handled."""

    unit: Unit
    token: str
    gens: dict[str, int]
    claim_dir: str
    claimed: Claim | None = None


class FolderWatcher:
    def __init__(self, context: FolderContext, index: int, config: HotfolderConfig) -> None:
        self.context = context
        self.index = index
        self.config = config
        self.folder = config.path
        self.key = os.fspath(config.path)
        self.label = config.path.name or self.key
        self.polling = config.polling
        self.watch: FolderWatch | None = None  # while file events come for the folder
        self.tracked: dict[str, Tracked] = {}
        self.busy: set[str] = set()
        self._plan_task: asyncio.Task[None] | None = None
        self._replan = False
        self._held_back = False  # the last plan left ready files waiting for busy ones
        self._to_claim: deque[_Taking] = deque()
        self._claimer: asyncio.Task[None] | None = None
        self._to_handle: deque[_Taking] = deque()
        self._handlers = 0
        self._stopping = False
        self._bundle_cache: dict[str, tuple[tuple[int, int], BundleFiles]] = {}
        self._said: dict[str, str] = {}  # things logged once, until they change
        self._held: set[str] = set()  # put back for a full disk: not taken before the retry

    # -- timing ------------------------------------------------------------------------------

    @property
    def settle(self) -> float:
        return self.config.settle_time

    @property
    def stability(self) -> float:
        """How long a file found by looking must stay unchanged to count as complete."""
        window = max(self.config.settle_time, 0.2)
        return max(window, self.config.poll_interval) if self.polling else window

    def say_once(self, key: str, level: int, message: str, *args: Any) -> None:
        text = message % args if args else message
        if self._said.get(key) != text:
            self._said[key] = text
            log.log(level, "hotfolder %s: %s", self.label, text)

    def unsay(self, key: str) -> None:
        self._said.pop(key, None)

    # -- events (from watchdog, on the loop) -------------------------------------------------

    def on_event(self, kind: str, name: str, closes: bool) -> None:
        """``kind``: created, modified, closed, moved_in, gone. ``closes``: the watch reports
        closes (inotify); otherwise a write is judged by looking, like in polling mode."""
        if self._stopping or ignored(name) or name in self._held:
            return
        if kind == "gone":
            self._forget(name)
            return
        t = self.tracked.get(name)
        if t is None:
            t = self.tracked[name] = Tracked(_UNKNOWN)
        t.gen += 1
        t.seq = next(_sequence)
        t.settled = False
        if kind in ("created", "modified"):
            if closes:
                t.state = _WRITING  # the close (or a rescan) will say when it is done
                self._cancel(t)
                return
            t.state, t.sig = _UNKNOWN, None
            self._arm(name, t, self.stability)
        else:  # closed after writing, or renamed/moved into the folder: complete
            t.state = _COMPLETE
            self._arm(name, t, self.settle)

    def _forget(self, name: str) -> None:
        self._said.pop(f"orphan:{name}", None)
        t = self.tracked.pop(name, None)
        if t is not None:
            self._cancel(t)

    def _cancel(self, t: Tracked) -> None:
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None

    def _arm(self, name: str, t: Tracked, delay: float) -> None:
        self._cancel(t)
        t.timer = asyncio.get_running_loop().call_later(delay, self._fire, name, t.gen)

    def _fire(self, name: str, gen: int) -> None:
        t = self.tracked.get(name)
        if t is None or t.gen != gen or self._stopping:
            return
        t.timer = None
        if t.state == _COMPLETE and name not in self.busy:
            # Complete by its event: nothing to look at, so no task (a burst has thousands).
            t.settled = True
            self.request_plan()
            return
        self.context.spawn(self._check(name, gen))

    async def _check(self, name: str, gen: int) -> None:
        t = self.tracked.get(name)
        if t is None or t.gen != gen or name in self.busy or t.state in (_WRITING, _BLOCKED):
            return
        if t.state == _UNKNOWN:
            sig = await asyncio.to_thread(files.signature, self.folder / name)
            if self.tracked.get(name) is not t or t.gen != gen:
                return  # an event came while we looked
            if sig is None:
                self._forget(name)
                return
            if sig != t.sig:
                t.sig = sig
                self._arm(name, t, self.stability)
                return
            t.state = _COMPLETE
        t.settled = True
        self.request_plan()

    # -- looking (start-up, rescan, polling) ---------------------------------------------------

    async def scan(self, *, periodic: bool) -> None:
        """List the folder; new files are checked for stability, missed changes noticed."""
        if self._stopping:
            return
        started = next(_sequence)
        try:
            entries = await asyncio.to_thread(self._list)
        except FileNotFoundError:
            self.say_once("folder", logging.ERROR, "the folder %s does not exist (waiting for it)", self.key)
            return
        except OSError as exc:
            self.say_once("folder", logging.ERROR, "cannot list %s: %s", self.key, exc.strerror or exc)
            return
        self.unsay("folder")
        seen: set[str] = set()
        for name, sig in entries:
            if ignored(name) or name in self._held:
                continue
            seen.add(name)
            t = self.tracked.get(name)
            if t is None:
                t = self.tracked[name] = Tracked(_UNKNOWN, sig=sig, seq=next(_sequence))
                self._arm(name, t, self.stability)
            elif name not in self.busy and t.seq <= started:
                if t.state == _WRITING and periodic and t.scan_sig == sig:
                    # Unchanged across two rescans with no close seen: the event was lost.
                    t.state = _COMPLETE
                    self._arm(name, t, self.settle)
                elif t.state == _BLOCKED and periodic:
                    t.state, t.sig = _UNKNOWN, sig
                    self._arm(name, t, self.stability)
                elif t.state in (_COMPLETE, _UNKNOWN) and t.sig is not None and sig != t.sig:
                    t.gen += 1  # changed behind our back (polling mode, lost events)
                    t.state, t.sig, t.settled = _UNKNOWN, sig, False
                    self._arm(name, t, self.stability)
                elif t.sig is None:
                    t.sig = sig
            t.scan_sig = sig
        for name in [n for n, t in self.tracked.items() if n not in seen and n not in self.busy]:
            if self.tracked[name].seq <= started:
                self._forget(name)
        self.request_plan()

    def _list(self) -> list[tuple[str, files.Signature]]:
        if not self.folder.is_dir():
            raise FileNotFoundError(self.key)
        return files.list_folder(self.folder)

    # -- planning: which units are ready ----------------------------------------------------

    def request_plan(self) -> None:
        if self._stopping:
            return
        if self._plan_task is not None and not self._plan_task.done():
            self._replan = True
            return
        self._plan_task = self.context.spawn(self._plan())

    async def _plan(self) -> None:
        while not self._stopping:
            self._replan = False
            ready = {n for n, t in self.tracked.items() if t.settled and n not in self.busy}
            waiting = {n for n in self.tracked if n not in ready and n not in self.busy}
            yamls = sorted(n for n in ready if is_yaml(n))
            bundles = await asyncio.to_thread(self._read_bundles, yamls) if yamls else {}
            units = plan_units(ready, waiting | self.busy, bundles)
            for unit in units:
                if all(n in self.tracked and self.tracked[n].settled and n not in self.busy
                       for n in unit.names):
                    self._take(unit)
            # Ready files left waiting (for a busy file, a file still being written, a document)
            # are planned again when a claim frees names; otherwise a claim needs no new plan.
            self._held_back = any(n not in self.busy for n in ready)
            self._mention_orphans(ready, units)
            if not self._replan:
                return

    def _mention_orphans(self, ready: set[str], units: list[Unit]) -> None:
        """A sidecar without its document waits (it may come); say so once, for whoever wonders."""
        taken = {n for u in units for n in u.names}
        orphans = [n for n in ready if is_sidecar(n) and n not in taken]
        if not orphans:
            return
        documents = {stem(n) for n in self.tracked if not is_sidecar(n)}
        for name in orphans:
            if stem(name) not in documents:
                self.say_once(f"orphan:{name}", logging.INFO, "%s waits for its document(s)",
                              display_name(name))

    def _read_bundles(self, names: list[str]) -> dict[str, BundleFiles]:
        """Each ready YAML's ``files`` (cached by size and mtime: rereading 200 is wasted work)."""
        result: dict[str, BundleFiles] = {}
        for name in names:
            path = self.folder / name
            try:
                st = path.stat()
                cached = self._bundle_cache.get(name)
                if cached is not None and cached[0] == (st.st_size, st.st_mtime_ns):
                    result[name] = cached[1]
                    continue
                data = path.read_bytes()[: 1 << 20]
            except OSError:
                continue
            listed = sidecar_files(data, display_name(name))
            self._bundle_cache[name] = ((st.st_size, st.st_mtime_ns), listed)
            result[name] = listed
        # Only sidecars still waiting here are worth remembering: a cache that kept every name
        # ever seen would grow with each sidecar for as long as the daemon runs.
        for gone in [n for n in self._bundle_cache if n not in result]:
            del self._bundle_cache[gone]
        return result

    # -- taking a unit ---------------------------------------------------------------------

    def _take(self, unit: Unit) -> None:
        self.busy.update(unit.names)
        gens = {n: self.tracked[n].gen for n in unit.names}
        token = files.claim_token(time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4),
                                  unit.key, unit.documents, unit.sidecars)
        claim_dir = os.fspath(self.folder / files.CLAIM_AREA / token)
        self.context.active_claims.add(claim_dir)
        self._to_claim.append(_Taking(unit, token, gens, claim_dir))
        if self._claimer is None or self._claimer.done():
            self._claimer = self.context.spawn(self._claim_queued())

    async def _claim_queued(self) -> None:
        """Claim the queued units, a batch per worker-thread hop, ahead of checking them: a file
        leaves the folder as fast as the disk allows, however many wait to be journaled."""
        while self._to_claim:
            batch = [self._to_claim.popleft() for _ in range(min(len(self._to_claim), _CLAIM_BATCH))]
            if self._stopping:
                for taking in batch:
                    self._release(taking)
                continue
            specs = [(t.token, t.unit.key, t.unit.documents, t.unit.sidecars) for t in batch]
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self.context.claim_thread, files.claim_all, self.folder, specs
                )
            except BaseException:
                # Cancelled at shutdown: what the thread claimed is finished at the next start.
                for taking in batch:
                    self._release(taking)
                raise
            replan = self._held_back
            for taking, result in zip(batch, results):
                self.busy.difference_update(taking.unit.names)
                if self._claimed(taking, result):
                    self._to_handle.append(taking)
                else:
                    self._release(taking)
                replan = replan or any(n in self.tracked for n in taking.unit.names)
            # One handler for each unit waiting, up to _HANDLERS in all: a handler that finds
            # nothing left to take ends.
            for _ in range(min(len(self._to_handle), _HANDLERS - self._handlers)):
                self._handlers += 1
                self.context.spawn(self._handle_claimed())
            if replan:
                self.request_plan()

    def _claimed(self, taking: _Taking, result: Claim | None | OSError) -> bool:
        """Note a claim's outcome; True when there is a claim to check and journal."""
        unit, gens = taking.unit, taking.gens
        if isinstance(result, OSError):
            self.say_once(f"claim:{unit.key}", logging.WARNING, "cannot take %s: %s (trying again at the next rescan)",
                          display_name(unit.key), result.strerror or result)
            for name in unit.names:
                t = self.tracked.get(name)
                if t is not None and t.gen == gens[name]:
                    t.state, t.settled = _BLOCKED, False
            return False
        taken = {f.original for f in result.files} if result is not None else {unit.key}
        for name in taken:
            t = self.tracked.get(name)
            if t is not None and t.gen == gens.get(name):
                self._forget(name)  # gone from the folder; a newer file of that name stays tracked
        taking.claimed = result
        return result is not None

    def _release(self, taking: _Taking) -> None:
        self.busy.difference_update(taking.unit.names)
        self.context.active_claims.discard(taking.claim_dir)

    async def _handle_claimed(self) -> None:
        """One of the handlers: takes claimed units from the queue until none is left."""
        try:
            # A handler takes its unit before it awaits anything: every await lets the other
            # handlers run, and a unit seen in the queue before one may be gone after it (they
            # checked, waited, then popped from an empty queue: issue 14). At shutdown the claims
            # not handled yet stay in the claim area: the next start finishes them (recover).
            while self._to_handle and not self._stopping:
                taking = self._to_handle.popleft()
                try:
                    await self._let_claims_go_first()
                    if self._stopping:
                        return
                    async with self.context.slots:
                        await self._handle_taken(taking)
                except Exception:  # a bug: logged; the claim is finished at the next rescan
                    log.exception("hotfolder %s: handling %s failed", self.label, display_name(taking.unit.key))
                finally:
                    self._release(taking)
        finally:
            self._handlers -= 1

    async def _let_claims_go_first(self) -> None:
        deadline = time.monotonic() + _CLAIMS_FIRST
        while self._to_claim and not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _handle_taken(self, taking: _Taking) -> None:
        claim, unit = taking.claimed, taking.unit
        assert claim is not None
        crash_point("hotfolder.after_claim")  # taken from the folder, not journaled yet
        self.unsay(f"claim:{unit.key}")
        if unit.problem:
            await self._refuse(claim, Refusal(unit.problem, "Rename or regroup the files and drop them in again."))
            return
        await self.handle_claim(claim)

    async def handle_claim(self, claim: Claim) -> None:
        """Check a claimed unit, journal it as a job, or send it to failed/ with the reason."""
        label = self._label(claim)
        try:
            loop = asyncio.get_running_loop()
            checked = await loop.run_in_executor(self.context.check_threads, self._prepare, claim)
            job = await self.context.outbound.submit(
                checked,
                source=outcome.SOURCE,
                source_ref=claim.ref,
                meta=outcome.job_meta(claim, self.config, label),
            )
        except JournalError as exc:
            if disk_full(exc):
                await self._wait_for_space(claim, exc)
                return
            # Nothing is lost: the claim stays and the next rescan tries again.
            log.error("hotfolder %s: %s could not be journaled (%s); trying again later", self.label, label, exc)
        except (Refusal, DocumentError, NumberError, DuplicateJobError, FaxbridgeError) as exc:
            await self._refuse(claim, exc)
        except Exception as exc:  # a bug must not leave the file hidden in the claim area
            log.exception("hotfolder %s: %s: unexpected error", self.label, label)
            await self._refuse(claim, Refusal(f"internal error: {type(exc).__name__}: {exc}",
                                              "Check the faxbridge log; drop the document in again."))
        else:
            if job.state is JobState.QUEUED and job.attempts == 0:
                log.debug("hotfolder %s: %s is job %d", self.label, label, job.id)

    def _prepare(self, claim: Claim) -> Checked:
        docs, yaml, csv = [], None, None
        for f in claim.files:
            path = claim.path(f)
            if f.document:
                if path.is_symlink():
                    raise Refusal(f"{f.claimed}: a symbolic link; faxbridge sends only files dropped into the folder",
                                  "Copy the document itself into the folder.")
                # The name FAX.de sees follows the mail edge's rule; the file keeps its own.
                docs.append((documents.safe_filename(f.claimed), path))
            elif is_yaml(f.original) and yaml is None:
                yaml = (f.claimed, path)
            elif is_csv(f.original) and csv is None:
                csv = (f.claimed, path)
        prepared = prepare_request(
            UnitFiles(tuple(docs), yaml, csv), self.config, self.context.numbers
        )
        limits = self.context.limits
        for document in prepared.request.documents:
            documents.inspect(document.path, document.filename, limits)
        # Validated and hashed here, in the thread that has just read the documents.
        return self.context.outbound.check(prepared.request)

    async def _refuse(self, claim: Claim, exc: Exception) -> None:
        if disk_full(exc):  # the disk, not the document: nothing to refuse
            await self._wait_for_space(claim, exc)
            return
        reason = str(exc)
        action = getattr(exc, "action", "") or _action_for(exc)
        try:
            path = await outcome.refuse(claim, self.config.failed_dir, reason, action, claim.dir.name)
        except OSError as err:
            if disk_full(err) and await asyncio.to_thread(files.read_refusal, claim.dir) is None:
                # Nothing went to failed/ yet (the refusal's note could not even be written).
                await self._wait_for_space(claim, err)
                return
            log.error("hotfolder %s: cannot move %s to %s: %s (left in %s)", self.label,
                      display_name(claim.key), self.config.failed_dir, err, claim.dir)
            return
        log.warning("hotfolder %s: ✗ %s → %s: %s", self.label, self._label(claim),
                    display_name(os.fspath(path.parent)), reason.splitlines()[0])

    async def _wait_for_space(self, claim: Claim, exc: BaseException) -> None:
        """A full disk: the unit goes back into the folder as it came (renames need no room) and
        is taken again after a while; nothing was journaled, nothing goes to failed/."""
        label = self._label(claim)
        if self.context.jobs.by_source(outcome.SOURCE, claim.ref) is not None:
            # Journaled after all (only making it durable failed): the job goes on from its claim.
            log.warning("hotfolder %s: %s: the disk is full (%s); its job goes on", self.label, label, exc)
            return
        retry = _DISK_FULL_RETRY
        if 0 < self.config.rescan_interval < retry:
            retry = self.config.rescan_interval
        names = [f.original for f in claim.files]
        # Held before the files reappear: their events must not make them be taken at once.
        self._held.update(names)
        asyncio.get_running_loop().call_later(retry, self._unhold, names)
        try:
            stuck = await asyncio.to_thread(files.put_back, claim)
        except OSError as err:  # the rest waits in the claim; the next rescan puts it back
            log.warning("hotfolder %s: %s not taken: the disk is full (%s); and it cannot go back"
                        " into the folder yet (%s), it waits in %s", self.label, label, exc,
                        err.strerror or err, claim.dir)
            return
        where = f"; {', '.join(map(display_name, stuck))} wait in {claim.dir}" if stuck else ""
        log.warning("hotfolder %s: %s left in the folder: the disk is full (%s); trying again in"
                    " %.0f s%s", self.label, label, exc, retry, where)

    def _unhold(self, names: list[str]) -> None:
        self._held.difference_update(names)
        if not self._stopping:
            self.context.spawn(self.scan(periodic=False))

    def _label(self, claim: Claim) -> str:
        name = display_name(claim.key)
        from_name = recipient_from_name(stem(name))
        if from_name is not None:
            name = name.replace(from_name.number, mask_number(from_name.number), 1)
        return f"{self.label}/{name}"

    # -- claims an earlier run left behind -------------------------------------------------

    async def recover(self) -> None:
        """Finish what a crash interrupted: unjournaled claims are checked and journaled (all
        files there) or put back (some missing); accepted jobs still in the claim go to sent/."""
        area = self.folder / files.CLAIM_AREA
        try:
            dirs = await asyncio.to_thread(lambda: sorted(p for p in area.iterdir() if p.is_dir()))
        except FileNotFoundError:
            return
        except OSError as exc:
            self.say_once("recover", logging.ERROR, "cannot read %s: %s", area, exc.strerror or exc)
            return
        jobs = self.context.jobs
        for directory in dirs:
            ref = os.fspath(directory)
            if ref in self.context.active_claims or self._stopping:
                continue
            job = jobs.by_source(outcome.SOURCE, ref)
            if job is not None:
                if job.state is JobState.SUBMITTED and not _placed_in(job, "sent_dir"):
                    await self.context.move_to_sent(job)
                elif job.state.is_final and job.reported_at is not None:
                    await asyncio.to_thread(files.release, directory)
                continue
            claim = await asyncio.to_thread(files.read_claim, directory)
            if claim is None:
                await asyncio.to_thread(files.release, directory)  # crashed before its manifest
                continue
            self.context.active_claims.add(ref)
            try:
                refusal = await asyncio.to_thread(files.read_refusal, directory)
                if refusal is not None:  # being refused when the crash came: finish that
                    await self._refuse(claim, Refusal(refusal["reason"], refusal["action"]))
                elif await asyncio.to_thread(files.present, claim):
                    log.info("hotfolder %s: resuming %s, taken before a restart", self.label, self._label(claim))
                    await self.handle_claim(claim)
                else:
                    stuck = await asyncio.to_thread(files.put_back, claim)
                    if stuck:
                        log.warning("hotfolder %s: an interrupted claim in %s holds %s; a newer file of"
                                    " that name is in the folder", self.label, directory,
                                    ", ".join(display_name(n) for n in stuck))
            finally:
                self.context.active_claims.discard(ref)

    def stop(self) -> None:
        self._stopping = True
        for t in self.tracked.values():
            self._cancel(t)


def _placed_in(job: Any, key: str) -> bool:
    placed = job.meta.get("placed")
    return bool(placed) and Path(placed["dir"]) == Path(job.meta[key])


def _action_for(exc: Exception) -> str:
    if isinstance(exc, DocumentError):
        return ("Check that the document opens, is not password-protected, and is of the type its name"
                " says (PDF, TIF, DOC, XLS, HTML, BMP); then drop it in again.")
    if isinstance(exc, NumberError):
        return "Correct the number (with area code, e.g. 040 1234567 or +49 40 1234567) and drop the file in again."
    if isinstance(exc, DuplicateJobError):
        return (f"It was not sent again. If it really must go twice, send it with `faxbridge send --force`"
                f" (see job {exc.existing_job_id} with `faxbridge status {exc.existing_job_id}`).")
    return "Correct the problem and drop the document in again."
