"""The HTTP route FAX.de's status callback (STATURL) calls: checks the token, hands the news to the core.

The answer is always quick and tells a caller nothing it did not know: 404 for an unknown job or a wrong
token alike, 200 once the call is taken. What the call means is decided by Outbound.on_callback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web

from faxbridge.callbacks import CallbackTokens, parse_callback
from faxbridge.journal import Journal

log = logging.getLogger(__name__)


class _Outbound(Protocol):
    @property
    def callbacks(self) -> CallbackTokens | None: ...
    async def on_callback(self, job_id: int, faxde_job_id: int, result: str) -> None: ...


class _Services(Protocol):
    @property
    def journal(self) -> Journal: ...
    @property
    def outbound(self) -> _Outbound: ...


class CallbackSource(Protocol):
    @property
    def services(self) -> _Services | None: ...


def add_routes(app: web.Application, source: CallbackSource, callback_url: str) -> None:
    """GET <path of callback_url>/<job id>/<token>?j=…&s=…: FAX.de telling that a job has ended."""
    path = urlsplit(callback_url).path.rstrip("/")
    pending: set[asyncio.Task[None]] = set()

    async def status_callback(request: web.Request) -> web.Response:
        services = source.services
        if services is None:
            raise web.HTTPServiceUnavailable(text="starting\n")
        tokens = services.outbound.callbacks
        try:
            job_id = int(request.match_info["job_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        job = services.journal.jobs.find(job_id)
        if tokens is None or job is None or not tokens.check(job.id, job.content_key, request.match_info["token"]):
            log.warning("status callback with an unknown job or a wrong token from %s", request.remote)
            raise web.HTTPNotFound()
        parsed = parse_callback(request.query)
        if parsed is None:
            raise web.HTTPBadRequest(text="no JobId\n")
        faxde_job_id, result, _recipient = parsed
        log.info("job %d: FAX.de's status callback (JobId %d, %s)", job_id, faxde_job_id, result or "?")
        # Answered at once; the JobStatus that may follow must not keep FAX.de waiting.
        task = asyncio.get_running_loop().create_task(
            services.outbound.on_callback(job_id, faxde_job_id, result), name=f"callback-job-{job_id}")
        pending.add(task)
        task.add_done_callback(lambda done: _settle(pending, done))
        return web.Response(text="OK\n")

    app.router.add_get(f"{path}/{{job_id}}/{{token}}", status_callback, allow_head=False)


def _settle(pending: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
    pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a status callback could not be applied: %s", task.exception(), exc_info=task.exception())
