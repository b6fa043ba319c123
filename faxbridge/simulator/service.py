"""The simulated provider itself: the five operations' validation, result codes and state.

Knows nothing of HTTP or XML: it takes the typed parameters soap.parse_request produced and returns a
result code with the out-parameters. Result codes are looked up by name in faxbridge.faxde.codes,
the project's one table of them; the rules are FAXDE-API.md's, and where the spec leaves a choice open the
choice is commented here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faxbridge.faxde.codes import by_name
from faxbridge.model import InboundFax, JobType

from . import documents, recipients
from .settings import AccountState, Clock, Settings, utc_now
from .state import JobRecipient, Phase, SimJob, State, Store

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Reply:
    code: int
    outs: dict[str, Any] = field(default_factory=dict)


# StatusFile JOBTYPE column (FAXDE-API.md, JobStatus): FAX, SMS, mail, letter, QSign.
_JOB_TYPE_WORDS = {0: "FAX", 1: "SMS", 2: "mail", 3: "letter", 4: "letter", 8: "QSign"}
_STATUS_HEADER = ("RECIPIENT", "JOBTYPE", "RESULT", "REMOTEID", "PAGES", "SENDDATETIME", "DURATION", "REFID")
CANCELLED_RESULT = "Cancelled"  # the spec names no word for it; JobStatus reports a cancelled job with this
SMS_CHARS = 160  # "PageCount is the number of required messages with 160 chars each"

# Which result each account problem gets, per operation. The spec has no "locked" or "expired" code for
# SendJob and CancelJob; the nearest ones are used (SendJob 1 "Not authorized", CancelJob -3 "Account locked").
_ACCOUNT_RESULTS: dict[str, dict[str, str]] = {
    "SendJob": {"blank": "BLANK_CUSTOMER", "unknown": "UNKNOWN_CUSTOMER", "password": "WRONG_PASSWORD",
                "locked": "NOT_AUTHORIZED", "expired": "EVALUATION_EXPIRED"},
    "JobStatus": {"blank": "UNKNOWN_CUSTOMER", "unknown": "UNKNOWN_CUSTOMER", "password": "WRONG_PASSWORD",
                  "locked": "ACCOUNT_LOCKED", "expired": "EVALUATION_EXPIRED"},
    "CancelJob": {"blank": "WRONG_CREDENTIALS", "unknown": "WRONG_CREDENTIALS", "password": "WRONG_CREDENTIALS",
                  "locked": "ACCOUNT_LOCKED", "expired": "ACCOUNT_LOCKED"},
}
_ACCOUNT_RESULTS["RequestReceived"] = _ACCOUNT_RESULTS["DeleteReceived"] = _ACCOUNT_RESULTS["JobStatus"]


def _code(operation: str, name: str) -> int:
    return by_name(operation, name).code


class Service:
    """The provider's behaviour and memory. Thread-safe: every state change happens under one lock."""

    def __init__(self, settings: Settings, state_dir: Path | None = None, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.state_dir = state_dir
        self._store = Store(state_dir)
        if state_dir is not None:
            (state_dir / "inbox").mkdir(parents=True, exist_ok=True)  # where users drop inbound faxes
        self._state = self._store.load()
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()
        # Per recipient (canonical form): the delivery result JobStatus reports, and an optional station id.
        self._results: dict[str, tuple[str, str | None]] = {}
        # Per recipient: the code SendJob refuses it with (-5 blocked, 9 blacklisted, 45 premium …).
        self._refusals: dict[str, int] = {}
        # STATURL calls made when jobs ended: (URL, HTTP status or the error), for tests to read.
        self.status_calls: list[tuple[str, int | str]] = []
        self._calls_done = threading.Condition()

    # ---- dispatch -----------------------------------------------------------------------------

    def call(self, operation: str, params: dict[str, Any]) -> Reply:
        handler = {
            "SendJob": self.send_job,
            "JobStatus": self.job_status,
            "CancelJob": self.cancel_job,
            "RequestReceived": self.request_received,
            "DeleteReceived": self.delete_received,
        }[operation]
        return handler(params)

    def _account_problem(self, operation: str, params: dict[str, Any]) -> Reply | None:
        account = params["Account"].strip()
        settings = self.settings
        if not account:
            problem = "blank"
        elif account != settings.account:
            problem = "unknown"
        elif not hmac.compare_digest(params["Password"].encode("utf-8"), settings.password.encode("utf-8")):
            problem = "password"
        elif settings.account_state is AccountState.LOCKED:
            problem = "locked"
        elif settings.account_state is AccountState.EXPIRED:
            problem = "expired"
        else:
            return None
        return Reply(_code(operation, _ACCOUNT_RESULTS[operation][problem]))

    # ---- SendJob --------------------------------------------------------------------------------

    def send_job(self, p: dict[str, Any]) -> Reply:
        """Validate like FAX.de, cheapest checks first; accept with a new JobId, or refuse with a code."""
        refused = self._account_problem("SendJob", p)
        if refused:
            return refused

        def fail(name: str) -> Reply:
            return Reply(_code("SendJob", name))

        try:
            job_type = JobType.from_code(p["JobType"])
        except ValueError:  # also for None: a missing JobType is no valid type
            return fail("INVALID_JOB_TYPE")
        if job_type is JobType.EMAIL and not self.settings.email_enabled:
            return fail("NOT_AUTHORIZED_DESTINATION")

        text: str = p["SendText"]
        slots = [(p[f"SendFilename{i}"].strip(), p[f"SendFile{i}"]) for i in (1, 2, 3)]
        files = [(name, data) for name, data in slots if name or data]
        letter = job_type in (JobType.ILETTER, JobType.ILETTER_COLOR, JobType.QSIGN)
        if not text.strip() and not files:
            return fail("NO_CONTENT")
        if job_type is JobType.SMS and not text.strip():
            return fail("NO_CONTENT")  # an SMS is its text; documents are not sent by SMS
        if letter and not files:
            return fail("SENDFILE_MISSING")  # the letter's address must be on page 1 of SendFile1
        if job_type is JobType.SMS:
            files = []  # ignored, like the real service does with attachments it cannot send
        for name, data in files:
            if not data:
                return fail("DOCUMENT_MISSING")
            if documents.file_type(name) is None:
                return fail("UNSUPPORTED_TYPE")

        try:
            entries = recipients.parse_recipient_param(p["Recipient"])
            entries += recipients.parse_recipient_file(p["RecipientFile"])
        except recipients.RecipientFileError:
            return fail("RECIPIENT_FILE_ERROR")
        if job_type.needs_recipient:
            judged = self._judge_recipients(job_type, entries)
            if isinstance(judged, str):
                return fail(judged)
            if isinstance(judged, int):
                return Reply(judged)
            chosen = judged
        else:
            # iLetter and QSign read the address from the document; QSign refuses a list explicitly.
            if job_type is JobType.QSIGN and len(entries) > 1:
                return fail("QSIGN_MULTI_RECIPIENT")
            chosen = [JobRecipient(entries[0].address if entries else "", entries[0].reference if entries else "")]

        pages = []
        for name, data in files:
            try:
                pages.append(documents.count_pages(name, data))
            except documents.DocumentProblem as problem:
                log.info("SendJob refused: %s", problem)
                return fail("UNSUPPORTED_TYPE" if problem.kind == "unsupported" else "CONVERSION_ERROR")
        if job_type is JobType.SMS:
            page_count = math.ceil(len(text) / SMS_CHARS)
        else:
            # A fax text is formatted onto one page sent first (e-mail counted alike); letters ignore SendText.
            page_count = sum(pages) + (1 if text.strip() and not letter else 0)
        if (
            self.settings.account_state is AccountState.EVALUATION
            and job_type is not JobType.SMS
            and page_count > 3
        ):
            return fail("EVALUATION_PAGE_LIMIT")

        hashes = [hashlib.sha256(data).hexdigest() for _, data in files]
        fingerprint = _fingerprint(p, job_type, [name for name, _ in files], hashes)
        send_at = p["SendDateTime"]
        with self._lock:
            now = self.clock()
            if self._is_duplicate(fingerprint, now):
                return fail("DUPLICATE")
            job = SimJob(
                job_id=self._state.next_job_id,
                account=p["Account"].strip(),
                job_type=job_type.code,
                recipients=chosen,
                page_count=page_count,
                text=text,
                filenames=[name for name, _ in files],
                file_sha256=hashes,
                options=p["Options"],
                fingerprint=fingerprint,
                created_at=now,
                send_at=send_at if send_at is not None and send_at > now else None,
                polls_needed=max(0, self.settings.polls_until_done),
            )
            self._state.next_job_id += 1
            self._state.jobs[job.job_id] = job
            self._store.save(self._state)
        log.info("SendJob accepted: job %s, %s, %d recipient(s), %d page(s)",
                 job.job_id, job_type.value, len(chosen), page_count)
        return Reply(0, {"JobId": job.job_id, "RecipientsCount": len(chosen), "PageCount": page_count})

    def _judge_recipients(
        self, job_type: JobType, entries: list[recipients.Entry]
    ) -> list[JobRecipient] | str | int:
        """The valid recipients; or a result name / code that refuses the whole job."""
        valid: list[JobRecipient] = []
        for entry in entries:
            if job_type.dials_numbers:
                verdict = recipients.judge_number(entry.address)
                address = recipients.normalize_number(entry.address) or entry.address
            else:
                verdict = recipients.judge_address(entry.address)
                address = entry.address.strip()
            if verdict is recipients.Verdict.PREMIUM:
                # One premium number refuses the whole job rather than silently sending to the others.
                return "PREMIUM_NUMBER"
            if verdict is recipients.Verdict.VALID:
                valid.append(JobRecipient(address, entry.reference))
        if not valid:
            return "NO_VALID_RECIPIENT"
        for recipient in valid:
            refusal = self._refusals.get(recipients.canonical(recipient.address))
            if refusal is not None:
                return refusal
        if job_type.dials_numbers and not self.settings.foreign_enabled:
            if any(not r.address.startswith(self.settings.home_prefix) for r in valid):
                return "NOT_AUTHORIZED_DESTINATION"
        if len(valid) > 1 and not self.settings.multi_recipient_enabled:
            return "NOT_AUTHORIZED"
        return valid

    def _is_duplicate(self, fingerprint: str, now: dt.datetime) -> bool:
        window = dt.timedelta(seconds=self.settings.duplicate_window)
        return any(
            job.fingerprint == fingerprint and now - job.created_at < window for job in self._state.jobs.values()
        )

    # ---- JobStatus, CancelJob -------------------------------------------------------------------

    def job_status(self, p: dict[str, Any]) -> Reply:
        refused = self._account_problem("JobStatus", p)
        if refused:
            return refused
        with self._lock:
            job = self._own_job(p)
            if job is None:
                return Reply(_code("JobStatus", "JOB_NOT_FOUND"))
            now = self.clock()
            if job.phase is Phase.PENDING:
                if job.send_at is not None and now < job.send_at:
                    return Reply(_code("JobStatus", "IN_PROGRESS"))  # scheduled: not counted as a poll
                if job.polls < job.polls_needed:
                    job.polls += 1
                    self._store.save(self._state)
                    return Reply(_code("JobStatus", "IN_PROGRESS"))
                self._finish(job, now)
            return Reply(0, self._report(job))

    def cancel_job(self, p: dict[str, Any]) -> Reply:
        refused = self._account_problem("CancelJob", p)
        if refused:
            return refused
        with self._lock:
            job = self._own_job(p)
            if job is None:
                return Reply(_code("CancelJob", "JOB_NOT_FOUND"))
            now = self.clock()
            due = (job.send_at is None or now >= job.send_at) and job.polls >= job.polls_needed
            if job.phase is Phase.PENDING and due:
                self._finish(job, now)  # it would have been sent by now
            if job.phase is not Phase.PENDING:
                return Reply(_code("CancelJob", "ALREADY_FINISHED"))
            job.phase = Phase.CANCELLED
            job.finished_at = now
            for recipient in job.recipients:
                recipient.result = CANCELLED_RESULT
            self._store.save(self._state)
        log.info("CancelJob: job %s cancelled", job.job_id)
        return Reply(0)

    def finish_now(self, job_id: int) -> SimJob:
        """Finish a pending job at once, as if its time had come and its polls had run out."""
        with self._lock:
            job = self._state.jobs[job_id]
            if job.phase is Phase.PENDING:
                self._finish(job, self.clock())
            return SimJob.from_json(job.to_json())

    def _own_job(self, p: dict[str, Any]) -> SimJob | None:
        job = self._state.jobs.get(p["JobId"]) if p["JobId"] is not None else None
        if job is None or job.account != p["Account"].strip():
            return None
        return job

    def _finish(self, job: SimJob, now: dt.datetime) -> None:
        """Decide every recipient's outcome; only fax jobs have detailed results (FAXDE-API.md, JobStatus)."""
        fax = job.job_type == JobType.FAX.code
        for recipient in job.recipients:
            result, remote_id = "OK", None
            if fax:
                result, remote_id = self._results.get(recipients.canonical(recipient.address), ("OK", None))
            recipient.result = result
            connected = result in ("OK", "Send-Fail")
            recipient.pages = job.page_count if result == "OK" else 0
            if fax:
                # The receiving machine's station id is usually its own number.
                recipient.remote_id = remote_id if remote_id is not None else (recipient.address if connected else "")
                # About 9.5 s a page, as in the spec's sample row (2 pages, 19 s).
                recipient.duration = str(round(recipient.pages * 9.5)) if connected else "0"
        job.phase = Phase.DONE
        job.finished_at = now
        self._store.save(self._state)
        log.info("job %s finished: %s", job.job_id, ", ".join(r.result for r in job.recipients))
        urls = status_urls(job)
        if urls:  # FAX.de calls the job's STATURL once it has ended, once per recipient
            threading.Thread(target=self._call_status_urls, args=(urls,), name=f"staturl-{job.job_id}",
                             daemon=True).start()

    def _call_status_urls(self, urls: list[str]) -> None:
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    outcome: int | str = answer.status
            except urllib.error.HTTPError as error:
                outcome = error.code
            except OSError as error:
                outcome = f"{type(error).__name__}: {error}"
            log.info("STATURL called: %s", outcome)
            with self._calls_done:
                self.status_calls.append((url, outcome))
                self._calls_done.notify_all()

    def wait_for_status_calls(self, count: int, timeout: float = 15.0) -> list[tuple[str, int | str]]:
        """Block until ``count`` STATURL calls were made (tests); returns them all."""
        with self._calls_done:
            self._calls_done.wait_for(lambda: len(self.status_calls) >= count, timeout)
            return list(self.status_calls)

    def _report(self, job: SimJob) -> dict[str, Any]:
        single = len(job.recipients) == 1
        return {
            "SendResult": job.recipients[0].result if single else "multi",
            "SendDateTime": job.finished_at,
            "RemoteId": job.recipients[0].remote_id if single else "",
            "StatusFile": status_file(job),
        }

    # ---- inbox ------------------------------------------------------------------------------------

    def request_received(self, p: dict[str, Any]) -> Reply:
        refused = self._account_problem("RequestReceived", p)
        if refused:
            return refused
        self.scan_inbox_folder()
        with self._lock:
            if not self._state.inbox:
                return Reply(_code("RequestReceived", "INBOX_EMPTY"))
            # The oldest first, and the same one again until it is deleted (FAXDE-API.md, "Important").
            fax = min(self._state.inbox.values(), key=_age)
        return Reply(0, {
            "FaxId": fax.fax_id,
            "CalledNumber": fax.called_number,
            "ReceiveDate": fax.received_at,
            "Originator": fax.originator,
            "RemoteId": fax.remote_id,
            "Pages": fax.pages,
            "FaxImage": fax.image,
        })

    def delete_received(self, p: dict[str, Any]) -> Reply:
        refused = self._account_problem("DeleteReceived", p)
        if refused:
            return refused
        with self._lock:
            fax = self._state.inbox.pop(p["FaxId"], None) if p["FaxId"] is not None else None
            if fax is None:
                return Reply(_code("DeleteReceived", "UNKNOWN_FAX"))
            self._store.save(self._state)
            self._store.delete_image(fax.fax_id)
        log.info("DeleteReceived: fax %s deleted", fax.fax_id)
        return Reply(0)

    def add_inbound(
        self,
        image: bytes,
        *,
        called_number: str | None = None,
        originator: str = "",
        remote_id: str = "",
        pages: int | None = None,
        received_at: dt.datetime | None = None,
    ) -> InboundFax:
        """Put a fax into the inbox; ``pages`` None counts the TIFF's pages (ValueError if it is no TIFF)."""
        if pages is None:
            pages = documents.tiff_page_count(image)
        with self._lock:
            fax = InboundFax(
                fax_id=self._state.next_fax_id,
                called_number=self.settings.inbound_number if called_number is None else called_number,
                received_at=received_at or self.clock(),
                originator=originator,
                remote_id=remote_id,
                pages=pages,
                image=image,
            )
            self._state.next_fax_id += 1
            self._state.inbox[fax.fax_id] = fax
            self._store.save_image(fax.fax_id, image)
            self._store.save(self._state)
        log.info("inbound fax %s from %s, %d page(s)", fax.fax_id, originator or "unknown", pages)
        return fax

    def scan_inbox_folder(self) -> list[InboundFax]:
        """Take every *.tif / *.tiff dropped into <state_dir>/inbox/ into the inbox, oldest file first.

        An optional NAME.json beside NAME.tif gives called_number, originator, remote_id, received_at.
        Write a file under another name and rename it in: a file that is not yet a readable TIFF is left
        alone, since it may still be being written.
        """
        if self.state_dir is None:
            return []
        folder = self.state_dir / "inbox"
        added = []
        with self._scan_lock:  # two RequestReceived at once must not import one file twice
            if not folder.is_dir():
                return []
            dropped = [p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file()]
            for path in sorted(dropped, key=lambda p: (p.stat().st_mtime, p.name)):
                image = path.read_bytes()
                try:
                    documents.tiff_page_count(image)
                except ValueError:
                    log.debug("inbox file %s is not (yet) a readable TIFF; left alone", path.name)
                    continue
                sidecar = path.with_suffix(".json")
                added.append(self.add_inbound(image, **_sidecar_meta(sidecar)))
                path.unlink()
                sidecar.unlink(missing_ok=True)
        return added

    # ---- configuration and views --------------------------------------------------------------

    def set_result(self, number: str, result: str, remote_id: str | None = None) -> None:
        with self._lock:
            self._results[recipients.canonical(number)] = (result, remote_id)

    def set_refusal(self, number: str, code: int | None) -> None:
        with self._lock:
            if code is None:
                self._refusals.pop(recipients.canonical(number), None)
            else:
                self._refusals[recipients.canonical(number)] = code

    def clear_rules(self) -> None:
        with self._lock:
            self._results.clear()
            self._refusals.clear()

    def reset_state(self) -> None:
        """Forget all jobs and inbound faxes (ids keep counting, so none is ever reused)."""
        with self._lock:
            for fax_id in self._state.inbox:
                self._store.delete_image(fax_id)
            self._state = State(next_job_id=self._state.next_job_id, next_fax_id=self._state.next_fax_id)
            self._store.save(self._state)

    def jobs(self) -> list[SimJob]:
        with self._lock:
            return [SimJob.from_json(job.to_json()) for job in self._state.jobs.values()]  # deep copies

    def job(self, job_id: int) -> SimJob:
        with self._lock:
            return SimJob.from_json(self._state.jobs[job_id].to_json())

    def inbox(self) -> list[InboundFax]:
        self.scan_inbox_folder()
        with self._lock:
            return sorted(self._state.inbox.values(), key=_age)  # InboundFax is frozen: no copy needed


def _sidecar_meta(sidecar: Path) -> dict[str, Any]:
    """Metadata for a dropped fax; a broken sidecar is logged and ignored rather than blocking the inbox."""
    if not sidecar.exists():
        return {}
    try:
        data = json.loads(sidecar.read_text("utf-8"))
        meta: dict[str, Any] = {k: str(data[k]) for k in ("called_number", "originator", "remote_id") if k in data}
        if data.get("received_at"):
            received = dt.datetime.fromisoformat(data["received_at"])
            meta["received_at"] = received if received.tzinfo else received.replace(tzinfo=dt.timezone.utc)
        return meta
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring inbox sidecar %s: %s", sidecar.name, exc)
        return {}


def _age(fax: InboundFax) -> tuple[dt.datetime, int]:
    return (fax.received_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc), fax.fax_id)


def status_urls(job: SimJob) -> list[str]:
    """The job's STATURL with FAX.de's placeholders filled in, one per recipient (FAXDE-API.md,
    "Parameter Options"); empty without the option."""
    template = next((option[len("STATURL="):] for option in job.options.split(";")
                     if option.upper().startswith("STATURL=")), "")
    if not template:
        return []
    if "://" not in template:
        template = "http://" + template
    finished = job.finished_at or dt.datetime.now(dt.timezone.utc)
    urls = []
    for recipient in job.recipients:
        values = {
            "$JID": str(job.job_id), "$RCV": recipient.address, "$STAT": recipient.result.upper().replace("-", ""),
            "$MSGGS": str(recipient.pages), "$COST": "0.00", "$RID": recipient.remote_id, "$CID": recipient.reference,
            "$DATE": finished.strftime("%d.%m.%y"), "$TIME": finished.strftime("%H:%M:%S"),
            "$SEC": recipient.duration or "0", "$RET": "0", "$COD": "MMR", "$SPD": "14400",
        }
        url = template
        for token in sorted(values, key=len, reverse=True):  # $MSGGS before a shorter look-alike
            url = url.replace(token, urllib.parse.quote(values[token], safe=""))
        urls.append(url)
    return urls


def _fingerprint(p: dict[str, Any], job_type: JobType, names: list[str], hashes: list[str]) -> str:
    """Identical request ⇔ same account, type, recipients, text, options, file names and contents."""
    material = [
        p["Account"].strip(), job_type.code, p["Recipient"], hashlib.sha256(p["RecipientFile"]).hexdigest(),
        p["SendText"], p["Options"], names, hashes,
    ]
    return hashlib.sha256(json.dumps(material).encode("utf-8")).hexdigest()


def status_file(job: SimJob) -> bytes:
    """The StatusFile CSV exactly as FAXDE-API.md shows it: every field quoted, CRLF line ends."""
    sent = job.finished_at.strftime("%Y-%m-%d %H:%M:%S") if job.finished_at else ""
    rows = [_STATUS_HEADER]
    for r in job.recipients:
        rows.append((r.address, _JOB_TYPE_WORDS[job.job_type], r.result, r.remote_id, str(r.pages), sent,
                     r.duration, r.reference))
    lines = [",".join('"' + field.replace('"', '""') + '"' for field in row) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
