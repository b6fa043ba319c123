"""The provider seam: what the core needs from FAX.de, and the one place provider calls meet threads.

``FaxProvider`` is the only interface in faxbridge, because FAX.de is the only part that cannot run
for real here; the SOAP client implements it, and tests run it against the project's simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from faxbridge.model import Accepted, InboundFax, JobStatusReport, SendRequest

T = TypeVar("T")


class FaxProvider(Protocol):
    def send_job(self, request: SendRequest) -> Accepted: ...
    def job_status(self, faxde_job_id: int) -> JobStatusReport: ...
    def cancel_job(self, faxde_job_id: int) -> None: ...
    def request_received(self) -> InboundFax | None: ...
    def delete_received(self, fax_id: int) -> None: ...
    def close(self) -> None: ...


class ProviderCalls:
    """Runs the synchronous provider in a bounded pool of worker threads.

    zeep blocks; the event loop must not. The pool size is the provider concurrency: more
    parallel calls queue here instead of opening more connections to FAX.de.
    """

    def __init__(self, provider: FaxProvider, concurrency: int = 4) -> None:
        self.provider = provider
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="faxde")
        self.in_flight = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.latencies: dict[str, list[float]] = {}

    async def run(self, operation: str, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        started = time.monotonic()
        try:
            # Thread seam: the zeep call runs in the provider pool.
            result = await loop.run_in_executor(self._pool, fn, *args)
        except Exception:
            self.last_failure = time.time()
            raise
        finally:
            self.in_flight -= 1
            self.latencies.setdefault(operation, []).append(time.monotonic() - started)
            del self.latencies[operation][:-1000]
        self.last_success = time.time()
        return result

    async def send_job(self, request: SendRequest) -> Accepted:
        return await self.run("SendJob", self.provider.send_job, request)

    async def job_status(self, faxde_job_id: int) -> JobStatusReport:
        return await self.run("JobStatus", self.provider.job_status, faxde_job_id)

    async def cancel_job(self, faxde_job_id: int) -> None:
        await self.run("CancelJob", self.provider.cancel_job, faxde_job_id)

    async def request_received(self) -> InboundFax | None:
        return await self.run("RequestReceived", self.provider.request_received)

    async def delete_received(self, fax_id: int) -> None:
        await self.run("DeleteReceived", self.provider.delete_received, fax_id)

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self.provider.close()
