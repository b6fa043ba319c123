"""The HTTP API for software (/api/v1): the console's actions as JSON, authenticated by bearer tokens.

A token belongs to a console user and acts with that user's role; only its SHA-256 is journaled
(``faxbridge api-token USER`` makes one). Submitting with an ``Idempotency-Key`` header journals the
job under that key, so a retried request answers with the job already made and never sends twice.
The OpenAPI description is served at /api/v1/openapi.json.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import sqlite3
from typing import TYPE_CHECKING, Any

from aiohttp import web

from faxbridge.config import ConsoleRole
from faxbridge.errors import FaxbridgeError
from faxbridge.journal import queries
from faxbridge.journal.codec import run_script
from faxbridge.journal.queries import JobFilter
from faxbridge.model import Job, JobState

if TYPE_CHECKING:
    from faxbridge.journal import Journal

PREFIX = "/api/v1/"
TOKEN_PREFIX = "fbx_"
_MAX_KEY = 200  # characters of an Idempotency-Key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_api_tokens (
    sha256   TEXT PRIMARY KEY,   -- of the token (the token itself is shown once, never stored)
    user     TEXT NOT NULL,
    label    TEXT NOT NULL DEFAULT '',
    created  REAL NOT NULL
);
"""


class TokenTable:
    """API tokens in the journal, by hash (created with ``journal.register_table``)."""

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)


def create_token(journal: Journal, user: str, label: str = "") -> str:
    """A new token for ``user``; returns it (the only time it is seen)."""
    journal.register_table(TokenTable)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with journal.transaction() as db:
        db.execute("INSERT INTO console_api_tokens (sha256, user, label, created) VALUES (?, ?, ?, ?)",
                   (_digest(token), user, label, journal.clock()))
    return token


def token_user(journal: Journal, token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    rows = journal.query("SELECT user FROM console_api_tokens WHERE sha256 = ?", (_digest(token),))
    return rows[0]["user"] if rows else None


def _digest(token: str) -> str:
    # Tokens carry 256 random bits: a plain SHA-256 is enough (no password to stretch).
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def job_json(job: Job, events: list[queries.Event] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value,
        "type": job.request.job_type.value,
        "recipients": [r.for_faxde() for r in job.request.recipients],
        "documents": [d.filename for d in job.request.documents],
        "source": job.source,
        "user": job.meta.get("user"),
        "faxde_job_id": job.faxde_job_id,
        "pages": job.page_count,
        "send_result": job.send_result,
        "error": job.last_error,
        "created": job.created_at.isoformat() if job.created_at else None,
        "finished": job.finished_at.isoformat() if job.finished_at else None,
    }
    if events is not None:
        data["events"] = [{"at": e.at.isoformat(), "what": e.what, "detail": e.detail, "user": e.user}
                          for e in events]
    return data


def add_routes(app: web.Application) -> None:
    from faxbridge.edges.http.console import pages

    r = app.router
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_post("/api/v1/jobs", submit)
    r.add_get("/api/v1/jobs", list_jobs)
    r.add_get(r"/api/v1/jobs/{job_id:\d+}", get_job)
    r.add_post(r"/api/v1/jobs/{job_id:\d+}/cancel", cancel)
    r.add_post(r"/api/v1/jobs/{job_id:\d+}/approve", approve)
    r.add_post(r"/api/v1/jobs/{job_id:\d+}/reject", reject)
    r.add_get("/api/v1/inbound", list_inbound)
    r.add_get(r"/api/v1/inbound/{fax_id:\d+}/fax.{kind:(tiff|pdf)}", pages.inbound_download)


async def openapi(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.openapi import SPEC

    return web.json_response(SPEC)


def _user(request: web.Request, role: ConsoleRole) -> Any:
    from faxbridge.edges.http.console.app import require

    try:
        return require(request, role)
    except web.HTTPForbidden as exc:
        raise web.HTTPForbidden(text=json.dumps({"error": (exc.text or "").strip()}),
                                content_type="application/json") from None


def _job(request: web.Request) -> Job:
    from faxbridge.edges.http.console.pages import _visible_job

    try:
        return _visible_job(request)
    except web.HTTPNotFound:
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json") from None


async def submit(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console import pages
    from faxbridge.edges.http.console.app import console_of

    console = console_of(request)
    user = _user(request, ConsoleRole.SENDER)
    if not console.accepting:
        return error(503, "faxbridge is shutting down and takes no new jobs; retry in a minute")
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > _MAX_KEY:
        return error(400, f"Idempotency-Key: at most {_MAX_KEY} characters")
    source_ref = f"api:{user.name}:{key}" if key else None
    if source_ref is not None:
        existing = console.journal.jobs.by_source(pages.SOURCE, source_ref)
        if existing is not None:
            return web.json_response(job_json(existing), status=200)
    try:
        values, uploads = await _read_submission(request)
        sendable = pages._request_parts(console, values, len(uploads))
        job = await pages.submit_upload(console, user, sendable, uploads, source_ref=source_ref)
    except FaxbridgeError as exc:
        return error(400, str(exc))
    console.audit(user.name, "upload", job.id, f"API, {len(uploads)} document(s)")
    return web.json_response(job_json(job), status=201, headers={"Location": f"/api/v1/jobs/{job.id}"})


async def _read_submission(request: web.Request) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """(form values as the send form has them, [(file name, read function)]) from JSON or multipart."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise FaxbridgeError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise FaxbridgeError("the body must be a JSON object")
        recipients = data.get("recipients") or []
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            raise FaxbridgeError("recipients: a list of fax numbers")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise FaxbridgeError("options: an object of KEY: VALUE")
        uploads = []
        for index, document in enumerate(data.get("documents") or []):
            if not isinstance(document, dict) or not isinstance(document.get("filename"), str):
                raise FaxbridgeError(f"documents[{index}]: an object with filename and content_base64")
            try:
                content = base64.b64decode(str(document.get("content_base64", "")), validate=True)
            except (binascii.Error, ValueError):
                raise FaxbridgeError(f"documents[{index}].content_base64: not base64") from None
            uploads.append((document["filename"], lambda content=content: content))
        values = {"recipients": "\n".join(recipients), "reference": str(data.get("reference") or ""),
                  "send_at": str(data.get("send_at") or ""),
                  "options": "\n".join(f"{k}={v}" for k, v in options.items())}
        return values, uploads
    if request.content_type == "multipart/form-data":
        form = await request.post()
        values = {"recipients": "\n".join(str(v) for v in form.getall("recipients", [])),
                  "reference": str(form.get("reference", "")), "send_at": str(form.get("send_at", "")),
                  "options": "\n".join(str(v) for v in form.getall("options", []))}
        uploads = [(f.filename, f.file.read) for f in form.getall("documents", [])
                   if isinstance(f, web.FileField) and f.filename]
        return values, uploads
    raise FaxbridgeError("send application/json or multipart/form-data")


async def list_jobs(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of
    from faxbridge.edges.http.console.pages import _owner

    console = console_of(request)
    user = _user(request, ConsoleRole.VIEWER)
    q = request.query
    limit = min(int(q["limit"]), 500) if q.get("limit", "").isdigit() and int(q["limit"]) > 0 else 50
    before = int(q["before"]) if q.get("before", "").isdigit() else None
    state = q.get("state", "")
    if state and state not in {s.value for s in JobState}:
        return error(400, f"state: one of {', '.join(s.value for s in JobState)}")
    where = JobFilter(state=state, source=q.get("source", ""), search=q.get("q", ""), owner=_owner(user))
    found = queries.list_jobs(console.journal, where, before=before, limit=limit + 1)
    page = found[:limit]
    body: dict[str, Any] = {"jobs": [job_json(job) for job in page]}
    if len(found) > limit and page:
        body["next_before"] = page[-1].id
    return web.json_response(body)


async def get_job(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of

    _user(request, ConsoleRole.VIEWER)
    job = _job(request)
    return web.json_response(job_json(job, queries.timeline(console_of(request).journal, job.id)))


async def cancel(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of
    from faxbridge.edges.http.console.pages import _actions

    user = _user(request, ConsoleRole.SENDER)
    job = _job(request)
    if not _actions(user, job)["cancel"]:
        return error(409 if user.role.rank >= ConsoleRole.APPROVER.rank or job.meta.get("user") == user.name else 403,
                     f"job {job.id} is {job.state}; {user.name} cannot cancel it")
    try:
        job = await console_of(request).services.outbound.cancel(job.id, user=user.name)
    except FaxbridgeError as exc:
        return error(409, str(exc))
    return web.json_response(job_json(job))


async def approve(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of

    user = _user(request, ConsoleRole.APPROVER)
    job = _job(request)
    try:
        job = await console_of(request).services.outbound.approve(job.id, user.name)
    except FaxbridgeError as exc:
        return error(409, str(exc))
    return web.json_response(job_json(job))


async def reject(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of

    user = _user(request, ConsoleRole.APPROVER)
    job = _job(request)
    try:
        data = await request.json()
    except ValueError:
        data = None
    reason = str(data.get("reason", "")).strip() if isinstance(data, dict) else ""
    if not reason:
        return error(400, 'a rejection needs {"reason": "…"}')
    try:
        job = await console_of(request).services.outbound.reject(job.id, user.name, reason[:500])
    except FaxbridgeError as exc:
        return error(409, str(exc))
    return web.json_response(job_json(job))


async def list_inbound(request: web.Request) -> web.Response:
    from faxbridge.edges.http.console.app import console_of

    _user(request, ConsoleRole.VIEWER)
    q = request.query
    before = int(q["before"]) if q.get("before", "").isdigit() else None
    found = queries.list_inbound(console_of(request).journal, before=before, limit=51)
    page = found[:50]
    body: dict[str, Any] = {"faxes": [
        {"id": f.fax_id, "from": f.originator, "station_id": f.remote_id, "to": f.called_number,
         "received": f.received_at, "pages": f.pages,
         "tiff": f"/api/v1/inbound/{f.fax_id}/fax.tiff", "pdf": f"/api/v1/inbound/{f.fax_id}/fax.pdf"}
        for f in page]}
    if len(found) > 50 and page:
        body["next_before"] = page[-1].fax_id
    return web.json_response(body)
