"""The console's aiohttp Application: sessions, CSRF and security headers as middlewares, Jinja2 rendering.

Every route needs a logged-in user except /login and /static; every POST needs the session's CSRF
token (a form field ``csrf`` or the ``X-CSRF-Token`` header) or gets 403. Roles are checked by the
handlers with ``require``; the user's role comes from the config on every request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from faxbridge.edges.http.console import api, auth
from faxbridge.config import ConsoleConfig, ConsoleRole, ConsoleUser
from faxbridge.journal.queries import ConsoleIndexes
from faxbridge.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
PUBLIC_PREFIXES = ("/login", "/static/")
# Uploads: three documents as FAX.de takes them, with room for the form around them.
MAX_REQUEST_BYTES = 3 * 50 * 1024 * 1024

CONSOLE_KEY = web.AppKey("console", object)
SESSION = web.RequestKey("console_session", object)  # auth.Session | None
USER = web.RequestKey("console_user", object)  # ConsoleUser | None

# Two page renderings at a time at most: a 100-page fax opened twice must not take every core.
_RENDER_SLOTS = 2


class Console:
    """What the pages share: the running services, the console config, templates, sessions, thumbnails."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.config: ConsoleConfig = services.config.console
        self.state_dir = Path(services.config.state_dir)
        self.accepting = True
        self.codec: auth.SessionCodec | None = None
        self.thumbnails = ThumbnailCache(self.state_dir / "console-thumbnails")
        self._render_slots = asyncio.Semaphore(_RENDER_SLOTS)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,  # every value shown is escaped unless a template says otherwise
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["urlpart"] = lambda text: quote(str(text), safe="")

    def prepare(self) -> None:
        """Blocking set-up before the listener opens: the signing key, the indexes, the reporter."""
        self.codec = auth.SessionCodec(auth.load_key(self.state_dir))
        self.services.journal.register_table(ConsoleIndexes)
        self.services.journal.register_table(api.TokenTable)
        from faxbridge.edges.http.console.pages import SOURCE, report

        self.services.outbound.add_reporter(SOURCE, report)

    @property
    def journal(self) -> Any:
        return self.services.journal

    async def page_png(self, path: Path, page: int, width: int) -> bytes:
        async with self._render_slots:
            # Thread seam: rendering a page takes tens of milliseconds; the loop goes on meanwhile.
            return await asyncio.to_thread(self.thumbnails.page_png, path, page, width)

    def audit(self, user: str, action: str, job_id: int | None, detail: str) -> None:
        """An operator's action into the journal's audit table (when the table is built in)."""
        audit = getattr(self.journal, "audit", None)
        if audit is not None:
            audit.record(user, action, job_id, detail)
        log.info("console: %s %s%s %s", user, action, f" job {job_id}" if job_id else "", detail)


def _when(value: dt.datetime | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]  # type: ignore[return-value]


def current_user(request: web.Request) -> ConsoleUser:
    user = request.get(USER)
    if user is None:  # the session middleware lets no such request through
        raise web.HTTPFound("/login")
    return user  # type: ignore[no-any-return]


def require(request: web.Request, role: ConsoleRole) -> ConsoleUser:
    """The user, if their role is ``role`` or above; else 403."""
    user = current_user(request)
    if user.role.rank < role.rank:
        raise web.HTTPForbidden(text=f"this needs the {role} role; {user.name} is a {user.role}\n")
    return user


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    console = console_of(request)
    session: auth.Session | None = request.get(SESSION)
    user: ConsoleUser | None = request.get(USER)
    body = console.templates.get_template(template).render(
        user=user,
        csrf=session.csrf if session else "",
        path=request.path,
        roles=ConsoleRole,
        # number → name from the address book, shown beside numbers (a small table, read per page)
        names={contact.number: contact.name for contact in console.journal.address_book.all()},
        **context,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _headers(response)
        raise
    _headers(response)
    return response


def _headers(response: web.StreamResponse) -> None:
    # No inline script or style anywhere: the CSP forbids them, so injected markup cannot run.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none';"
        " base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reads the session cookie; sends anyone without a login to /login; checks CSRF on POST."""
    console = console_of(request)
    assert console.codec is not None
    now = console.journal.clock()
    raw = request.cookies.get(auth.COOKIE, "")
    session = console.codec.load(raw, now) if raw else None
    user = console.config.user(session.user) if session is not None and session.user else None
    request[SESSION] = session
    request[USER] = user
    if request.path.startswith(api.PREFIX):
        return await _api_request(request, handler, console)
    public = request.path.startswith(PUBLIC_PREFIXES)
    if user is None and not public:
        target = "/login"
        if request.method == "GET" and request.path != "/":
            target += "?next=" + quote(request.path_qs, safe="")
        raise web.HTTPSeeOther(target)
    if request.method == "POST" and not request.path.startswith("/static/"):
        await check_csrf(request, session)
    return await handler(request)


async def _api_request(request: web.Request, handler: Handler, console: Console) -> web.StreamResponse:
    """The API authenticates by bearer token only: no cookie, so no CSRF token is needed either."""
    request[SESSION] = None
    request[USER] = None
    if request.path == "/api/v1/openapi.json":
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    name = api.token_user(console.journal, token.strip()) if scheme.lower() == "bearer" else None
    user = console.config.user(name) if name else None
    if user is None:
        return web.json_response({"error": "an API token is needed: Authorization: Bearer fbx_…"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="faxbridge"'})
    request[USER] = user
    return await handler(request)


async def check_csrf(request: web.Request, session: auth.Session | None) -> None:
    import hmac

    sent = request.headers.get("X-CSRF-Token", "")
    if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf", "")
        sent = value if isinstance(value, str) else ""
    if session is None or not sent or not hmac.compare_digest(sent, session.csrf):
        raise web.HTTPForbidden(text="the form's security token is missing or stale; reload the page and try again\n")


def set_session(response: web.StreamResponse, console: Console, session: auth.Session) -> None:
    assert console.codec is not None
    response.set_cookie(
        auth.COOKIE,
        console.codec.dump(session),
        max_age=max(1, int(session.expires - console.journal.clock())),
        httponly=True,
        samesite="Lax",  # Lax, not Strict: the link in an approver's mail opens with the session
        secure=console.config.tls.enabled,
        path="/",
    )


def build_app(console: Console) -> web.Application:
    from faxbridge.edges.http.console import pages

    app = web.Application(middlewares=[security_headers, sessions], client_max_size=MAX_REQUEST_BYTES)
    app[CONSOLE_KEY] = console
    pages.add_routes(app)
    api.add_routes(app)
    app.router.add_static("/static/", _HERE / "static", follow_symlinks=False, append_version=False)
    return app
