"""The inbox edge's lifecycle: the core run every ``inbound.interval`` on the daemon's scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faxbridge.edges.inbox.files import InboxFiles
from faxbridge.edges.inbox.mail import FaxMailer, _mailer
from faxbridge.errors import JournalError
from faxbridge.inbound import Inbound

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)
_DRAIN_TIMEOUT = 30.0  # seconds a run in progress may take to finish its fax at shutdown


class InboxEdge:
    """Runs the core every ``inbound.interval`` on the daemon's scheduler."""

    name = "inbox"

    def __init__(self, core: Inbound, scheduler: AsyncIOScheduler | None, interval: float) -> None:
        self.core = core
        self.scheduler = scheduler
        self.interval = interval
        self.mailer: FaxMailer | None = core.mail if isinstance(core.mail, FaxMailer) else None
        self._task: asyncio.Task[None] | None = None

    @property
    def last_error(self) -> str | None:
        """For health: what stopped the last run (unwritable folder, FAX.de, a blocking quarantine)."""
        return self.core.last_error

    @property
    def blocked_by(self) -> int | None:
        return self.core.blocked_by

    def health(self) -> str | None:
        """The daemon's health check: the problem, or None when the last run went through."""
        return self.core.last_error

    def status(self) -> dict[str, Any]:
        """Details for an operator: the last run and the journal's counts by state."""
        report = self.core.last_report
        return {
            "last_error": self.core.last_error,
            "blocked_by": self.core.blocked_by,
            "last_run": report.started.isoformat() if report else None,
            "last_run_summary": report.summary() if report else None,
            "faxes": self.core.journal.inbound.counts_by_state(),
        }

    async def start(self) -> None:
        if self.scheduler is None:
            raise RuntimeError("the inbox edge needs the daemon's scheduler (start_scheduler first)")
        if self.mailer is not None:
            self.mailer.relay.start(self.scheduler)
        self.scheduler.add_job(
            self._tick, "interval", seconds=self.interval, id="inbound", name="inbound faxes",
            next_run_time=dt.datetime.now(dt.timezone.utc), replace_existing=True,
            # A run delayed by a stall still runs (no silent skip), once, never beside itself.
            misfire_grace_time=None, coalesce=True, max_instances=1,
        )

    async def _tick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inbound-run")
        # Shielded: the scheduler's shutdown cancels its running jobs, and a run must not be cut
        # off between writing a file and journaling it; close() waits for it instead.
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            await self.core.run_once()
        except JournalError as exc:  # the journal away for a moment: the next run goes on
            log.warning("inbound run stopped, the journal is unavailable: %s", exc)
            self.core.last_error = f"inbound run stopped: {exc}"
        except Exception as exc:  # a bug, not a fax problem: keep the schedule, report it
            log.exception("inbound run failed")
            self.core.last_error = f"inbound run failed: {exc}"

    async def stop_intake(self) -> None:
        if self.scheduler is not None:
            with contextlib.suppress(Exception):  # JobLookupError, or the scheduler is down
                self.scheduler.remove_job("inbound")
        self.core.request_stop()
        await self._drain(_DRAIN_TIMEOUT)

    async def close(self) -> None:
        await self._drain(_DRAIN_TIMEOUT)
        if self.mailer is not None:
            await self.mailer.relay.close()

    async def _drain(self, timeout: float) -> None:
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("inbound run still busy after %.0f s; cancelled", timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def make_core(services: Any) -> Inbound:
    config = services.config
    inbound = config.inbound
    return Inbound(
        services.journal,
        services.calls,
        InboxFiles(inbound.filename),
        inbound,
        state_dir=Path(config.state_dir),
        default_country=config.numbers.default_country,
        mail=_mailer(services),
        duty=lambda: services.node.duty(f"inbound:{config.faxde.account}"),
    )


def build(services: Any) -> InboxEdge | None:
    """The daemon's entry point; None when inbound faxes are not collected."""
    if services.config.inbound is None:
        return None
    return InboxEdge(make_core(services), services.scheduler, services.config.inbound.interval)
