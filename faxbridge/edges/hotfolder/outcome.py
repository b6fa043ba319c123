"""What becomes of a hotfolder job's files: sent/ on acceptance, the status CSV at the end, or
failed/ with ``NAME.error.txt``.

Each step is idempotent and journaled as an intent first (``meta.placing``), then done, then
recorded (``meta.placed``), so a crash or a retried report never loses or doubles a file. The
journal is touched on the loop only; file work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from faxbridge.faxde import codes as faxde_codes
from faxbridge.edges.hotfolder import files
from faxbridge.edges.hotfolder.files import Claim
from faxbridge.edges.hotfolder.names import display_name, with_suffix
from faxbridge.faxde.statusfile import parse_status_file
from faxbridge.fsutil import write_atomically
from faxbridge.reports import write_report
from faxbridge import sendreport
from faxbridge.crashpoints import crash_point
from faxbridge.journal import Journal
from faxbridge.model import Job, JobState, StatusRow

log = logging.getLogger(__name__)

SOURCE = "hotfolder"

# Final states whose original belongs in sent/: FAX.de took the job. Busy, No Answer … (FAILED)
# are reported the same way, in the status CSV next to the original.
SENT_STATES = frozenset({JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED, JobState.CONFIRMED})


def job_meta(claim: Claim, folder: Any, label: str) -> dict[str, Any]:
    """What the edge needs later, journaled with the job (folders as configured at claim time)."""
    meta: dict[str, Any] = {
        "folder": str(folder.path),
        "sent_dir": str(folder.sent_dir),
        "failed_dir": str(folder.failed_dir),
        "claim_dir": str(claim.dir),
        "claim": claim.to_json(),
        "label": label,
    }
    if getattr(folder, "report_pdf", False):
        meta["report_pdf"] = True
    return meta


def claim_of(job: Job) -> Claim:
    return Claim.from_json(Path(job.meta["claim_dir"]), job.meta["claim"])


class Outcomes:
    """The acceptance hook and the reporter of the hotfolder edge."""

    def __init__(self, journal: Journal, spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self.journal = journal
        self._spawn = spawn
        self._locks: dict[int, asyncio.Lock] = {}
        self._to_file: list[Job] = []  # accepted jobs whose files wait to be moved to sent/
        self._filer: asyncio.Task[None] | None = None

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def accepted(self, job: Job) -> None:
        """The acceptance hook: moving the files must not hold up the core's send slot, so it
        runs on its own (a crash before it is finished is caught up by watcher.recover), and
        with the files of the jobs accepted meanwhile: one journal commit and one fsync per
        folder for a batch, not for each file (filing each job on its own cost a burst of files
        1.2–1.9 ms of CPU per job, batched it costs 0.5 ms: bench.hotfolder_burst)."""
        self._to_file.append(job)
        if self._filer is None or self._filer.done():
            self._filer = self._spawn(self._file_accepted())

    async def _file_accepted(self) -> None:
        while self._to_file:
            # Jobs are accepted a few at a time: waiting a moment lets a burst's batches grow
            # from ~3 jobs to dozens (the files only sit in their claim a moment longer).
            await asyncio.sleep(_FILING_GATHER)
            batch, self._to_file = self._to_file[:_FILING_BATCH], self._to_file[_FILING_BATCH:]
            try:
                await self.move_to_sent(*batch)
            except Exception:  # the report, or the next start, moves them (both look first)
                log.exception("moving %d accepted job(s) to sent/ failed", len(batch))

    async def move_to_sent(self, *jobs: Job) -> None:
        """FAX.de accepted the jobs: their originals move to sent/ (the bytes are no longer needed)."""
        ids = sorted({job.id for job in jobs})
        async with contextlib.AsyncExitStack() as locks:
            for job_id in ids:
                await locks.enter_async_context(self._lock(job_id))
            current = [self.journal.jobs.get(job_id) for job_id in ids]
            due = [job for job in current if job.state is JobState.SUBMITTED or job.state in SENT_STATES]
            if not due:
                return
            placed, failed = await self._place_all(due, "sent_dir")
            for job in due:
                if job.id in placed:
                    log.info("job %d: %s → %s", job.id, job.meta.get("label", "?"), placed[job.id][0])
                elif job.id in failed:
                    log.error("job %d: cannot move %s to %s: %s", job.id, job.meta.get("label", "?"),
                              job.meta["sent_dir"], failed[job.id])

    async def report(self, job: Job) -> None:
        """The job is final: status CSV in sent/, or the files to failed/ with NAME.error.txt."""
        async with self._lock(job.id):
            job = self.journal.jobs.get(job.id)
            claim = claim_of(job)
            sent = job.state in SENT_STATES
            placed, failed = await self._place_all([job], "sent_dir" if sent else "failed_dir")
            if job.id in failed:
                raise failed[job.id]
            target, suffix = placed[job.id]
            if sent:
                path = target / files.report_name(claim.stem, suffix, "report")
                await asyncio.to_thread(write_report, job, status_rows(job), path)
                log.info("job %d: status report %s", job.id, display_name(str(path)))
                if job.meta.get("report_pdf"):
                    await self._write_send_report(job, claim, target, suffix)
            else:
                path = target / files.report_name(claim.stem, suffix, "error")
                text = error_text_for_job(job, self._detail(job), [f.original for f in claim.files if f.document])
                await asyncio.to_thread(write_atomically, path, text.encode("utf-8"))
                log.warning("job %d: %s → %s (%s)", job.id, job.meta.get("label", "?"), target,
                            job.last_error or job.state.value)
            crash_point("hotfolder.after_report")
            await asyncio.to_thread(files.release, claim.dir)
        self._locks.pop(job.id, None)

    async def _write_send_report(self, job: Job, claim: Claim, target: Path, suffix: str) -> None:
        """NAME.report.pdf beside the original in sent/ (hotfolders[].report_pdf)."""
        documents = [target / with_suffix(f.original, suffix) for f in claim.files if f.document]
        path = target / files.report_name(claim.stem, suffix, "send_report")

        def work() -> None:
            write_atomically(path, sendreport.render(job, self.journal, documents))

        await asyncio.to_thread(work)
        log.info("job %d: send report %s", job.id, display_name(str(path)))

    def _detail(self, job: Job) -> str:
        if job.state is JobState.CANCELLED:
            events = self.journal.jobs.events(job.id)
            detail = events[-1][2] if events else ""
            return f"cancelled by the operator ({detail})" if detail else "cancelled by the operator"
        return job.last_error or f"the job ended as {job.state.value}"

    async def _note_all(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> list[Job]:
        """Journal, durably, where the files of jobs are going; the fsync runs off the loop and is
        shared with other commits (it blocked the loop once per note: a third of its time in a
        burst of files, bench.hotfolder_burst)."""
        jobs = self.journal.jobs.update_meta_many(updates, durable=False)
        await self.journal.sync_async()
        return jobs

    async def _place_all(
        self, jobs: Sequence[Job], key: str
    ) -> tuple[dict[int, tuple[Path, str]], dict[int, Exception]]:
        """Move each job's claimed files to the folder in its ``meta[key]`` (idempotent).

        Returns where each job's files are now (folder, name suffix), and what kept the others.
        The intents are journaled first (one commit, durable), the files moved in one worker-thread
        hop with one fsync per folder, and the outcomes journaled (one commit).
        """
        placed: dict[int, tuple[Path, str]] = {}
        failed: dict[int, Exception] = {}
        pending: list[Job] = []
        for job in jobs:
            done = job.meta.get("placed")
            if done and Path(done["dir"]) == Path(job.meta[key]):
                placed[job.id] = (Path(job.meta[key]), done["suffix"])
            else:
                pending.append(job)
        # Intents given up, by job: some of its files may have gone there.
        abandoned: dict[int, list[dict[str, str]]] = {job.id: [] for job in pending}
        for _ in range(3):
            if not pending:
                break
            fresh = [job for job in pending if not _intends(job, Path(job.meta[key]))]
            if fresh:
                suffixes = await asyncio.to_thread(_choose_suffixes, fresh, key)
                noted = await self._note_all(
                    [(job.id, {"placing": {"dir": job.meta[key], "suffix": suffix}})
                     for job, suffix in zip(fresh, suffixes)]
                )
                renewed = {job.id: job for job in noted}
                pending = [renewed.get(job.id, job) for job in pending]
            crash_point("hotfolder.before_move")
            outcomes = await asyncio.to_thread(_move_jobs, pending, abandoned)
            crash_point("hotfolder.after_move")
            notes, again = [], []
            for job, outcome in zip(pending, outcomes):
                intent = job.meta["placing"]
                if isinstance(outcome, FileExistsError):
                    # The chosen names were taken meanwhile (by hand?): choose again, never overwrite.
                    abandoned[job.id].append(intent)
                    again.append(job)
                elif isinstance(outcome, Exception):
                    failed[job.id] = outcome
                else:
                    for path in outcome:
                        log.warning("job %d: %s is missing; it was moved or deleted by someone else",
                                    job.id, display_name(path.name))
                    placed[job.id] = (Path(intent["dir"]), intent["suffix"])
                    notes.append((job.id, {"placed": intent, "placing": None}))
            if notes:
                # Not waited for: lost in a power cut, the intents are still journaled and the next
                # attempt finds the files at their destination (move_all), then notes this again.
                self.journal.jobs.update_meta_many(notes, durable=False)
            pending = await self._note_all([(job.id, {"placing": None}) for job in again]) if again else []
        for job in pending:
            failed[job.id] = OSError(f"cannot find free names in {job.meta[key]}")
        return placed, failed


# Accepted jobs moved to sent/ per batch (per worker-thread hop, journal commit and folder fsync).
_FILING_BATCH = 200
_FILING_GATHER = 0.1  # seconds


def _intends(job: Job, target: Path) -> bool:
    intent = job.meta.get("placing")
    return bool(intent) and Path(intent["dir"]) == target


def _choose_suffixes(jobs: Sequence[Job], key: str) -> list[str]:
    """A name suffix per job for its folder in ``meta[key]``; two jobs of a batch with the same
    names get different ones (neither file is there yet to be seen)."""
    reserved: dict[str, set[str]] = {}
    suffixes = []
    for job in jobs:
        claim = claim_of(job)
        target = job.meta[key]
        suffixes.append(files.choose_suffix(
            Path(target), [f.original for f in claim.files] + converted_names(job, claim), claim.stem, f"job {job.id}",
            reserved.setdefault(target, set()),
        ))
    return suffixes


def _move_jobs(jobs: Sequence[Job], abandoned: dict[int, list[dict[str, str]]]) -> list[list[Path] | Exception]:
    """Each job's files to its ``placing`` intent; per job the files found nowhere, or what failed.
    The folders moved into are fsynced once, after all moves (a failed fsync fails them all)."""
    touched: set[Path] = set()
    results: list[list[Path] | Exception] = []
    for job in jobs:
        claim, intent = claim_of(job), job.meta["placing"]
        target = Path(intent["dir"])
        moves = [
            (_places(job, claim, f.original, f.claimed, abandoned[job.id]),
             target / with_suffix(f.original, intent["suffix"]))
            for f in claim.files
        ]
        # The PDFs made from images, text or Office files go beside their originals (NAME.fax.pdf).
        moves += [
            (_places(job, claim, name, f"{files.CONVERTED_DIR}/{name}", abandoned[job.id]),
             target / with_suffix(name, intent["suffix"]))
            for name in converted_names(job, claim)
        ]
        try:
            results.append(files.move_all(moves, touched))
        except OSError as exc:
            results.append(exc)
    try:
        for folder in touched:
            files.fsync_dir(folder)
    except OSError as exc:
        return [result if isinstance(result, Exception) else exc for result in results]
    return results


def converted_names(job: Job, claim: Claim) -> list[str]:
    """The names of the job's documents that were converted in its claim (NAME.fax.pdf)."""
    converted = claim.dir / files.CONVERTED_DIR
    return [d.path.name for d in job.request.documents if d.path.parent == converted]


def _places(
    job: Job, claim: Claim, original: str, claimed: str, abandoned: Sequence[dict[str, str]] = ()
) -> list[Path]:
    """Where a file of the job may be now: the claim, or an earlier (possibly unfinished) placement."""
    candidates = [claim.dir / claimed]
    for spot in [job.meta.get("placed"), job.meta.get("placing"), *abandoned]:
        if spot:
            candidates.append(Path(spot["dir"]) / with_suffix(original, spot["suffix"]))
    return candidates


async def refuse(claim: Claim, failed_dir: Path, reason: str, action: str, fallback: str) -> Path:
    """A unit that never became a job: its files to failed/ with NAME.error.txt. Returns the
    error file's path.

    The intent (folder, name suffix, reason) is recorded in the claim before a file moves; a
    refusal begun before a crash is finished with what was recorded then, whatever is passed now.
    """

    def work() -> Path:
        originals = [f.original for f in claim.files]
        intent = files.read_refusal(claim.dir)
        abandoned: list[str] = []  # suffixes given up: some files may have gone there
        for _ in range(3):
            if intent is None:
                intent = {
                    "failed_dir": str(failed_dir),
                    "suffix": files.choose_suffix(failed_dir, originals, claim.stem, fallback),
                    "reason": reason,
                    "action": action,
                }
                files.write_refusal(claim, intent)
            target, suffix = Path(intent["failed_dir"]), intent["suffix"]
            crash_point("hotfolder.before_refusal_move")
            moves = [
                ([claim.path(f), *(target / with_suffix(f.original, s) for s in abandoned)],
                 target / with_suffix(f.original, suffix))
                for f in claim.files
            ]
            try:
                files.move_all(moves)
            except FileExistsError:
                abandoned.append(suffix)
                intent = None
                continue
            path = target / files.report_name(claim.stem, suffix, "error")
            target.mkdir(parents=True, exist_ok=True)
            documents = [f.original for f in claim.files if f.document] or originals
            text = error_text(documents, intent["reason"], intent["action"], folder=claim.folder)
            write_atomically(path, text.encode("utf-8"))
            files.release(claim.dir)
            return path
        raise OSError(f"cannot find free names in {failed_dir}")

    return await asyncio.to_thread(work)


# -- the texts -----------------------------------------------------------------------------


def status_rows(job: Job) -> tuple[StatusRow, ...]:
    """The provider's StatusFile rows; for a single-recipient job without one, a row made from
    SendResult; for a confirmed job (JobId lost, -77) one row per recipient saying so."""
    rows = parse_status_file(job.status_file)
    if rows:
        return rows
    kind = job.request.job_type.value.upper()
    pages = str(job.page_count) if job.page_count is not None else ""
    recipients = job.request.recipients or ()
    if job.state is JobState.CONFIRMED:
        result = "unknown: FAX.de has the job (answered -77 to a re-send) but its JobId was lost"
    else:
        result = job.send_result or job.state.value
    if not recipients:
        return (StatusRow("", kind, result, pages=pages),)
    return tuple(StatusRow(r.address, kind, result, pages=pages, ref_id=r.reference) for r in recipients)


_GAVE_UP = (
    "FAX.de could not be reached or kept failing. Check the network and the faxbridge log, then"
    " drop the document in again."
)


def error_text_for_job(job: Job, reason: str, documents: Sequence[str]) -> str:
    code = job.last_error_code if job.state is JobState.REJECTED else None
    if job.state is JobState.CANCELLED:
        action = "Nothing was sent by faxbridge after the cancel. Drop the document in again to send it after all."
    elif reason.startswith(("rejected by ", "not approved within ")):  # the approval stage said no
        action = ("It was held for approval and not approved, so nothing was sent. Drop it in again"
                  " only if it should be sent after all; it will wait for approval again.")
    elif code is not None and not reason.startswith("gave up"):
        action = faxde_codes.lookup("SendJob", code).action
    elif reason.startswith("gave up"):
        action = _GAVE_UP
    else:
        action = "Check the faxbridge log for details, then drop the document in again."
    folder = job.meta.get("folder")
    return error_text(
        documents, reason, action, code=code, job_id=job.id, faxde_job_id=job.faxde_job_id,
        folder=Path(folder) if folder else None,
    )


def error_text(
    documents: Sequence[str],
    reason: str,
    action: str,
    *,
    code: int | None = None,
    job_id: int | None = None,
    faxde_job_id: int | None = None,
    folder: Path | None = None,
    now: dt.datetime | None = None,
) -> str:
    """NAME.error.txt: what happened, FAX.de's code and its meaning, and what to do."""
    names = ", ".join(f'"{display_name(d)}"' for d in documents) or "(no document)"
    lines = [f"faxbridge did not send {names}.", "", f"What happened: {reason}"]
    if code is not None:
        entry = faxde_codes.lookup("SendJob", code)
        lines.append(f"FAX.de result: {code} ({entry.name}) - {entry.sentence}")
    lines += ["", f"What to do: {action}" if action else "What to do: see the faxbridge log.", ""]
    if job_id is not None:
        lines.append(f"faxbridge job: {job_id}" + (f" (FAX.de JobId {faxde_job_id})" if faxde_job_id else ""))
    if folder is not None:
        lines.append(f"Folder: {display_name(str(folder))}")
    when = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines.append(f"Time: {when}")
    return "\n".join(lines) + "\n"
