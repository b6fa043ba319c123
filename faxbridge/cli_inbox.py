"""``faxbridge receive`` and ``faxbridge receive --release``: the inbox core run from the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from faxbridge.config import Config
from faxbridge.daemon import Services
from faxbridge.edges.inbox.edge import make_core
from faxbridge.edges.inbox.mail import FaxMailer
from faxbridge.inbound import RunReport
from faxbridge.journal.inbound import InboundRecord


async def receive(config: Config, *, once: bool = True, wait_for_lock: float = 30.0,
                  on_report: Callable[[RunReport], None] = lambda report: None) -> RunReport:
    """Collect from the command line: one run (``once``), or one every inbound.interval until
    interrupted. Waits up to ``wait_for_lock`` seconds for a run of the daemon to end."""
    assert config.inbound is not None
    async with Services(config) as services:
        core = make_core(services)
        mailer = core.mail if isinstance(core.mail, FaxMailer) else None
        if mailer is not None:
            mailer.relay.start()  # delivers in the background; close() waits a little for it
        try:
            while True:
                report = await core.run_once(wait_for_lock=wait_for_lock)
                on_report(report)
                if once:
                    return report
                await asyncio.sleep(config.inbound.interval)
        finally:
            if mailer is not None:
                await mailer.relay.close()


async def release(config: Config, fax_id: int) -> InboundRecord:
    async with Services(config) as services:
        return await make_core(services).release(fax_id)
