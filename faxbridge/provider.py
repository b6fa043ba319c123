"""The provider seam: what the core needs from FAX.de, and the bounded, counted way the core calls it.

``FaxProvider`` is the only interface in faxbridge, because FAX.de is the only part that cannot run
for real here; the SOAP client implements it, and tests run it against the project's simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from faxbridge.errors import ProviderError
from faxbridge.model import Accepted, InboundFax, JobStatusReport, SendRequest

T = TypeVar("T")


class FaxProvider(Protocol):
    """The five operations, as coroutines on the event loop; ``close`` on the same loop."""

    async def send_job(self, request: SendRequest) -> Accepted: ...
    async def job_status(self, faxde_job_id: int) -> JobStatusReport: ...
    async def cancel_job(self, faxde_job_id: int) -> None: ...
    async def request_received(self) -> InboundFax | None: ...
    async def delete_received(self, fax_id: int) -> None: ...
    async def close(self) -> None: ...


# Latency buckets in seconds for the Prometheus histogram (a SendJob with 20 MB takes seconds).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class CallStats:
    """Counts and latencies of provider calls, by operation and outcome ("ok", a code, "transport")."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = {}

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        self.calls[operation, outcome] = self.calls.get((operation, outcome), 0) + 1
        counts = self.buckets.setdefault(operation, [0] * (len(LATENCY_BUCKETS) + 1))
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf: every observation
        self.latency_sum[operation] = self.latency_sum.get(operation, 0.0) + seconds


class ProviderCalls:
    """Runs the provider's calls from the event loop, bounded and counted.

    The concurrency bounds every call together: more parallel calls queue here instead of
    opening more connections to FAX.de.
    """

    def __init__(self, provider: FaxProvider, concurrency: int = 4) -> None:
        self.provider = provider
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.in_flight = 0
        # Since when FAX.de cannot be reached at all (transport errors only; any answer, even
        # an error code, proves it reachable). For health checks.
        self.unreachable_since: float | None = None
        self.stats = CallStats()

    async def _observed(self, operation: str, start: Callable[[], Awaitable[T]]) -> T:
        async with self._slots:
            self.in_flight += 1
            started = time.monotonic()
            outcome = "ok"
            try:
                result = await start()
            except ProviderError as exc:
                outcome = str(exc.code) if exc.code is not None else "transport"
                if exc.code is None:
                    self.unreachable_since = self.unreachable_since or time.time()
                else:
                    self.unreachable_since = None
                raise
            except Exception:
                outcome = "exception"
                raise
            finally:
                self.in_flight -= 1
                self.stats.observe(operation, outcome, time.monotonic() - started)
        self.unreachable_since = None
        return result

    async def send_job(self, request: SendRequest) -> Accepted:
        return await self._observed("SendJob", lambda: self.provider.send_job(request))

    async def job_status(self, faxde_job_id: int) -> JobStatusReport:
        return await self._observed("JobStatus", lambda: self.provider.job_status(faxde_job_id))

    async def cancel_job(self, faxde_job_id: int) -> None:
        await self._observed("CancelJob", lambda: self.provider.cancel_job(faxde_job_id))

    async def request_received(self) -> InboundFax | None:
        return await self._observed("RequestReceived", self.provider.request_received)

    async def delete_received(self, fax_id: int) -> None:
        await self._observed("DeleteReceived", lambda: self.provider.delete_received(fax_id))

    async def close(self) -> None:
        await self.provider.close()
