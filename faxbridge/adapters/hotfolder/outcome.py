"""What becomes of a hotfolder job's files: sent/ on acceptance, the status CSV at the end, or
failed/ with ``NAME.error.txt``.

Each step is idempotent and journaled as an intent first (``meta.placing``), then done, then
recorded (``meta.placed``), so a crash or a retried report never loses or doubles a file. The
journal is touched on the loop only; file work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from faxbridge.adapters import faxde_codes
from faxbridge.adapters.hotfolder import files
from faxbridge.adapters.hotfolder.files import Claim
from faxbridge.adapters.hotfolder.names import display_name, with_suffix
from faxbridge.adapters.reports import parse_status_file, write_atomically, write_report
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
    return {
        "folder": str(folder.path),
        "sent_dir": str(folder.sent_dir),
        "failed_dir": str(folder.failed_dir),
        "claim_dir": str(claim.dir),
        "claim": claim.to_json(),
        "label": label,
    }


def claim_of(job: Job) -> Claim:
    return Claim.from_json(Path(job.meta["claim_dir"]), job.meta["claim"])


class Outcomes:
    """The acceptance hook and the reporter of the hotfolder edge."""

    def __init__(self, journal: Journal, spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self.journal = journal
        self._spawn = spawn
        self._locks: dict[int, asyncio.Lock] = {}

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def accepted(self, job: Job) -> None:
        """The acceptance hook: moving the files must not hold up the core's send slot, so it
        runs on its own (a crash before it is finished is caught up by watcher.recover)."""
        self._spawn(self.move_to_sent(job))

    async def move_to_sent(self, job: Job) -> None:
        """FAX.de accepted the job: the original moves to sent/ (its bytes are no longer needed)."""
        async with self._lock(job.id):
            job = self.journal.jobs.get(job.id)
            if job.state is not JobState.SUBMITTED and job.state not in SENT_STATES:
                return
            where = await self._place(job, Path(job.meta["sent_dir"]))
            log.info("job %d: %s → %s", job.id, job.meta.get("label", "?"), where)

    async def report(self, job: Job) -> None:
        """The job is final: status CSV in sent/, or the files to failed/ with NAME.error.txt."""
        async with self._lock(job.id):
            job = self.journal.jobs.get(job.id)
            claim = claim_of(job)
            if job.state in SENT_STATES:
                target, suffix = await self._place(job, Path(job.meta["sent_dir"]), suffix_only=True)
                path = target / files.report_name(claim.stem, suffix, "report")
                await asyncio.to_thread(write_report, job, status_rows(job), path)
                log.info("job %d: status report %s", job.id, display_name(str(path)))
            else:
                target, suffix = await self._place(job, Path(job.meta["failed_dir"]), suffix_only=True)
                path = target / files.report_name(claim.stem, suffix, "error")
                text = error_text_for_job(job, self._detail(job), [f.original for f in claim.files if f.document])
                await asyncio.to_thread(write_atomically, path, text.encode("utf-8"))
                log.warning("job %d: %s → %s (%s)", job.id, job.meta.get("label", "?"), target,
                            job.last_error or job.state.value)
            crash_point("hotfolder.after_report")
            await asyncio.to_thread(files.release, claim.dir)
        self._locks.pop(job.id, None)

    def _detail(self, job: Job) -> str:
        if job.state is JobState.CANCELLED:
            events = self.journal.jobs.events(job.id)
            detail = events[-1][2] if events else ""
            return f"cancelled by the operator ({detail})" if detail else "cancelled by the operator"
        return job.last_error or f"the job ended as {job.state.value}"

    async def _note(self, job: Job, *, wait: bool = True, **changes: Any) -> Job:
        """Journal where the files are going or went. ``wait``: durably before going on; the fsync
        runs off the loop and is shared with other commits (it blocked the loop once per note: a
        third of its time in a burst of files, bench.hotfolder_burst)."""
        job = self.journal.jobs.update_meta(job.id, durable=False, **changes)
        if wait:
            await self.journal.sync_async()
        return job

    async def _place(self, job: Job, target: Path, *, suffix_only: bool = False) -> Any:
        """Move the claim's files to ``target`` (idempotent). Returns the folder shown in the log,
        or with ``suffix_only`` (target, suffix) for naming the reports."""
        claim = claim_of(job)
        placed = job.meta.get("placed")
        if placed and Path(placed["dir"]) == target:
            return (target, placed["suffix"]) if suffix_only else target
        abandoned: list[dict[str, str]] = []  # intents given up: some files may have gone there
        for _ in range(3):
            intent = job.meta.get("placing")
            if not intent or Path(intent["dir"]) != target:
                originals = [f.original for f in claim.files]
                suffix = await asyncio.to_thread(
                    files.choose_suffix, target, originals, claim.stem, f"job {job.id}"
                )
                intent = {"dir": str(target), "suffix": suffix}
                job = await self._note(job, placing=intent)
            crash_point("hotfolder.before_move")
            moves = [
                (_places(job, claim, f.original, f.claimed, abandoned),
                 target / with_suffix(f.original, intent["suffix"]))
                for f in claim.files
            ]
            try:
                lost = await asyncio.to_thread(files.move_all, moves)
            except FileExistsError:
                # The chosen names were taken meanwhile (by hand?): choose again, never overwrite.
                abandoned.append(intent)
                job = await self._note(job, placing=None)
                continue
            crash_point("hotfolder.after_move")
            for path in lost:
                log.warning("job %d: %s is missing; it was moved or deleted by someone else",
                            job.id, display_name(path.name))
            # Not waited for: lost in a power cut, the intent above is still journaled and the next
            # attempt finds the files at their destination (move_all), then notes this again.
            job = await self._note(job, wait=False, placed=intent, placing=None)
            return (target, intent["suffix"]) if suffix_only else target
        raise OSError(f"cannot find free names in {target}")


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
