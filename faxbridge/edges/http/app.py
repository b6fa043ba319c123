"""The daemon's one HTTP server: a single aiohttp Application served on the daemon's own loop.

Today it carries the status routes (/healthz, /metrics); the web console, an API and provider
callbacks are further routes on the same app, so they share one listener and one set of
middlewares.
"""

from __future__ import annotations

import logging

from aiohttp import web

from faxbridge.edges.http import status as metrics

log = logging.getLogger(__name__)

# How long a stop waits for requests being answered (a scrape takes milliseconds).
_SHUTDOWN_SECONDS = 2.0


def build_app(source: metrics.StatusSource, callback_url: str | None = None) -> web.Application:
    app = web.Application()
    metrics.add_routes(app, source)
    if callback_url:
        from faxbridge.edges.http import callback as callback_route

        callback_route.add_routes(app, source, callback_url)  # type: ignore[arg-type]
    return app


class HTTPServer:
    """``build_app``'s Application listening on one address; ``start()`` then ``close()``."""

    def __init__(self, app: web.Application) -> None:
        # No access log: Prometheus scraping every 15 s would write four lines a minute for ever.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS)

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        log.info("status endpoint on http://%s:%d/healthz and /metrics", host, port)

    async def close(self) -> None:
        await self._runner.cleanup()


async def serve(
    source: metrics.StatusSource, host: str, port: int, callback_url: str | None = None
) -> HTTPServer:
    """The daemon's HTTP app, listening."""
    server = HTTPServer(build_app(source, callback_url))
    await server.start(host, port)
    return server
