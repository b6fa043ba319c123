"""The console's pages and actions: login, dashboard, jobs, held jobs, inbound faxes, the send form.

Handlers translate: they read the form, check the role, call the core (``Outbound``) or the journal's
read queries, and render a template. Nothing here decides how a job is sent.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from faxbridge.edges.http.console import auth
from faxbridge.edges.http.console.app import (
    SESSION,
    Console,
    console_of,
    current_user,
    render,
    require,
    set_session,
)
from faxbridge.fsutil import fsync_dir
from faxbridge.config import ConsoleRole, ConsoleUser
from faxbridge.documents import inspect, safe_filename
from faxbridge.errors import FaxbridgeError
from faxbridge.journal import queries
from faxbridge.journal.audit import LOGIN_FAILED
from faxbridge.journal.queries import JobFilter
from faxbridge.outbound import Checked, content_key
from faxbridge.model import Document, Job, JobState, JobType, Recipient, SendRequest

SOURCE = "console"  # the jobs' source in the journal
UPLOADS = "console-uploads"  # in the state dir: the uploaded documents, one folder per job
PAGE_SIZE = 50
THUMB_WIDTH = 200
VIEW_WIDTH = 900


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", dashboard)
    r.add_get("/counts", counts)
    r.add_get("/jobs", jobs)
    r.add_get(r"/jobs/{job_id:\d+}", job_page)
    r.add_get(r"/jobs/{job_id:\d+}/documents/{index:\d+}/{name}", job_document)
    r.add_get(r"/jobs/{job_id:\d+}/page-{page:\d+}.png", job_page_png)
    r.add_get(r"/jobs/{job_id:\d+}/status.csv", job_status_csv)
    r.add_get(r"/jobs/{job_id:\d+}/report.pdf", job_report)
    r.add_post(r"/jobs/{job_id:\d+}/cancel", job_cancel)
    r.add_post(r"/jobs/{job_id:\d+}/retry", job_retry)
    r.add_post(r"/jobs/{job_id:\d+}/resend", job_resend)
    r.add_get("/held", held)
    r.add_get(r"/held/{job_id:\d+}", held_page)
    r.add_post(r"/held/{job_id:\d+}/approve", held_approve)
    r.add_post(r"/held/{job_id:\d+}/reject", held_reject)
    r.add_get("/inbound", inbound)
    r.add_get(r"/inbound/{fax_id:\d+}", inbound_page)
    r.add_get(r"/inbound/{fax_id:\d+}/page-{page:\d+}.png", inbound_page_png)
    r.add_get(r"/inbound/{fax_id:\d+}/fax.{kind:(tiff|pdf)}", inbound_download)
    r.add_get("/addressbook", addressbook)
    r.add_post("/addressbook", addressbook_import)
    r.add_get("/send", send_form)
    r.add_post("/send", send)


# -- login -----------------------------------------------------------------------------------

async def login_form(request: web.Request, *, error: str = "", status: int = 200, name: str = "") -> web.Response:
    console = console_of(request)
    assert console.codec is not None
    session = request.get(SESSION)
    if session is None:  # the login form's CSRF token needs a session of its own
        session = console.codec.new(None, console.journal.clock(), 3600.0)
        request[SESSION] = session
    response = render(request, "login.html", status=status, error=error, name=name,
                      next=_safe_next(request.query.get("next", "")))
    set_session(response, console, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    assert console.codec is not None
    form = await request.post()
    name = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))
    peer = request.remote or "?"
    now = console.journal.clock()
    by_name, by_peer = queries.login_failures(console.journal, name, peer, now - auth.FAILURE_WINDOW)
    if by_name >= auth.MAX_FAILURES_PER_NAME or by_peer >= auth.MAX_FAILURES_PER_PEER:
        console.audit(name, "login-refused", None, f"from {peer}: too many failed logins")
        return await login_form(request, status=429, name=name,
                                error="Too many failed logins. Wait 15 minutes and try again.")
    user = console.config.user(name)
    # Thread seam: scrypt takes tens of milliseconds; an unknown name costs the same as a known one.
    hashed = user.password_hash.reveal() if user is not None else auth.dummy_hash()
    ok = await asyncio.to_thread(auth.verify_password, password, hashed) and user is not None
    if not ok:
        queries.record_login_failure(console.journal, name, peer)
        console.audit(name, LOGIN_FAILED, None, peer)
        return await login_form(request, status=401, name=name, error="Wrong user name or password.")
    assert user is not None
    queries.clear_login_failures(console.journal, name)
    response = _redirect(_safe_next(str(form.get("next", ""))) or "/")
    set_session(response, console, console.codec.new(user.name, now, console.config.session_lifetime))
    console.audit(user.name, "login", None, f"from {peer}")
    return response


def _safe_next(target: str) -> str:
    """Only a path on this site: ``//evil.example`` or ``https://…`` would send the user away."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


async def logout(request: web.Request) -> web.StreamResponse:
    response = _redirect("/login")
    response.del_cookie(auth.COOKIE, path="/")
    return response


# -- dashboard -------------------------------------------------------------------------------

def _today_and_week() -> tuple[float, float]:
    now = dt.datetime.now().astimezone()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp(), (midnight - dt.timedelta(days=midnight.weekday())).timestamp()


def _health(console: Console) -> list[str]:
    """The provider's and the sender's state in words (the daemon's problems() as the console sees them)."""
    services = console.services
    found: list[str] = []
    since = services.calls.unreachable_since
    if since is not None:
        found.append(f"FAX.de unreachable since {_when(since)}")
    if services.outbound.paused:
        found.append(f"sending paused: {services.outbound.paused}")
    stuck = services.outbound.awaiting_operator()
    if stuck:
        found.append(f"{len(stuck)} job(s) need the operator, SendJob's outcome unknown: "
                     f"{', '.join(map(str, stuck[:10]))}")
    return found


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M")


def _summary(console: Console, user: ConsoleUser) -> dict[str, Any]:
    journal = console.journal
    today, week = _today_and_week()
    counts = journal.jobs.counts_by_state()
    return {
        "today": queries.counts_since(journal, today),
        "week": queries.counts_since(journal, week),
        "queued": counts.get(JobState.QUEUED.value, 0),
        "held": counts.get("held", 0),
        "unknown": counts.get(JobState.UNKNOWN.value, 0),
        "inbound_today": queries.inbound_waiting(journal, today),
        "inbound_unread": queries.unread_count(journal, user.name),
    }


async def dashboard(request: web.Request) -> web.Response:
    console = console_of(request)
    user = current_user(request)
    return render(
        request, "dashboard.html",
        summary=_summary(console, user),
        states=[state.value for state in JobState],
        health=_health(console),
        stuck=console.services.outbound.awaiting_operator(),
        errors=queries.recent_errors(console.journal, limit=8),
    )


async def counts(request: web.Request) -> web.Response:
    """The dashboard's live numbers, polled by console.js."""
    console = console_of(request)
    summary = _summary(console, current_user(request))
    return web.json_response({key: value for key, value in summary.items() if isinstance(value, int)})


# -- jobs ------------------------------------------------------------------------------------

def _owner(user: ConsoleUser) -> str | None:
    """A sender sees only the jobs they submitted; every other role sees all."""
    return user.name if user.role is ConsoleRole.SENDER else None


def _visible_job(request: web.Request) -> Job:
    """The job named in the path, or 404 (also when this user may not see it)."""
    console = console_of(request)
    user = current_user(request)
    job = console.journal.jobs.find(int(request.match_info["job_id"]))
    if job is None:
        raise web.HTTPNotFound(text="no such job\n")
    owner = _owner(user)
    if owner is not None and job.meta.get("user") != owner:
        raise web.HTTPNotFound(text="no such job\n")  # not 403: do not confirm it exists
    return job


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        raise web.HTTPBadRequest(text=f"not a date (YYYY-MM-DD): {text[:40]}\n") from None


async def jobs(request: web.Request) -> web.Response:
    console = console_of(request)
    user = current_user(request)
    q = request.query
    where = JobFilter(
        state=q.get("state", ""), source=q.get("source", ""), sender=q.get("sender", "").strip(),
        recipient=q.get("recipient", "").strip(), since=_date(q.get("since", "")),
        until=_date(q.get("until", "")), search=q.get("q", "").strip(), owner=_owner(user),
    )
    before = int(q["before"]) if q.get("before", "").isdigit() else None
    found = queries.list_jobs(console.journal, where, before=before, limit=PAGE_SIZE + 1)
    page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    filters = {key: value for key, value in q.items() if key != "before" and value}
    next_url = "/jobs?" + urlencode({**filters, "before": page[-1].id}) if more and page else ""
    return render(request, "jobs.html", jobs=page, filters=filters, next_url=next_url,
                  states=[state.value for state in JobState], sources=queries.sources(console.journal))


def _status_rows(job: Job) -> list[list[str]]:
    if not job.status_file:
        return []
    text = job.status_file.decode("utf-8", "replace")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _actions(user: ConsoleUser, job: Job) -> dict[str, bool]:
    """What this user may do to this job now (the POST routes check the same again)."""
    own = job.meta.get("user") == user.name
    may_act = user.role.rank >= ConsoleRole.APPROVER.rank or (user.role is ConsoleRole.SENDER and own)
    return {
        "cancel": may_act and job.state in (JobState.QUEUED, JobState.SUBMITTED, JobState.UNKNOWN),
        "retry": user.role is ConsoleRole.ADMIN and job.state is JobState.UNKNOWN,
        "resend": may_act and job.state.is_final and bool(job.request.documents or job.request.text),
        "approve": user.role.rank >= ConsoleRole.APPROVER.rank and job.state.value == "held",
    }


async def job_page(request: web.Request) -> web.Response:
    console = console_of(request)
    job = _visible_job(request)
    user = current_user(request)
    documents = [(index, document, document.path.is_file())
                 for index, document in enumerate(job.request.documents)]
    return render(
        request, "job.html", job=job, documents=documents,
        timeline=queries.timeline(console.journal, job.id),
        status_rows=_status_rows(job), actions=_actions(user, job),
        preview=_previewable(job), has_report=_sendreport() is not None and job.state.is_final,
        note=request.query.get("note", ""),
    )


def _previewable(job: Job) -> Path | None:
    """The first document, if a page image can be made of it (PDF or TIFF, still on disk)."""
    for document in job.request.documents:
        if document.extension in ("pdf", "tif", "tiff") and document.path.is_file():
            return document.path
    return None


async def job_document(request: web.Request) -> web.StreamResponse:
    """A document of the job, by its index and its name: nothing else on the disk can be named."""
    job = _visible_job(request)
    index = int(request.match_info["index"])
    if index >= len(job.request.documents):
        raise web.HTTPNotFound()
    document = job.request.documents[index]
    if request.match_info["name"] != document.filename or not document.path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(document.path, headers=_attachment(document.filename))


def _attachment(filename: str) -> dict[str, str]:
    fallback = safe_filename(filename).encode("ascii", "replace").decode("ascii").replace('"', "_")
    return {"Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"}


async def job_page_png(request: web.Request) -> web.Response:
    console = console_of(request)
    job = _visible_job(request)
    path = _previewable(job)
    if path is None:
        raise web.HTTPNotFound()
    width = THUMB_WIDTH if request.query.get("size") != "large" else VIEW_WIDTH
    return await _png(console, path, int(request.match_info["page"]), width)


async def _png(console: Console, path: Path, page: int, width: int) -> web.Response:
    try:
        data = await console.page_png(path, page, width)
    except (FaxbridgeError, OSError):
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def job_status_csv(request: web.Request) -> web.Response:
    job = _visible_job(request)
    if not job.status_file:
        raise web.HTTPNotFound(text="FAX.de has not sent a status file for this job yet\n")
    return web.Response(body=job.status_file, content_type="text/csv",
                        headers=_attachment(f"job-{job.id}-status.csv"))


def _sendreport() -> Any:
    try:
        from faxbridge import sendreport
    except ImportError:
        return None
    return sendreport


async def job_report(request: web.Request) -> web.Response:
    console = console_of(request)
    job = _visible_job(request)
    sendreport = _sendreport()
    if sendreport is None:
        raise web.HTTPNotFound(text="send reports are not part of this build\n")
    # Thread seam: the report reads the document and renders its first page.
    data = await asyncio.to_thread(sendreport.render, job, console.journal)
    return web.Response(body=data, content_type="application/pdf",
                        headers=_attachment(f"job-{job.id}-report.pdf"))


def _redirect(location: str) -> web.Response:
    """303 See Other as a response (not raised), so cookies can be set on it."""
    return web.Response(status=303, headers={"Location": location})


def _back_to_job(job_id: int, note: str = "") -> web.Response:
    return _redirect(f"/jobs/{job_id}" + ("?" + urlencode({"note": note}) if note else ""))


async def job_cancel(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    job = _visible_job(request)
    user = current_user(request)
    if not _actions(user, job)["cancel"]:
        raise web.HTTPForbidden(text=f"{user.name} may not cancel job {job.id} ({job.state})\n")
    try:
        await console.services.outbound.cancel(job.id, user=user.name)  # the core audits it
    except FaxbridgeError as exc:
        return _back_to_job(job.id, str(exc))
    return _back_to_job(job.id, "Cancelled.")


async def job_retry(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    job = _visible_job(request)
    user = require(request, ConsoleRole.ADMIN)
    try:
        job = await console.services.outbound.retry_unknown(job.id, user=user.name)  # audited there
    except FaxbridgeError as exc:
        return _back_to_job(job.id, str(exc))
    return _back_to_job(job.id, f"Sent again: now {job.state}.")


async def job_resend(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    job = _visible_job(request)
    user = current_user(request)
    if not _actions(user, job)["resend"]:
        raise web.HTTPForbidden(text=f"{user.name} may not resend job {job.id}\n")
    missing = [d.filename for d in job.request.documents if not d.path.is_file()]
    if missing:
        return _back_to_job(job.id, f"The documents are no longer kept: {', '.join(missing)}")
    folder, documents = await asyncio.to_thread(
        _keep_copies, console.state_dir, [(d.filename, d.path.read_bytes) for d in job.request.documents])
    request_copy = SendRequest(job.request.job_type, job.request.recipients, tuple(documents),
                               job.request.text, None, job.request.options)
    new = await _submit(console, user, request_copy, folder, label=f"resend of job {job.id}",
                        allow_duplicate=True)
    console.audit(user.name, "resend", job.id, f"sent again as job {new.id}")
    console.audit(user.name, "resend", new.id, f"a resend of job {job.id}")
    raise web.HTTPSeeOther(f"/jobs/{new.id}")


# -- held jobs -------------------------------------------------------------------------------

async def held(request: web.Request) -> web.Response:
    console = console_of(request)
    user = current_user(request)
    found = queries.held_jobs(console.journal, _owner(user))
    return render(request, "held.html", jobs=[(job, console.journal.jobs.held_reason(job.id)) for job in found])


async def held_page(request: web.Request) -> web.Response:
    job = _visible_job(request)
    user = current_user(request)
    reason = console_of(request).journal.jobs.held_reason(job.id) if job.state is JobState.HELD else ""
    return render(request, "held_job.html", job=job, preview=_previewable(job), actions=_actions(user, job),
                  note=request.query.get("note", ""), reason=reason)


async def held_approve(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    user = require(request, ConsoleRole.APPROVER)
    job = _visible_job(request)
    try:
        job = await _call(console.services.outbound, "approve", job.id, user.name)  # audited there
    except FaxbridgeError as exc:
        return _back_to_job(job.id, str(exc))
    return _back_to_job(job.id, "Approved: the job is on its way.")


async def held_reject(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    user = require(request, ConsoleRole.APPROVER)
    job = _visible_job(request)
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    if not reason:
        return _back_to_job(job.id, "A rejection needs a reason.")
    try:
        job = await _call(console.services.outbound, "reject", job.id, user.name, reason[:500])  # audited there
    except FaxbridgeError as exc:
        return _back_to_job(job.id, str(exc))
    return _back_to_job(job.id, "Rejected.")


async def _call(outbound: Any, name: str, *args: Any) -> Any:
    """Outbound.approve/reject (the hold stage's), whether they are coroutines or plain methods."""
    method = getattr(outbound, name, None)
    if method is None:
        raise FaxbridgeError("holding jobs for approval is not part of this build")
    result = method(*args)
    return await result if asyncio.iscoroutine(result) else result


# -- inbound ---------------------------------------------------------------------------------

def _fax(request: web.Request) -> Any:
    record = queries.inbound_fax(console_of(request).journal, int(request.match_info["fax_id"]))
    if record is None or not Path(record.path).is_file():
        raise web.HTTPNotFound(text="no such fax\n")
    return record


async def inbound(request: web.Request) -> web.Response:
    console = console_of(request)
    current_user(request)
    before = int(request.query["before"]) if request.query.get("before", "").isdigit() else None
    found = queries.list_inbound(console.journal, before=before, limit=PAGE_SIZE + 1)
    page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    next_url = f"/inbound?before={page[-1].fax_id}" if more and page else ""
    read = queries.read_by(console.journal, current_user(request).name, [fax.fax_id for fax in page])
    return render(request, "inbound.html", faxes=page, next_url=next_url, read=read)


async def inbound_page(request: web.Request) -> web.Response:
    record = _fax(request)
    queries.mark_read(console_of(request).journal, current_user(request).name, record.fax_id)
    return render(request, "inbound_fax.html", fax=record, pages=range(1, max(record.pages, 1) + 1))


async def inbound_page_png(request: web.Request) -> web.Response:
    record = _fax(request)
    width = THUMB_WIDTH if request.query.get("size") != "large" else VIEW_WIDTH
    return await _png(console_of(request), Path(record.path), int(request.match_info["page"]), width)


async def inbound_download(request: web.Request) -> web.StreamResponse:
    record = _fax(request)
    path = Path(record.path)
    name = f"fax-{record.fax_id}"
    if request.match_info["kind"] == "tiff":
        return web.FileResponse(path, headers=_attachment(f"{name}.tif"))
    import img2pdf

    # Thread seam: wrapping every page of a long fax into a PDF reads the whole TIFF.
    data = await asyncio.to_thread(lambda: img2pdf.convert(str(path)))
    return web.Response(body=data, content_type="application/pdf", headers=_attachment(f"{name}.pdf"))


# -- address book ----------------------------------------------------------------------------

async def addressbook(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    current_user(request)
    return render(request, "addressbook.html", status=status, error=error, note=request.query.get("note", ""))


async def addressbook_import(request: web.Request) -> web.StreamResponse:
    from faxbridge.journal.addressbook import parse_csv

    console = console_of(request)
    user = require(request, ConsoleRole.APPROVER)
    form = await request.post()
    upload = form.get("csv")
    if not isinstance(upload, web.FileField):
        return await addressbook(request, status=400, error="Choose a CSV file.")
    try:
        text = upload.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return await addressbook(request, status=400, error="The file is not UTF-8 text.")
    policy = console.services.config.numbers.policy()
    try:
        contacts = parse_csv(text, lambda number: policy.normalize(number, purpose="fax"))
    except (FaxbridgeError, ValueError) as exc:
        return await addressbook(request, status=400, error=str(exc))
    written = console.journal.address_book.put(contacts)
    console.audit(user.name, "addressbook-import", None, f"{written} contact(s) from {upload.filename}")
    return _redirect("/addressbook?" + urlencode({"note": f"{written} contact(s) imported."}))


# -- sending ---------------------------------------------------------------------------------

async def send_form(request: web.Request, *, error: str = "", status: int = 200,
                    values: dict[str, str] | None = None) -> web.Response:
    require(request, ConsoleRole.SENDER)
    return render(request, "send.html", status=status, error=error, values=values or {},
                  accepting=console_of(request).accepting)


async def send(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    user = require(request, ConsoleRole.SENDER)
    form = await request.post()
    values = {key: str(form.get(key, "")) for key in ("recipients", "reference", "send_at", "options")}
    chosen = [str(number) for number in form.getall("contacts", [])]
    if chosen:  # numbers picked from the address book, with the typed ones
        values["recipients"] = "\n".join([values["recipients"], *chosen]).strip()
    if not console.accepting:
        return await send_form(request, status=503, values=values,
                               error="faxbridge is shutting down and takes no new jobs; try again in a minute.")
    uploads = [field for field in form.getall("documents", []) if isinstance(field, web.FileField) and field.filename]
    try:
        sendable = _request_parts(console, values, len(uploads))
        job = await submit_upload(console, user, sendable, [(f.filename, f.file.read) for f in uploads])
    except FaxbridgeError as exc:
        return await send_form(request, status=400, values=values, error=str(exc))
    console.audit(user.name, "upload", job.id, f"{len(uploads)} document(s) to {len(sendable['recipients'])} recipient(s)")
    raise web.HTTPSeeOther(f"/jobs/{job.id}")


async def submit_upload(console: Console, user: ConsoleUser, sendable: dict[str, Any],
                        uploads: list[tuple[str, Any]], *, source_ref: str | None = None) -> Job:
    """Uploaded documents (name, read function) kept, converted and journaled as one job."""
    folder, originals = await asyncio.to_thread(_keep_copies, console.state_dir, uploads)
    ref = source_ref or folder.name
    try:
        # Thread seam: photos, text and Office files become PDFs (LibreOffice takes seconds).
        documents = await asyncio.to_thread(_fax_ready, originals, folder, console.services.config)
        request_ = SendRequest(JobType.FAX, sendable["recipients"], tuple(documents),
                               send_at=sendable["send_at"], options=sendable["options"])
        return await _submit(console, user, request_, folder, originals=originals, source_ref=ref,
                             label=", ".join(d.filename for d in originals), allow_duplicate=False)
    except BaseException:
        if console.journal.jobs.by_source(SOURCE, ref) is None:  # no job needs the copies
            await asyncio.to_thread(shutil.rmtree, folder, True)
        raise


def _request_parts(console: Console, values: dict[str, str], uploads: int) -> dict[str, Any]:
    if not 1 <= uploads <= 3:
        raise FaxbridgeError("Choose one to three documents (FAX.de takes at most three per fax).")
    policy = console.services.config.numbers.policy()
    numbers = [line.strip() for line in values["recipients"].replace(",", "\n").splitlines() if line.strip()]
    if not numbers:
        raise FaxbridgeError("Enter at least one fax number.")
    recipients = tuple(Recipient(policy.normalize(number, purpose="fax"), values["reference"].strip())
                       for number in numbers)
    options = []
    for line in values["options"].splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not key.strip():
                raise FaxbridgeError(f"option {line.strip()!r}: expected KEY=VALUE")
            options.append((key.strip().upper(), value.strip() if sep else ""))
    send_at = None
    if values["send_at"].strip():
        try:
            when = dt.datetime.fromisoformat(values["send_at"].strip())
        except ValueError:
            raise FaxbridgeError(f"send time {values['send_at'][:40]!r}: expected e.g. 2026-12-01T08:00") from None
        if when.tzinfo is None:
            when = when.astimezone()  # the wall-clock time the user typed, in the daemon's zone
        send_at = when.astimezone(dt.timezone.utc)
    return {"recipients": recipients, "options": tuple(options), "send_at": send_at}


def _keep_copies(state_dir: Path, sources: list[tuple[str, Any]]) -> tuple[Path, list[Document]]:
    """The documents, durably, in a folder of their own under the state dir (blocking).

    ``sources``: (the name the user gave, a function returning the bytes). The name is only shown
    and sent to FAX.de; on disk each file is ``N.ext``, so no name can point elsewhere."""
    folder = state_dir / UPLOADS / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        documents = []
        for index, (name, read) in enumerate(sources, start=1):
            shown = safe_filename(Path(str(name)).name or "document")
            copy = folder / f"{index}{Path(shown).suffix.lower()}"
            with open(copy, "xb") as target:
                target.write(read())
                target.flush()
                os.fsync(target.fileno())
            documents.append(Document(shown, copy))
        fsync_dir(folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, documents


def _fax_ready(originals: list[Document], folder: Path, config: Any) -> list[Document]:
    """The documents to send, converted where FAX.de does not take them and each checked, as
    ``faxbridge send`` does (blocking)."""
    from faxbridge.convert import ConversionError
    from faxbridge.convert.pipeline import convert_documents

    limits = config.documents.limits()
    converted, problems = convert_documents(originals, folder / "converted", config.convert, limits)
    if problems:
        raise ConversionError("\n".join(problems))
    if len(converted) > 3:  # a winmail.dat may hold more files than FAX.de takes
        raise ConversionError(f"{len(converted)} documents after unpacking; FAX.de takes at most 3 per job")
    for item in converted:
        inspect(item.document.path, item.document.filename, limits)
    return [item.document for item in converted]


async def _submit(console: Console, user: ConsoleUser, request_: SendRequest, folder: Path, *,
                  label: str, allow_duplicate: bool, originals: list[Document] | None = None,
                  source_ref: str | None = None) -> Job:
    """Through the same intake as every channel: validation, duplicate check, journal, sender."""
    outbound = console.services.outbound
    validated = outbound.validate(request_)
    # Duplicates are recognised by the originals: a conversion need not give the same bytes twice.
    keyed = dataclasses.replace(validated, documents=tuple((originals or list(validated.documents))[:3]))
    key = await asyncio.to_thread(content_key, keyed)  # thread seam: hashing reads every document
    return await outbound.submit(
        Checked(validated, key), source=SOURCE, source_ref=source_ref or folder.name,
        meta={"label": label, "user": user.name, "uploads": str(folder)},
        allow_duplicate=allow_duplicate,
    )


# An upload folder younger than this may belong to a form being submitted right now.
_SWEEP_GRACE = 3600.0


def sweep_uploads(console: Console) -> list[Path]:
    """Remove upload folders no job in the journal names any more (retention forgot the job, or
    an upload was refused after its copy was made); blocking. Returns what went."""
    root = console.state_dir / UPLOADS
    if not root.is_dir():
        return []
    kept = queries.upload_folders(console.journal, SOURCE)
    cutoff = console.journal.clock() - _SWEEP_GRACE
    removed = []
    for folder in root.iterdir():
        if str(folder) in kept or not folder.is_dir():
            continue
        try:
            if folder.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


async def report(job: Job) -> None:
    """The reporter of console jobs: the console itself shows the outcome, so nothing is written.

    The uploaded documents stay while the job is in the journal (the job page offers them, the send
    report hashes them); once retention forgets the job, ``sweep_uploads`` removes them."""
