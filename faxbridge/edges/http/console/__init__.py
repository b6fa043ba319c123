"""The web console edge: the operators' pages, served by aiohttp on ``console.listen`` on the daemon's loop.

``build(services)`` gives the daemon an Edge like the others (start → stop_intake → close); the pages
themselves are in ``pages``, the cookies and passwords in ``auth``, the middlewares in ``app``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import web

from faxbridge.edges.http.console.app import Console, build_app
from faxbridge.errors import FaxbridgeError

log = logging.getLogger(__name__)

_SHUTDOWN_SECONDS = 2.0


class ConsoleEdge:
    """The console's own listener (its address and TLS differ from the status endpoint's)."""

    name = "console"

    def __init__(self, services: Any) -> None:
        self.console = Console(services)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the port listened on (tests ask for port 0)

    async def start(self) -> None:
        config = self.console.config
        self.console.prepare()
        runner = web.AppRunner(build_app(self.console), access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.listen.host, config.listen.port, ssl_context=_tls(config.tls))
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FaxbridgeError(f"console: cannot listen on {config.listen}: {exc.strerror or exc}") from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # the bound socket tells the port when the config said 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else config.listen.port
        scheduler = getattr(self.console.services, "scheduler", None)
        if scheduler is not None:
            scheduler.add_job(self._sweep, "interval", hours=1, id="console-uploads", name="console uploads",
                              replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=1)
        scheme = "https" if config.tls.enabled else "http"
        log.info("console on %s://%s:%d/", scheme, config.listen.host, self.port)

    async def _sweep(self) -> None:
        from faxbridge.edges.http.console.pages import sweep_uploads

        # Thread seam: removing folders touches the disk.
        removed = await asyncio.to_thread(sweep_uploads, self.console)
        if removed:
            log.info("console: removed %d upload folder(s) of jobs the journal no longer has", len(removed))

    async def stop_intake(self) -> None:
        self.console.accepting = False  # uploads are refused from here on; pages still answer

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _tls(tls: Any) -> ssl.SSLContext | None:
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def build(services: Any) -> ConsoleEdge | None:
    if services.config.console is None:
        return None
    return ConsoleEdge(services)
