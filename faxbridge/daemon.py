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
import os
import signal
import socket
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from faxbridge import cli_outbox, logs
from faxbridge import systemd
from faxbridge.approval import HoldPolicy
from faxbridge.callbacks import CallbackTokens
from faxbridge.errors import FaxbridgeError, JournalError
from faxbridge.journal import Journal
from faxbridge.model import Job
from faxbridge.nodes import Node
from faxbridge.outbound import Outbound, OutboundSettings, number_check
from faxbridge.provider import FaxProvider, ProviderCalls

if TYPE_CHECKING:
    from faxbridge.edges.http.app import HTTPServer

log = logging.getLogger(__name__)

# Edge modules, started in this order and stopped in reverse, each only when its config section
# is there (an unused edge is not even imported). Each has ``build(services) -> Edge | None``.
EDGE_MODULES: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("faxbridge.edges.inbox.edge", lambda config: config.inbound is not None),
    ("faxbridge.edges.hotfolder", lambda config: bool(config.hotfolders)),
    ("faxbridge.edges.smtp.server", lambda config: config.smtp is not None),
    ("faxbridge.edges.printing", lambda config: config.print is not None),
    ("faxbridge.edges.http.console", lambda config: config.console is not None),
    # Approvers' and admins' mails (approval.notify, alerts): needs only the relay.
    ("faxbridge.alerts", lambda config: config.alerts is not None or bool(config.approval.notify)),
)


class Edge(Protocol):
    name: str

    async def start(self) -> None: ...  # ready to take input when this returns
    async def stop_intake(self) -> None: ...  # take no new input; finish what was accepted
    async def close(self) -> None: ...


def make_provider(config: Any) -> FaxProvider:
    from faxbridge.faxde.client import FaxDeClient

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


def hold_policy(config: Any) -> HoldPolicy:
    """The approval rules of every channel, for the outbound core to ask at submit."""
    smtp_rules = tuple(config.smtp.hold.items()) if config.smtp is not None else ()
    return HoldPolicy(
        everywhere=config.approval.hold,
        hotfolders={str(folder.path): folder.hold for folder in config.hotfolders if folder.hold},
        senders=smtp_rules,
        home_country=config.numbers.default_country,
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
        self.journal = Journal.from_config(self.config)
        try:
            # Thread seam: building the client may fetch the WSDL over the network.
            provider = self._provider or await asyncio.to_thread(make_provider, self.config)
        except BaseException:
            self.journal.close()
            raise
        self.calls = ProviderCalls(provider, concurrency=self.config.faxde.concurrency)
        callback_url = self.config.faxde.callback_url
        self.outbound = Outbound(
            self.journal,
            self.calls,
            check_recipient=number_check(self.config.numbers.policy()),
            settings=outbound_settings(self.config),
            callbacks=CallbackTokens.load(Path(self.config.state_dir), callback_url) if callback_url else None,
            hold_policy=hold_policy(self.config),
            hold_expiry=self.config.approval.expiry,
        )
        # Whichever process sees a `faxbridge send` job end (the command with --wait, or the
        # daemon) removes the copies it was sent from.
        self.outbound.add_reporter(cli_outbox.SOURCE, cli_outbox.release)
        self.node = Node(self.journal, self.config.journal.node or socket.gethostname(), self.config.journal.lease)
        if self.node.shared:
            self.outbound.idle_poll = min(self.config.journal.lease / 3, 5.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.calls.close()
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

    async def apply_retention(self) -> int:
        """journal.retention: forget final, reported jobs and deleted faxes older than that.

        In short transactions, yielding to the loop between them, so that the first run after
        months without one does not stall the daemon. (Mails: the SMTP edge; the relay's outbox:
        its own keep_sent.) Returns how many rows went.
        """
        cutoff = self.journal.clock() - self.config.journal.retention
        total = 0
        for purge in (self.journal.jobs.purge_finished, self.journal.inbound.purge_deleted):
            while True:
                try:
                    removed = purge(cutoff, limit=_PURGE_BATCH)
                except FaxbridgeError as exc:  # journal busy: the next run tries again
                    log.warning("journal retention postponed: %s", exc)
                    return total
                total += removed
                if removed < _PURGE_BATCH:
                    break
                await asyncio.sleep(0)
        if total:
            log.info("journal retention: forgot %d row(s) older than %s", total,
                     _days(self.config.journal.retention))
        return total

    async def poll_status(self) -> None:
        """JobStatus polling (and the reports it leads to): one node at a time per account."""
        async with self.node.duty(f"status:{self.config.faxde.account}") as held:
            if held:
                try:
                    await self.outbound.poll_due()
                except JournalError as exc:  # away for a moment: the next tick polls again
                    log.warning("JobStatus polling skipped, the journal is unavailable: %s", exc)

    async def node_heartbeat(self) -> None:
        """This node's heartbeat; then the SendJobs in flight of nodes that stopped beating."""
        if not self.node.registered:
            return  # a command's scheduler (`faxbridge receive`), not a node
        try:
            self.node.beat(f"{self.outbound.in_flight} SendJob(s) in flight")
            if self.node.shared:
                self.outbound.adopt_orphans(self.node.lease)
        except JournalError as exc:  # away for a moment; a silence past the lease costs the leases
            log.warning("node %s: heartbeat skipped, the journal is unavailable: %s", self.node.name, exc)

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
        scheduler.add_job(self.poll_status, "interval", seconds=tick, id="status-poll",
                          next_run_time=_now_plus(0.5))
        scheduler.add_job(self.node_heartbeat, "interval", seconds=max(0.2, self.node.lease / 3),
                          id="node-heartbeat", next_run_time=_now_plus(0.2))
        if self.config.approval.expiry > 0:
            scheduler.add_job(self.outbound.expire_held, "interval",
                              seconds=max(1.0, min(60.0, self.config.approval.expiry / 10)),
                              id="hold-expiry", next_run_time=_now_plus(1.0))
        retention = self.config.journal.retention
        scheduler.add_job(self.apply_retention, "interval", seconds=min(3600.0, max(1.0, retention / 4)),
                          id="journal-retention", next_run_time=_now_plus(1.0))
        scheduler.start()
        self.scheduler = scheduler
        return scheduler


_PURGE_BATCH = 500  # rows per retention transaction


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


def _now_plus(seconds: float):  # -> datetime
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


class Daemon:
    """The long-running service. ``run()`` blocks until SIGTERM/SIGINT; ``serve()`` is its coroutine.

    SIGHUP re-reads the config file: a valid one replaces the running set-up (intake stops, calls in
    flight finish, everything starts again on the new config); an invalid one is logged and the
    daemon carries on with the old one.
    """

    # /healthz fails once FAX.de has been unreachable this long.
    UNREACHABLE_GRACE = 300.0

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
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._next_config: Any = None
        self._sender: asyncio.Task[None] | None = None
        self.started_at = time.time()
        self.reloads = 0

    def run(self) -> int:
        try:
            asyncio.run(self.serve())
        except FaxbridgeError as exc:
            log.error("%s", exc)
            return 1
        return 0

    def request_stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def request_reload(self) -> None:
        """Validate the config file again; switch to it only if it is valid."""
        if self.config_path is None:
            log.warning("reload requested, but the daemon was not started from a config file")
            return
        from faxbridge.config import load_config

        try:
            new = load_config(self.config_path)
        except FaxbridgeError as exc:
            log.error("reload refused, still running on the previous configuration: %s", exc)
            return
        # The new passwords are scrubbed from the log like the first ones (the CLI registered
        # only those it read at start).
        for secret in new.secrets():
            logs.register_secret(secret.reveal())
        for warning in new.warnings:
            log.warning("%s", warning)
        self._next_config = new
        if self._wake is not None:
            self._wake.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._install_signal_handlers(loop)
        watchdog = loop.create_task(self._watchdog(), name="systemd-watchdog")
        try:
            while True:
                await self._serve_once(loop)
                if self._stopping or self._next_config is None:
                    break
                self.config, self._next_config = self._next_config, None
                self.reloads += 1
                log.info("configuration reloaded")
        finally:
            watchdog.cancel()
            systemd.notify("STOPPING=1")

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        signals = 0

        def on_stop(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:  # a second signal: the operator means it
                log.warning("second signal: exiting at once")
                os._exit(1)
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            systemd.notify("STOPPING=1", "STATUS=stopping: finishing calls in flight")
            self.request_stop()

        handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop,
                    signal.SIGHUP: lambda _signum: self.request_reload()}
        for signum, handler in handlers.items():
            # Not in the main thread (tests embed the daemon): the embedder stops it instead.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, handler, signum)

    async def _serve_once(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._wake is not None and self.ready is not None
        self._wake.clear()
        self.edges = []
        async with Services(self.config, provider=self._provider) as services:
            self.services = services
            services.node.register()
            services.outbound.recover(services.node.lease if services.node.shared else None)
            self._sender = loop.create_task(services.outbound.run(), name="sender")
            status_server: HTTPServer | None = None
            # Whatever fails during start-up, what was started is stopped in order.
            try:
                services.start_scheduler()
                for module_name, configured in EDGE_MODULES:
                    if not configured(self.config):
                        continue
                    edge = self._build_edge(module_name, services)
                    if edge is not None:
                        await edge.start()
                        self.edges.append(edge)
                        log.info("%s ready", edge.name)
                if not self.config.hotfolders:
                    self._report_jobs_of_removed_hotfolders(services)
                status_server = await self._start_status_server()
                log.info("faxbridge ready (%d edge(s), FAX.de at %s)", len(self.edges),
                         getattr(services.calls.provider, "endpoint", "?"))
                self.ready.set()
                systemd.notify("READY=1", f"STATUS=ready: {', '.join(e.name for e in self.edges) or 'no edges'}")
                await self._wake.wait()
                if not self._stopping:
                    systemd.notify("RELOADING=1", "STATUS=reloading the configuration")
            finally:
                self.ready.clear()
                await self._shutdown(services)
                if status_server is not None:
                    await status_server.close()

    async def _start_status_server(self) -> HTTPServer | None:
        listen = self.config.metrics.listen
        if listen is None:
            return None
        from faxbridge.edges.http import app as web

        return await web.serve(self, listen.host, listen.port, callback_url=self.config.faxde.callback_url)

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop hangs, the pings stop and systemd
        restarts the service."""
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def problems(self) -> list[str]:
        """What makes the daemon unhealthy right now; empty when all is well."""
        found: list[str] = []
        services = self.services
        if services is None or self.ready is None or not self.ready.is_set():
            return ["not ready"]
        since = services.calls.unreachable_since
        if since is not None and time.time() - since > self.UNREACHABLE_GRACE:
            found.append(f"FAX.de unreachable for {time.time() - since:.0f} s")
        if services.outbound.paused:
            found.append(f"sending paused: {services.outbound.paused}")
        stuck = services.outbound.awaiting_operator()
        if stuck:
            # Otherwise visible only in the log: a hotfolder document sits in its claim meanwhile.
            found.append(f"{len(stuck)} job(s) need the operator, SendJob's outcome unknown: "
                         f"{', '.join(map(str, stuck[:10]))} (faxbridge jobs --state unknown)")
        if self._sender is not None and self._sender.done():
            found.append("the sender task has stopped")
        for edge in self.edges:
            health = getattr(edge, "health", None)
            problem = health() if callable(health) else None
            if problem:
                found.append(f"{edge.name}: {problem}")
        return found

    @staticmethod
    def _report_jobs_of_removed_hotfolders(services: Services) -> None:
        """Jobs taken from hotfolders that are no longer configured still end with their report
        (status CSV in sent/, or failed/ with the reason): the folders are named in each job."""
        from faxbridge.edges.hotfolder.outcome import SOURCE, Outcomes

        if services.journal.jobs.any_unreported(SOURCE):
            # Only the reporter: without watchers, no acceptance hook spawns anything.
            services.outbound.add_reporter(SOURCE, Outcomes(services.journal, spawn=asyncio.ensure_future).report)
            log.info("no hotfolder is configured; jobs taken from hotfolders earlier are still reported")

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
            try:
                await edge.stop_intake()
            except Exception:
                log.exception("%s: stopping intake failed", edge.name)
        if services.scheduler is not None and services.scheduler.running:
            services.scheduler.shutdown(wait=False)
        # 2. let SendJob calls in flight finish and be recorded
        await services.outbound.stop(self.drain_timeout)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        for edge in reversed(self.edges):
            try:
                await edge.close()
            except Exception:
                log.exception("%s: closing failed", edge.name)
        services.node.stop()
        log.info("faxbridge stopped" if self._stopping else "faxbridge restarting for the new configuration")
