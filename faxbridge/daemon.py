"""Composition and lifecycle: build the parts from the config, run the edges, stop them in order.

``Services`` is what every command needs (journal, FAX.de client, outbound core, scheduler);
``Daemon`` adds the edges and the signal handling: start edges → serve → on SIGTERM stop intake
first → let provider calls in flight finish (bounded) → close the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from faxbridge.errors import FaxbridgeError
from faxbridge.journal import Journal
from faxbridge.model import Job
from faxbridge.outbound import Outbound, OutboundSettings, number_check
from faxbridge.provider import FaxProvider, ProviderCalls

log = logging.getLogger(__name__)

# Edge modules, started in this order and stopped in reverse. Each has
# ``build(services) -> Edge | None`` (None: not configured).
EDGE_MODULES = (
    "faxbridge.adapters.inbox",
    "faxbridge.adapters.hotfolder",
    "faxbridge.adapters.smtp",
)


class Edge(Protocol):
    name: str

    async def start(self) -> None: ...  # ready to take input when this returns
    async def stop_intake(self) -> None: ...  # take no new input; finish what was accepted
    async def close(self) -> None: ...


def make_provider(config: Any) -> FaxProvider:
    from faxbridge.adapters.faxde import FaxDeClient

    faxde = config.faxde
    return FaxDeClient(
        account=faxde.account,
        password=faxde.password.reveal(),
        wsdl=faxde.wsdl,
        endpoint=faxde.endpoint,
        timeout=faxde.timeout,
        connect_timeout=faxde.connect_timeout,
        cache_dir=Path(config.state_dir) / "wsdl",
        pool_size=max(faxde.concurrency, 1) * 2,
    )


def outbound_settings(config: Any) -> OutboundSettings:
    retry = config.faxde.retry
    return OutboundSettings(
        max_attempts=retry.max_attempts,
        initial_delay=retry.initial_delay,
        max_delay=retry.max_delay,
        duplicate_window=config.journal.duplicate_window,
        status_interval=config.status.interval,
        status_max_interval=config.status.max_interval,
        reconcile_window=config.faxde.reconcile_window,
    )


class Services:
    """The parts every command shares. ``async with Services(config) as s:`` opens and closes them."""

    def __init__(self, config: Any, *, provider: FaxProvider | None = None) -> None:
        self.config = config
        self._provider = provider
        self.journal: Journal
        self.calls: ProviderCalls
        self.outbound: Outbound
        self.scheduler: AsyncIOScheduler | None = None

    async def __aenter__(self) -> Services:
        self.journal = Journal.open(Path(self.config.state_dir))
        try:
            # Thread seam: building the client may fetch the WSDL over the network.
            provider = self._provider or await asyncio.to_thread(make_provider, self.config)
        except BaseException:
            self.journal.close()
            raise
        self.calls = ProviderCalls(provider, concurrency=self.config.faxde.concurrency)
        self.outbound = Outbound(
            self.journal,
            self.calls,
            check_recipient=number_check(self.config.numbers.policy()),
            settings=outbound_settings(self.config),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # Thread seam: joining the provider pool blocks until its calls return.
        await asyncio.to_thread(self.calls.close)
        self.journal.close()

    async def wait_until_final(self, job_id: int, poll_every: float | None = None) -> Job:
        """Poll one job until it ends (CLI --wait)."""
        interval = poll_every if poll_every is not None else self.config.status.interval
        while True:
            job = self.journal.jobs.get(job_id)
            if job.state.is_final:
                return job
            if job.faxde_job_id is None:
                return job
            polled = await self.outbound.poll(job)
            if polled is not None and polled.state.is_final:
                return polled
            await asyncio.sleep(interval)

    def start_scheduler(self) -> AsyncIOScheduler:
        """APScheduler on the running loop; edges add their jobs to it."""
        scheduler = AsyncIOScheduler(
            job_defaults={
                # A run delayed by a stall still runs (no silent skip), once (coalesce),
                # and never overlaps itself.
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": 1,
            }
        )
        tick = max(1.0, min(self.config.status.interval, 15.0))
        scheduler.add_job(self.outbound.poll_due, "interval", seconds=tick, id="status-poll",
                          next_run_time=_now_plus(0.5))
        scheduler.start()
        self.scheduler = scheduler
        return scheduler


def _now_plus(seconds: float):  # -> datetime
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


class Daemon:
    """The long-running service. ``run()`` blocks until SIGTERM/SIGINT; ``serve()`` is its coroutine."""

    def __init__(
        self,
        config: Any,
        *,
        config_path: Path | None = None,
        provider: FaxProvider | None = None,
        drain_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._provider = provider
        self.drain_timeout = drain_timeout
        self.services: Services | None = None
        self.edges: list[Edge] = []
        self.ready: asyncio.Event | None = None  # set once every edge is up (created in serve())
        self._stop: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self.started_at = time.time()

    def run(self) -> int:
        try:
            asyncio.run(self.serve())
        except FaxbridgeError as exc:
            log.error("%s", exc)
            return 1
        return 0

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:  # a second signal: the operator means it
                log.warning("second signal: exiting at once")
                raise SystemExit(1)
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            self.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            # Not in the main thread (tests embed the daemon): the embedder stops it instead.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)

        async with Services(self.config, provider=self._provider) as services:
            self.services = services
            services.outbound.recover()
            self._sender = loop.create_task(services.outbound.run(), name="sender")
            services.start_scheduler()
            for module_name in EDGE_MODULES:
                edge = self._build_edge(module_name, services)
                if edge is not None:
                    await edge.start()
                    self.edges.append(edge)
                    log.info("%s ready", edge.name)
            log.info("faxbridge ready (%d edge(s), FAX.de at %s)", len(self.edges),
                     getattr(services.calls.provider, "endpoint", "?"))
            self.ready.set()
            await self._stop.wait()
            await self._shutdown(services)

    def _build_edge(self, module_name: str, services: Services) -> Edge | None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # that edge is not part of this build yet
            raise
        return module.build(services)  # type: ignore[no-any-return]

    async def _shutdown(self, services: Services) -> None:
        # 1. stop intake: nothing new is accepted from here on
        for edge in reversed(self.edges):
            with contextlib.suppress(Exception):
                await edge.stop_intake()
        if services.scheduler is not None:
            services.scheduler.shutdown(wait=False)
        # 2. let SendJob calls in flight finish and be recorded
        await services.outbound.stop(self.drain_timeout)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        for edge in reversed(self.edges):
            with contextlib.suppress(Exception):
                await edge.close()
        log.info("faxbridge stopped")
