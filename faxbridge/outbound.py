"""The outbound core: journal a job, send it once, follow it to its end, hand it to its reporter.

Edges (hotfolders, SMTP, CLI) build a SendRequest and call ``submit``; from then on the journal
holds the job and this module decides. The rules that protect money and documents live here:
a job is journaled before SendJob, marked 'submitting' durably before the request leaves, and a
SendJob whose outcome is unknown is never repeated blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faxbridge.approval import HoldPolicy
from faxbridge.callbacks import CallbackTokens
from faxbridge.crashpoints import crash_point
from faxbridge.errors import DocumentError, FaxbridgeError, JournalError, ProviderError, disk_full
from faxbridge.journal import Journal
from faxbridge.journal.jobs import Ambiguity, TransitionError
from faxbridge.model import Job, JobState, JobStatusReport, Recipient, SendRequest
from faxbridge.provider import ProviderCalls

log = logging.getLogger(__name__)

Reporter = Callable[[Job], Awaitable[None]]
HoldHook = Callable[[Job, str], Awaitable[None]]  # (the held job, why it is held)
RecipientCheck = Callable[[str, str], str]  # (address, purpose) → normalised, or NumberError


@dataclass(frozen=True)
class OutboundSettings:
    max_attempts: int = 8  # SendJob attempts for transient errors before the job is rejected
    initial_delay: float = 30.0
    max_delay: float = 3600.0
    duplicate_window: float = 86400.0
    status_interval: float = 60.0
    status_max_interval: float = 900.0
    # After an unknown SendJob outcome, re-send the identical request only until this long after
    # the first such request left: FAX.de then answers -77 if that request did arrive. Later, only
    # the operator decides (faxbridge retry / cancel). How long FAX.de recognises a twin is not in
    # its description (README, "How a job lives"): the default is a cautious guess.
    reconcile_window: float = 30.0
    # Account problems that may clear on their own (credit, payment) are probed this often.
    account_pause: float = 1800.0


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Delay before attempt ``attempt + 1``: initial, 2×, 4× … capped at maximum."""
    return min(maximum, initial * (2 ** max(0, attempt - 1)))


def next_reconcile_at(ambiguity: Ambiguity, now: float, settings: OutboundSettings) -> float | None:
    """When to re-send a job whose outcome is unknown; None once the reconcile window has passed.

    The usual backoff (initial_delay doubling up to max_delay), counted from the last request's
    departure — not from now, so that a restart never re-arms it — and at most half of what is
    left of the window, so that a re-send that fails again still has a chance within it."""
    # A re-send must *arrive* within FAX.de's window, and it leaves some seconds before it
    # arrives (connection, upload): the last one leaves a margin before the deadline.
    deadline = ambiguity.since + settings.reconcile_window - reconcile_margin(settings.reconcile_window)
    if settings.reconcile_window <= 0 or now >= deadline:
        return None
    if now < ambiguity.last_sent:
        # The clock was set back (a reboot without a real-time clock, an NTP step): how long ago
        # the request left cannot be told, so FAX.de's window may have passed.
        return None
    delay = backoff(ambiguity.resends + 1, settings.initial_delay, settings.max_delay)
    return min(max(now, ambiguity.last_sent + delay), now + (deadline - now) / 2)


JOURNAL_RETRY = 2.0  # seconds the sender waits when the journal cannot be read
ORPHANED_AFTER = 900.0  # seconds a job may stay 'submitting' before it counts as abandoned


def reconcile_margin(window: float) -> float:
    """How long before the end of the reconcile window the last re-send must have left."""
    return min(5.0, window * 0.2)


def mask_number(address: str) -> str:
    """Enough of a number for a log line to be useful, not enough to be a contact list."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:2]}…@{domain}"
    return address[:7] + "…" if len(address) > 8 else address


def describe_recipients(request: SendRequest) -> str:
    if not request.recipients:
        return "(address in document)"
    first = mask_number(request.recipients[0].address)
    extra = len(request.recipients) - 1
    return first + (f" +{extra} more" if extra else "")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 18):  # 256 KiB: hashing must not cost the memory of a document
            digest.update(block)
    return digest.hexdigest()


def content_key(request: SendRequest) -> str:
    """What makes two jobs 'the same send': type, recipients, text, options, documents' bytes.

    Reads every document: call it from a worker thread.
    """
    return content_key_and_digests(request)[0]


def content_key_and_digests(request: SendRequest) -> tuple[str, tuple[str, ...]]:
    """content_key, and the SHA-256 of each document (the send report shows what was sent)."""
    digest = hashlib.sha256()
    documents = []
    for part in (
        request.job_type.value,
        "\n".join(sorted(r.for_faxde() for r in request.recipients)),
        request.text,
        request.options_string,
        request.send_at.isoformat() if request.send_at else "",
    ):
        digest.update(part.encode("utf-8") + b"\0")
    for document in request.documents:
        documents.append(file_digest(document.path))
        digest.update(document.filename.encode("utf-8") + b"\0")
        # A converted document is the same send when its originals are the same: a conversion
        # need not give the same bytes twice (LibreOffice, a newer Pillow).
        for part in [file_digest(p) for p in document.sources] or [documents[-1]]:
            digest.update(part.encode() + b"\0")
    return digest.hexdigest(), tuple(documents)


@dataclass(frozen=True)
class Checked:
    """A request that passed Outbound.check: validated, with its content key."""

    request: SendRequest
    content_key: str
    digests: tuple[str, ...] = ()  # SHA-256 of each document, in order


# Seconds the sender waits before trying again when the journal's disk is full.
DISK_FULL_RETRY = 5.0

# Account errors that never clear on their own: the configuration must change.
_CREDENTIAL_ERRORS = frozenset(
    {"WRONG_PASSWORD", "UNKNOWN_CUSTOMER", "NOT_AUTHORIZED", "BLANK_CUSTOMER", "WRONG_CREDENTIALS"}
)


class Outbound:
    """Owns sending and status polling; one instance per daemon (or per CLI command)."""

    def __init__(
        self,
        journal: Journal,
        provider: ProviderCalls,
        *,
        check_recipient: RecipientCheck,
        settings: OutboundSettings = OutboundSettings(),
        clock: Callable[[], float] = time.time,
        callbacks: CallbackTokens | None = None,
        hold_policy: HoldPolicy | None = None,
        hold_expiry: float = 0.0,
    ) -> None:
        self.journal = journal
        self.hold_policy = hold_policy if hold_policy is not None and not hold_policy.empty else None
        self.hold_expiry = hold_expiry  # a held job not approved within this is rejected; 0: never
        self._hold_hooks: list[HoldHook] = []
        self.callbacks = callbacks  # FAX.de's status callback (STATURL), where one is reachable
        # Jobs whose SendJob answer could not be journaled (a full disk): still 'submitting'.
        self._unrecorded: set[int] = set()
        self.provider = provider
        self.settings = settings
        self._check_recipient = check_recipient
        self._clock = clock
        self._reporters: dict[str, Reporter] = {}
        # Reports that failed (a folder not writable, the disk full): retried with backoff.
        self._report_failures: dict[int, int] = {}
        self._report_retry_at: dict[int, float] = {}
        self._on_accepted: dict[str, Reporter] = {}
        self._send_slots = asyncio.Semaphore(provider.concurrency)
        self._in_flight: dict[int, asyncio.Task[Job]] = {}
        self._polling: set[int] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.paused: str | None = None  # why all sending is paused, for health and logs
        self._paused_until: float | None = None  # None while paused = until restart/reload
        # The journal's disk is full: no job can be marked 'submitting', so none is sent; the
        # sender looks again at this time instead of at once (it spun, a traceback per turn).
        self._disk_full_until: float | None = None
        # With other nodes sharing the journal: the sender looks for due jobs at least this often.
        self.idle_poll: float | None = None

    # -- intake ----------------------------------------------------------------------------

    def add_reporter(self, source: str, reporter: Reporter) -> None:
        """``reporter(job)`` runs once a job from ``source`` is final; it must be idempotent."""
        self._reporters[source] = reporter

    def add_acceptance_hook(self, source: str, hook: Reporter) -> None:
        """``hook(job)`` runs when FAX.de has accepted a job from ``source`` (state submitted).

        Best effort: a hook that raises is logged and not retried, and a crash can fall between
        the journal's 'submitted' and the hook, so an edge must catch up on its own at start-up.
        """
        self._on_accepted[source] = hook

    def validate(self, request: SendRequest) -> SendRequest:
        """Recipient rules applied again here, whatever the edge did: no premium number gets past."""
        if request.job_type.needs_recipient and not request.recipients:
            raise FaxbridgeError(f"a {request.job_type} job needs a recipient")
        if not request.text and not request.documents:
            raise FaxbridgeError("nothing to send: neither a text nor a document")
        if not request.job_type.dials_numbers:
            return request
        purpose = request.job_type.value
        checked = tuple(
            Recipient(self._check_recipient(r.address, purpose), r.reference)
            for r in request.recipients
        )
        return SendRequest(
            job_type=request.job_type,
            recipients=checked,
            documents=request.documents,
            text=request.text,
            send_at=request.send_at,
            options=request.options,
        )

    def check(self, request: SendRequest) -> Checked:
        """validate() and the content key at once, for an edge's worker thread (the key reads
        every document): submitting a Checked request needs no thread hop of its own."""
        request = self.validate(request)
        return Checked(request, *content_key_and_digests(request))

    async def submit(
        self,
        request: SendRequest | Checked,
        *,
        source: str,
        source_ref: str,
        meta: dict[str, Any] | None = None,
        allow_duplicate: bool = False,
        hold: str | None = None,
    ) -> Job:
        """Validate and journal a job (state queued), then wake the sender. Returns the job.

        ``hold`` (a reason) — or an approval rule of the config — journals it as held instead: it
        waits for ``approve`` or ``reject``. Raises NumberError/FaxbridgeError for bad input and
        DuplicateJobError for a recent twin; the same (source, source_ref) returns the job
        already journaled for it.
        """
        existing = self.journal.jobs.by_source(source, source_ref)
        if existing is not None:
            return existing
        if isinstance(request, Checked):
            key, digests = request.content_key, request.digests
            request = request.request
        else:
            request = self.validate(request)
            # Thread seam: hashing documents reads whole files.
            key, digests = await asyncio.to_thread(content_key_and_digests, request)
        if digests:
            meta = {**(meta or {}), "sha256": list(digests)}
        if hold is None and self.hold_policy is not None:
            hold = await self._hold_reason(request, source, meta or {})
        job, created = self.journal.jobs.add(
            request,
            source=source,
            source_ref=source_ref,
            content_key=key,
            meta=meta,
            duplicate_window=0.0 if allow_duplicate else self.settings.duplicate_window,
            durable=False,
            hold=hold,
        )
        # The edge acknowledges its input once this returns: on disk, not only in the OS.
        await self.journal.sync_async()
        crash_point("outbound.after_journal")
        if created:
            log.info(
                "job %d ← %s %s → %s (%s)",
                job.id, source, meta.get("label", source_ref) if meta else source_ref,
                describe_recipients(request), request.job_type,
            )
            if job.state is JobState.HELD:
                log.info("job %d held for approval: %s", job.id, hold)
                await self._tell_hold_hooks(job, hold or "")
        self._wake.set()
        return job

    # -- approval --------------------------------------------------------------------------

    def add_hold_hook(self, hook: HoldHook) -> None:
        """``hook(job, reason)`` runs when a new job is held (to tell the approvers); best effort."""
        self._hold_hooks.append(hook)

    async def _hold_reason(self, request: SendRequest, source: str, meta: dict[str, Any]) -> str | None:
        assert self.hold_policy is not None
        # Thread seam: a page rule reads the documents, the others query the journal.
        return await asyncio.to_thread(self.hold_policy.reason_for, request, source, meta, self.journal)

    async def _tell_hold_hooks(self, job: Job, reason: str) -> None:
        for hook in self._hold_hooks:
            try:
                await hook(job, reason)
            except Exception:  # the job is held and listed either way; only the mail is missing
                log.exception("job %d: telling the approvers failed", job.id)

    def _held(self, job_id: int, verb: str) -> Job:
        job = self.journal.jobs.get(job_id)
        if job.state is not JobState.HELD:
            raise FaxbridgeError(f"job {job_id} is {job.state}, not held; there is nothing to {verb}")
        return job

    async def approve(self, job_id: int, user: str) -> Job:
        """An approver said yes: held → queued, and the sender is woken."""
        self._held(job_id, "approve")
        job = self.journal.jobs.release(job_id, f"approved by {user}")
        self.journal.audit.record(user, "approve", job_id, "")
        log.info("job %d approved by %s", job_id, user)
        self._wake.set()
        return job

    async def reject(self, job_id: int, user: str, reason: str) -> Job:
        """An approver said no: held → rejected, and the edge reports it with the reason."""
        self._held(job_id, "reject")
        reason = reason.strip() or "no reason given"
        job = self.journal.jobs.mark_rejected(job_id, f"rejected by {user}: {reason}")
        self.journal.audit.record(user, "reject", job_id, reason)
        log.warning("job %d rejected by %s: %s", job_id, user, reason)
        return await self._finish(job)

    async def expire_held(self) -> list[Job]:
        """Held jobs older than ``hold_expiry`` are rejected with that reason (0: they wait forever)."""
        if self.hold_expiry <= 0:
            return []
        cutoff = self._clock() - self.hold_expiry
        expired = []
        for job in self.journal.jobs.in_states(JobState.HELD):
            if job.created_at is not None and job.created_at.timestamp() <= cutoff:
                reason = f"not approved within {_duration_words(self.hold_expiry)} (approval.expiry)"
                try:
                    job = self.journal.jobs.mark_rejected(job.id, reason)
                except JournalError as exc:  # approved meanwhile by another process
                    log.info("job %d: not expired: %s", job.id, exc)
                    continue
                self.journal.audit.record("faxbridge", "expire", job.id, reason)
                log.warning("job %d rejected: %s", job.id, reason)
                expired.append(await self._finish(job))
        return expired

    # -- sending ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The sender loop: sends every due job, sleeps until the next one is due or a wake-up."""
        if self.idle_poll is not None:
            # Jobs journaled by other nodes wake this loop (LISTEN/NOTIFY); idle_poll stays behind it.
            loop = asyncio.get_running_loop()
            self.journal.listen_jobs(lambda: loop.call_soon_threadsafe(self._wake.set))
        journal_down = False
        while not self._stopping:
            try:
                next_due = await self.send_due()
            except JournalError as exc:
                # The journal is away for a moment (PostgreSQL restarting, a connection cut, the
                # disk busy): nothing was sent; look again shortly, say so once per outage.
                if not journal_down:
                    log.warning("sending waits: the journal cannot be read (%s)", exc)
                journal_down = True
                next_due = self._clock() + JOURNAL_RETRY
            else:
                if journal_down:
                    log.warning("sending resumes: the journal can be read again")
                journal_down = False
            self._wake.clear()
            timeout = None if next_due is None else max(0.05, next_due - self._clock())
            if self.idle_poll is not None:
                # Other nodes journal jobs too, and their wake-ups do not reach this loop.
                timeout = self.idle_poll if timeout is None else min(timeout, self.idle_poll)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def send_due(self) -> float | None:
        """Start a send for every due queued job; returns when the next job will be due."""
        now = self._clock()
        if self._disk_full_until is not None and now < self._disk_full_until:
            return self._disk_full_until
        if self.paused is not None:
            if self._paused_until is None or now < self._paused_until:
                return self._paused_until
            log.warning("sending resumes after an account pause: %s", self.paused)
            self.paused = None
        # Only as many sends as can start soon (a slot each, and one waiting per slot); each
        # finished send wakes this loop for the next. Starting a task for every due job, and
        # reading every due id again at each wake-up, made a backlog of n jobs cost n².
        wanted = 2 * self.provider.concurrency - len(self._in_flight)
        if wanted <= 0:
            return None
        for job_id in self.journal.jobs.due_for_submit(now, limit=len(self._in_flight) + wanted):
            if job_id not in self._in_flight and wanted > 0:
                self._start_send(job_id)
                wanted -= 1
        return self.journal.jobs.next_attempt_at()

    def _start_send(self, job_id: int, *, by_operator: bool = False) -> asyncio.Task[Job]:
        task = asyncio.get_running_loop().create_task(
            self._send(job_id, by_operator=by_operator), name=f"send-job-{job_id}")
        self._in_flight[job_id] = task
        task.add_done_callback(lambda done: self._sent(job_id, done))
        return task

    def _sent(self, job_id: int, task: asyncio.Task[Job] | None = None) -> None:
        self._in_flight.pop(job_id, None)
        if task is not None and not task.cancelled() and isinstance(task.exception(), JournalError):
            # Read here, so the loop does not report it as never retrieved; whoever awaits the
            # task (send_now) still gets it. The job is as the journal last had it.
            log.warning("job %d: not sent now, the journal is unavailable: %s", job_id, task.exception())
        self._wake.set()  # a slot is free: the sender loop looks for the next due job

    async def send_now(self, job_id: int) -> Job:
        """Send one job and wait for the outcome (CLI, tests)."""
        task = self._in_flight.get(job_id) or self._start_send(job_id)
        return await task

    async def _send(self, job_id: int, *, by_operator: bool = False) -> Job:
        job = self.journal.jobs.get(job_id)
        if job.state not in (JobState.QUEUED, JobState.UNKNOWN) or self.paused is not None:
            return job
        # A job whose outcome was ever unknown is re-sent only to reconcile: FAX.de's
        # duplicate answer (-77) then means "you already have it", not an error — and only while
        # FAX.de would still recognise the twin, unless the operator (who checked the FAX.de job
        # list) says so. (Only a job sent before can have been unknown: no look at its history
        # otherwise.)
        ambiguity = self.journal.jobs.ambiguity(job_id) if job.attempts > 0 else None
        reconciling = ambiguity is not None
        if ambiguity is not None and not by_operator and self._window_passed(ambiguity):
            return self._leave_to_operator(job)
        # Durable before the request leaves: a crash from here on leaves 'submitting', which the
        # next start turns into 'unknown' instead of sending again. Made durable before taking a
        # send slot, so that the fsync of the next jobs runs while the slots' calls are out:
        # holding a slot for it took 1.5 of its 5.5 ms a job (bench.throughput). At most one job
        # a slot waits so (the sender starts two a slot), and a crash meanwhile only costs it a
        # reconciling re-send, which FAX.de takes as new.
        try:
            job = self.journal.jobs.begin_submit(
                job_id, durable=False, request=self._with_callback(job) if job.attempts == 0 else None)
            await self.journal.sync_async()
        except TransitionError as exc:
            # Another process moved the job meanwhile: a CLI command, or another node sharing the
            # journal that began this very send first — the transition, decided under the
            # journal's write lock, is the claim (README, "Two nodes").
            log.info("job %d: not sent from here: %s", job_id, exc)
            return self.journal.jobs.get(job_id)
        except JournalError as exc:
            if not disk_full(exc):
                raise
            return self._wait_for_space(job, exc, reconciling)
        if self._disk_full_until is not None:
            self._disk_full_until = None
            log.warning("sending resumes: the journal can be written again")
            self._recover_unrecorded()
        async with self._send_slots:
            if ambiguity is not None and not by_operator and self._window_passed(ambiguity):
                # The window closed while this re-send waited for a slot: it never left.
                job = self.journal.jobs.mark_unknown(
                    job.id, "the reconcile window closed before the re-send could leave; "
                    "nothing was sent")
                return self._leave_to_operator(job)
            crash_point("outbound.before_sendjob")
            # shield: a shutdown may cancel the waiting task, never the recording of the answer.
            try:
                return await asyncio.shield(self._call_and_record(job, reconciling))
            except JournalError as exc:
                if not disk_full(exc):
                    raise
                # FAX.de's answer is lost; the job stays 'submitting', which the next start
                # turns into 'unknown' and reconciles, as after a crash at this point.
                self._disk_full_until = self._clock() + DISK_FULL_RETRY
                self._unrecorded.add(job.id)
                log.warning("job %d: FAX.de's answer to SendJob could not be journaled: %s; the"
                            " job stays 'submitting' and is reconciled at the next start", job.id, exc)
                return job

    def _recover_unrecorded(self) -> None:
        """Once the journal takes writes again: jobs whose answer it could not record become
        unknown and are reconciled, as a restart would do with them."""
        for job_id in sorted(self._unrecorded):
            with contextlib.suppress(JournalError):
                job = self.journal.jobs.mark_unknown(
                    job_id, "FAX.de's answer could not be journaled (disk full); FAX.de may have the job")
                self._unrecorded.discard(job_id)
                log.warning("job %d: its SendJob answer was lost to the full disk; outcome unknown", job_id)
                self._schedule_reconcile(job)

    def _wait_for_space(self, job: Job, exc: JournalError, reconciling: bool) -> Job:
        """Nothing sent: the job stays as it was (or, if only the fsync failed, goes back to
        queued — or to unknown, if it was being reconciled), and sending waits DISK_FULL_RETRY
        seconds."""
        if self._disk_full_until is None:
            log.warning("sending waits: %s; trying again every %.0f s", exc, DISK_FULL_RETRY)
        self._disk_full_until = self._clock() + DISK_FULL_RETRY
        current = self.journal.jobs.find(job.id)
        if current is not None and current.state is JobState.SUBMITTING:
            # Marked, but not durably: never send on that; queued again if the disk lets us.
            with contextlib.suppress(JournalError):
                if reconciling:  # its window keeps counting; the reconcile timer comes back
                    job = self.journal.jobs.mark_unknown(job.id, f"outcome unknown: {exc}")
                    self._schedule_reconcile(job)
                    return job
                return self.journal.jobs.mark_retry(job.id, str(exc), None, self._disk_full_until)
        return current or job

    def _with_callback(self, job: Job) -> SendRequest | None:
        """For a job's first attempt: its request with our STATURL, where a callback address is
        configured and the sender set none (None: send the request as journaled). Journaled with
        'submitting', so that every re-send is the very request that left first, whatever the
        configuration says by then — FAX.de's duplicate check compares the options too."""
        if self.callbacks is None or any(key == "STATURL" for key, _ in job.request.options):
            return None
        url = self.callbacks.url(job.id, job.content_key)
        return dataclasses.replace(job.request, options=(*job.request.options, ("STATURL", url)))

    async def _call_and_record(self, job: Job, reconciling: bool) -> Job:
        try:
            accepted = await self.provider.send_job(job.request)
        except ProviderError as exc:
            return await self._record_failure(job, exc, reconciling)
        except DocumentError as exc:  # gone or changed while being sent: the request was cut short
            if reconciling:  # an earlier request may still have arrived: only the operator can tell
                job = self.journal.jobs.mark_unknown(
                    job.id, f"outcome unknown, and FAX.de cannot be asked again: {exc}")
                log.error("job %d needs the operator: %s (check the FAX.de job list)", job.id, exc)
                return job
            log.warning("job %d ✗ %s", job.id, exc)
            return await self._finish(self.journal.jobs.mark_rejected(job.id, str(exc)))
        except Exception as exc:  # a bug: never leave 'submitting'
            # The request may have left before the failure: unknown, reconciled like a dropped
            # answer — never 'rejected', which would invite the sender to send it again.
            log.exception("job %d: SendJob failed unexpectedly", job.id)
            job = self.journal.jobs.mark_unknown(
                job.id, f"outcome unknown after an internal error: {type(exc).__name__}: {exc}")
            self._schedule_reconcile(job)
            return job
        # FAX.de has the job and its JobId is only in memory: the reconciling -77 covers this.
        crash_point("outbound.after_sendjob")
        job = self.journal.jobs.mark_submitted(
            job.id, accepted, next_poll_at=self._first_poll_at(job)
        )
        log.info(
            "job %d ✓ FAX.de %d accepted (%d recipient(s), %d page(s))",
            job.id, accepted.faxde_job_id, accepted.recipients_count, accepted.page_count,
        )
        crash_point("outbound.after_submitted")
        hook = self._on_accepted.get(job.source)
        if hook is not None:
            try:
                await hook(job)
            except Exception:
                log.exception("job %d: the %s edge's acceptance hook failed", job.id, job.source)
        return job

    async def _record_failure(self, job: Job, exc: ProviderError, reconciling: bool) -> Job:
        jobs = self.journal.jobs
        # -77 to a retry (an earlier attempt failed in a way that looked certain) means just the
        # same: FAX.de has that earlier request — confirmed, never 'rejected'.
        if exc.code == -77 and (reconciling or job.attempts > 1):
            job = jobs.mark_confirmed(job.id)
            log.warning("job %d: FAX.de confirms it has the job (-77); its JobId is unknown", job.id)
            return await self._finish(job)
        if exc.stops_account:
            self._pause(exc)
        if exc.outcome_unknown or (reconciling and (exc.retryable or exc.stops_account)):
            # Still not known whether the first request arrived: stay unknown, never 'queued'.
            job = jobs.mark_unknown(job.id, f"outcome unknown: {exc}")
            log.warning("job %d ? %s", job.id, exc)
            self._schedule_reconcile(job)
            return job
        if exc.stops_account:
            return jobs.mark_retry(job.id, str(exc), exc.code, next_attempt_at=self._clock())
        if exc.retryable and job.attempts < self.settings.max_attempts:
            delay = backoff(job.attempts, self.settings.initial_delay, self.settings.max_delay)
            log.warning("job %d: %s — retry %d in %.0f s", job.id, exc, job.attempts + 1, delay)
            job = jobs.mark_retry(job.id, str(exc), exc.code, self._clock() + delay)
            self._wake.set()
            return job
        reason = str(exc)
        if exc.retryable:
            reason = f"gave up after {job.attempts} attempts; last error: {exc}"
        job = jobs.mark_rejected(job.id, reason, exc.code)
        log.error("job %d ✗ %s", job.id, reason)
        return await self._finish(job)

    def _pause(self, exc: ProviderError) -> None:
        credentials = exc.name in _CREDENTIAL_ERRORS
        self.paused = f"{exc} — {exc.action}" if exc.action else str(exc)
        self._paused_until = None if credentials else self._clock() + self.settings.account_pause
        log.error(
            "ALL SENDING PAUSED: %s. %s", self.paused,
            "Fix the configuration and restart or reload faxbridge."
            if credentials else f"Trying again in {self.settings.account_pause:.0f} s.",
        )

    def resume(self) -> None:
        if self.paused is not None:
            log.warning("sending resumed")
        self.paused = None
        self._paused_until = None
        self._wake.set()

    def _window_passed(self, ambiguity: Ambiguity) -> bool:
        """True once a re-send could fall outside FAX.de's duplicate check: the window counts from
        the moment the first ambiguous request left, whatever the daemon did since."""
        return next_reconcile_at(ambiguity, self._clock(), self.settings) is None

    def _leave_to_operator(self, job: Job) -> Job:
        log.error(
            "job %d needs the operator: SendJob's outcome is unknown and the reconcile window has "
            "passed (check the FAX.de job list, then `faxbridge retry %d` or `faxbridge cancel %d`)",
            job.id, job.id, job.id,
        )
        return job

    def _schedule_reconcile(self, job: Job) -> None:
        """An unknown outcome, still fresh: send the identical request again; FAX.de's duplicate
        check answers -77 if the first one arrived, so the fax is never paid twice. Past the
        reconcile window FAX.de may no longer recognise the twin, so the operator decides.

        The next re-send is timed from the last request's durable departure, so a restart (or a
        crash loop) neither re-arms the delay nor extends the window: a daemon back after a short
        stop re-sends at once, one back after the window leaves the job to the operator."""
        ambiguity = self.journal.jobs.ambiguity(job.id)
        if ambiguity is None:  # not from a SendJob of ours (an operator's edit): nothing to time
            return
        now = self._clock()
        due = next_reconcile_at(ambiguity, now, self.settings)
        if due is None:
            self._leave_to_operator(job)
            return
        asyncio.get_running_loop().call_later(max(due - now, 0.01), self._reconcile, job.id)

    def _reconcile(self, job_id: int) -> None:
        if self._stopping:
            return
        busy = self._in_flight.get(job_id)
        if busy is not None:
            # The send that made the job unknown is still finishing (a busy loop let this timer
            # fire first): look again once it is done, rather than leave the job unknown for good.
            busy.add_done_callback(lambda _t: self._reconcile(job_id))
            return
        job = self.journal.jobs.find(job_id)
        if job is not None and job.state is JobState.UNKNOWN:
            log.info("job %d: re-sending to learn whether FAX.de has it", job_id)
            self._start_send(job_id)

    def recover(self, lease: float | None = None) -> list[Job]:
        """At start-up: jobs a crash left in 'submitting' become 'unknown'; fresh ones reconcile.
        ``lease``: the journal is shared by nodes; other live nodes' sends are theirs."""
        jobs = self.journal.jobs.recover_interrupted(lease)
        for job in jobs:
            log.warning("job %d: interrupted during SendJob; outcome unknown", job.id)
            self._schedule_reconcile(job)
        recovered = {job.id for job in jobs}
        for job in self.journal.jobs.in_states(JobState.UNKNOWN):
            if job.id not in recovered:
                self._schedule_reconcile(job)
        return jobs

    def adopt_orphans(self, lease: float) -> list[Job]:
        """Periodically, with nodes: the SendJobs in flight of a node whose heartbeat stopped
        become 'unknown', and are reconciled here under the same rules as after a crash (the
        window counts from their durable 'submitting' event, whoever wrote it)."""
        jobs = self.journal.jobs.recover_interrupted(lease, include_own=False)
        for job in jobs:
            log.warning("job %d: %s", job.id, job.last_error)
            self._schedule_reconcile(job)
        return jobs

    def awaiting_operator(self) -> list[int]:
        """Jobs whose SendJob outcome stayed unknown past the reconcile window: only the operator
        can tell now (the FAX.de job list, then `faxbridge retry` or `faxbridge cancel`)."""
        return awaiting_operator(
            self.journal, self.settings.reconcile_window, self._clock(), busy=self._in_flight.keys())

    async def retry_unknown(self, job_id: int, *, user: str | None = None) -> Job:
        """Operator: send an 'unknown' job again (FAX.de's -77 guards against a double send)."""
        job = self.journal.jobs.get(job_id)
        if job.state is not JobState.UNKNOWN:
            raise FaxbridgeError(f"job {job_id} is {job.state}, not unknown; nothing to retry")
        if user is not None:
            self.journal.audit.record(user, "retry", job_id, "")
        task = self._in_flight.get(job_id) or self._start_send(job_id, by_operator=True)
        return await task

    async def on_callback(self, job_id: int, faxde_job_id: int, result: str) -> None:
        """FAX.de called our STATURL (its token already checked): job ``job_id`` is its
        ``faxde_job_id`` and has ended. For a job whose JobId was lost (unknown, confirmed) this is
        the missing piece; for any other it only hurries the next JobStatus. Idempotent: FAX.de
        may call once per recipient."""
        job = self.journal.jobs.find(job_id)
        if job is None:
            return
        if job.state is JobState.SUBMITTING:  # a re-send is in flight: apply once it is recorded
            task = self._in_flight.get(job_id)
            if task is not None:
                task.add_done_callback(lambda _t: asyncio.get_running_loop().create_task(
                    self.on_callback(job_id, faxde_job_id, result), name=f"callback-job-{job_id}"))
            return
        detail = f"FAX.de's status callback: JobId {faxde_job_id}, result {result or '?'}"
        if job.state is JobState.UNKNOWN:
            # Asked before believed: the JobId must be a job of this account with as many
            # recipients as ours (a replayed or stray call must not attach a foreign job).
            report = await self._status_of_found(job, faxde_job_id)
            if report is None:
                return
            try:
                job = self.journal.jobs.learn_job_id(job_id, faxde_job_id, detail, next_poll_at=self._clock())
            except TransitionError:  # a re-send began meanwhile: its own answer will tell
                return
            log.warning("job %d: FAX.de has it after all (JobId %d, %s): no re-send needed",
                        job_id, faxde_job_id, result or "?")
            await self.poll(job)
        elif job.state is JobState.CONFIRMED and job.faxde_job_id in (None, faxde_job_id) and not job.status_file:
            report = await self._status_of_found(job, faxde_job_id)
            if report is None:
                return
            if job.faxde_job_id is None:
                self.journal.jobs.learn_job_id(job_id, faxde_job_id, detail, next_poll_at=self._clock())
                log.info("job %d: its lost JobId is %d (FAX.de's status callback)", job_id, faxde_job_id)
            if report.finished:  # else the next recipient's call asks again
                await self._finish(self.journal.jobs.complete_report(job_id, report))
        elif job.state is JobState.SUBMITTED and job.faxde_job_id == faxde_job_id:
            await self.poll(job)
        elif job.faxde_job_id is not None and job.faxde_job_id != faxde_job_id:
            log.error(
                "job %d is FAX.de job %d, yet FAX.de called back for job %d with this job's token: "
                "FAX.de may have it twice — check the FAX.de job list", job_id, job.faxde_job_id, faxde_job_id)

    async def _status_of_found(self, job: Job, faxde_job_id: int) -> JobStatusReport | None:
        """JobStatus of a JobId a callback named, if it fits the job (None: ignore the call)."""
        try:
            report = await self.provider.job_status(faxde_job_id)
        except ProviderError as exc:
            log.warning("job %d: a status callback named FAX.de job %d, which JobStatus refuses (%s);"
                        " ignored", job.id, faxde_job_id, exc)
            return None
        expected = max(1, len(job.request.recipients))
        if report.rows and len(report.rows) != expected:
            log.warning("job %d: a status callback named FAX.de job %d with %d recipient(s), ours has %d;"
                        " ignored", job.id, faxde_job_id, len(report.rows), expected)
            return None
        return report

    # -- status ----------------------------------------------------------------------------

    def _first_poll_at(self, job: Job) -> float:
        start = self._clock()
        if job.request.send_at is not None:
            start = max(start, job.request.send_at.timestamp())
        return start + self.settings.status_interval

    def _next_poll_at(self, job: Job) -> float:
        # Long-running jobs (retries, big broadcasts) are asked less and less often.
        interval = min(
            self.settings.status_max_interval,
            self.settings.status_interval * (1.5 ** min(job.polls, 20)),
        )
        return self._clock() + interval

    async def poll_due(self) -> list[Job]:
        """One JobStatus for each submitted job that is due; returns the jobs that finished."""
        due = [j for j in self.journal.jobs.due_for_poll(self._clock()) if j.id not in self._polling]
        results = await asyncio.gather(*(self.poll(job) for job in due))
        await self.report_pending()
        return [job for job in results if job is not None and job.state.is_final]

    async def poll(self, job: Job) -> Job | None:
        if job.id in self._polling or job.faxde_job_id is None:
            return None
        self._polling.add(job.id)  # never two JobStatus calls for one job at once
        try:
            try:
                report = await self.provider.job_status(job.faxde_job_id)
            except ProviderError as exc:
                log.warning("job %d: JobStatus failed: %s", job.id, exc)
                self.journal.jobs.record_poll(job.id, self._next_poll_at(job), str(exc))
                return self.journal.jobs.get(job.id)
            if not report.finished:
                self.journal.jobs.record_poll(job.id, self._next_poll_at(job))
                return self.journal.jobs.get(job.id)
            job = self.journal.jobs.mark_finished(job.id, report)
            crash_point("outbound.after_finished")
            log.info(
                "job %d %s FAX.de %d finished: %s",
                job.id, "✓" if job.state is JobState.DELIVERED else "✗", job.faxde_job_id,
                _summarise(report.rows) or report.send_result,
            )
            return await self._finish(job)
        finally:
            self._polling.discard(job.id)

    async def cancel(self, job_id: int, *, user: str | None = None) -> Job:
        """Cancel a job not sent yet, or at FAX.de; ``user`` (who asked) goes to the audit table."""
        job = await self._cancel(job_id)
        if user is not None:
            self.journal.audit.record(user, "cancel", job_id, job.last_error or "")
        return job

    async def _cancel(self, job_id: int) -> Job:
        job = self.journal.jobs.get(job_id)
        if job.state is JobState.HELD:
            return await self._finish(self.journal.jobs.mark_cancelled(job_id, "cancelled while held"))
        if job.state in (JobState.QUEUED, JobState.UNKNOWN):
            if job.state is JobState.UNKNOWN:
                log.warning("job %d cancelled while its outcome is unknown: FAX.de may still send it", job_id)
            return await self._finish(self.journal.jobs.mark_cancelled(job_id, "cancelled by operator"))
        if job.state is JobState.SUBMITTED and job.faxde_job_id is not None:
            await self.provider.cancel_job(job.faxde_job_id)
            job = self.journal.jobs.mark_cancelled(job_id, f"CancelJob {job.faxde_job_id}")
            log.info("job %d cancelled at FAX.de (%d)", job_id, job.faxde_job_id)
            return await self._finish(job)
        raise FaxbridgeError(f"job {job_id} is {job.state}; it cannot be cancelled any more")

    # -- reports ---------------------------------------------------------------------------

    async def _finish(self, job: Job) -> Job:
        """A final job goes to its edge's reporter; a failed report is retried by report_pending."""
        reporter = self._reporters.get(job.source)
        if reporter is None:
            return job
        try:
            await reporter(job)
        except Exception as exc:
            failures = self._report_failures.get(job.id, 0) + 1
            delay = backoff(failures, self.settings.status_interval, self.settings.status_max_interval)
            self._report_failures[job.id] = failures
            self._report_retry_at[job.id] = self._clock() + delay
            if disk_full(exc):  # a passing state, not a bug: no traceback
                log.warning("job %d: writing the report failed, the disk is full (%s); retrying in"
                            " %.0f s", job.id, exc, delay)
            elif failures == 1:  # the whole story once; then one line per attempt
                log.exception("job %d: writing the report failed; retrying in %.0f s", job.id, delay)
            else:
                log.error("job %d: writing the report failed again (%d×): %s", job.id, failures, exc)
            return job
        self._report_failures.pop(job.id, None)
        self._report_retry_at.pop(job.id, None)
        self.journal.jobs.mark_reported(job.id)
        return self.journal.jobs.get(job.id)

    async def report_pending(self) -> None:
        now = self._clock()
        for source in self._reporters:
            for job in self.journal.jobs.unreported(source):
                if self._report_retry_at.get(job.id, 0.0) <= now:
                    await self._finish(job)

    # -- shutdown --------------------------------------------------------------------------

    async def stop(self, timeout: float) -> None:
        """Stop starting sends; wait up to ``timeout`` s for those in flight to be recorded."""
        self._stopping = True
        self._wake.set()
        pending = list(self._in_flight.values())
        if pending:
            log.info("waiting for %d SendJob call(s) in flight", len(pending))
            done, not_done = await asyncio.wait(pending, timeout=timeout)
            if not_done:
                log.warning(
                    "%d SendJob call(s) still in flight at shutdown; their jobs will be "
                    "reconciled at the next start", len(not_done),
                )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)


def awaiting_operator(
    journal: Journal, reconcile_window: float, now: float, busy: Collection[int] = ()
) -> list[int]:
    """Ids of the 'unknown' jobs past their reconcile window (and not being sent right now):
    those the daemon will not re-send by itself. Also for the CLI, without a running daemon."""
    stuck = []
    for job in journal.jobs.in_states(JobState.SUBMITTING):
        # Left 'submitting' by a process that is gone (a CLI command killed mid-call) or could not
        # record the answer: no call lasts this long, and only a restart would look at it again.
        if job.id not in busy and job.updated_at is not None and now - job.updated_at.timestamp() > ORPHANED_AFTER:
            stuck.append(job.id)
    for job in journal.jobs.in_states(JobState.UNKNOWN):
        if job.id in busy:
            continue
        ambiguity = journal.jobs.ambiguity(job.id)
        window = OutboundSettings(reconcile_window=reconcile_window)
        if ambiguity is None or next_reconcile_at(ambiguity, now, window) is None:
            stuck.append(job.id)
    return stuck


def _duration_words(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _summarise(rows: Any) -> str:
    if not rows:
        return ""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.result or "?"] = counts.get(row.result or "?", 0) + 1
    return ", ".join(f"{n}× {result}" for result, n in counts.items())


def number_check(policy: Any) -> RecipientCheck:
    """Adapt a numbers.NumberPolicy to the check the core runs before every SendJob."""

    # The policy never changes while it is in use, and parsing a number is a good part of
    # journaling a job (bench.throughput): the same numbers come again and again.
    @functools.lru_cache(maxsize=4096)
    def check(address: str, purpose: str) -> str:
        return str(policy.normalize(address, purpose=purpose))

    return check
