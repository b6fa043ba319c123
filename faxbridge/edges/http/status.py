"""The status routes of the daemon's HTTP app: /healthz for monitoring, /metrics for Prometheus.

/metrics is prometheus_client's exposition of one collector that reads the journal and the
provider call statistics at scrape time, so nothing is counted twice and nothing goes stale.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from faxbridge.journal import Journal
from faxbridge.model import JobState, JobType
from faxbridge.provider import LATENCY_BUCKETS, ProviderCalls


class _Outbound(Protocol):
    @property
    def paused(self) -> str | None: ...
    def awaiting_operator(self) -> list[int]: ...


class RunningServices(Protocol):
    """What the status routes read of the daemon's running parts."""

    @property
    def journal(self) -> Journal: ...
    @property
    def calls(self) -> ProviderCalls: ...
    @property
    def outbound(self) -> _Outbound: ...


class StatusSource(Protocol):
    """The daemon as the status routes see it (faxbridge.daemon.Daemon)."""

    started_at: float

    @property
    def ready(self) -> asyncio.Event | None: ...
    @property
    def services(self) -> RunningServices | None: ...
    def problems(self) -> list[str]: ...


def add_routes(app: web.Application, source: StatusSource) -> None:
    """/healthz and /metrics on ``app``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FaxbridgeCollector(source))

    async def healthz(request: web.Request) -> web.Response:
        problems = source.problems()
        body = json.dumps({"ok": not problems, "problems": problems, **attention(source)}, indent=1)
        return web.Response(status=503 if problems else 200, text=body + "\n", content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        # A few small journal queries; run on the loop like any other journal read.
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)


def attention(source: StatusSource) -> dict[str, object]:
    """Things for the operator that do not make the service unhealthy."""
    if source.services is None:
        return {}
    unknown = source.services.journal.jobs.in_states(JobState.UNKNOWN)
    return {"jobs_with_unknown_outcome": [job.id for job in unknown],
            "jobs_awaiting_operator": source.services.outbound.awaiting_operator()}


class FaxbridgeCollector(Collector):
    """Every faxbridge metric, read from the daemon, its journal and its provider calls when scraped."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        ready = source.ready is not None and source.ready.is_set()
        yield GaugeMetricFamily("faxbridge_up", "1 while the daemon is ready.", value=1.0 if ready else 0.0)
        yield GaugeMetricFamily("faxbridge_healthy", "1 when /healthz reports no problem.",
                                value=0.0 if source.problems() else 1.0)
        yield GaugeMetricFamily("faxbridge_start_time_seconds", "When the daemon started (Unix time).",
                                value=source.started_at)
        services = source.services
        if services is None:
            return
        yield from _journal_metrics(services)
        yield from _provider_metrics(services)


def _journal_metrics(services: RunningServices) -> Iterator[Metric]:
    journal = services.journal
    counts = journal.jobs.counts_by_state_and_type()
    jobs = GaugeMetricFamily("faxbridge_jobs", "Jobs in the journal by state and type.", labels=["state", "type"])
    for state in JobState:
        for job_type in JobType:
            jobs.add_metric([state.value, job_type.value], counts.get((state.value, job_type.value), 0))
    yield jobs
    queued = sum(n for (state, _), n in counts.items() if state == JobState.QUEUED.value)
    yield GaugeMetricFamily("faxbridge_queue_depth", "Jobs waiting for a SendJob attempt.", value=queued)
    oldest = journal.jobs.oldest_unfinished_created_at()
    yield GaugeMetricFamily("faxbridge_oldest_unfinished_job_age_seconds",
                            "Age of the oldest job that has not ended (0 when there is none).",
                            value=time.time() - oldest if oldest else 0.0)
    yield GaugeMetricFamily("faxbridge_sending_paused", "1 while all sending is paused (account problem).",
                            value=1.0 if services.outbound.paused else 0.0)
    yield GaugeMetricFamily(
        "faxbridge_jobs_awaiting_operator",
        "Jobs the daemon will not send again by itself: SendJob's outcome unknown past the reconcile"
        " window, or left 'submitting' by a process that is gone.",
        value=len(services.outbound.awaiting_operator()))
    inbound = GaugeMetricFamily("faxbridge_inbound_faxes", "Received faxes in the journal by state.",
                                labels=["state"])
    for inbound_state, n in sorted(journal.inbound.counts_by_state().items()):
        inbound.add_metric([inbound_state], n)
    yield inbound


def _provider_metrics(services: RunningServices) -> Iterator[Metric]:
    calls = services.calls
    yield GaugeMetricFamily("faxbridge_provider_calls_in_flight", "FAX.de calls running now.",
                            value=calls.in_flight)
    stats = calls.stats
    # The family is named without _total; prometheus_client names the sample ..._total.
    total = CounterMetricFamily("faxbridge_provider_calls",
                                "FAX.de calls by operation and outcome (ok, a result code, or transport).",
                                labels=["operation", "outcome"])
    for (operation, outcome), n in sorted(stats.calls.items()):
        total.add_metric([operation, outcome], n)
    yield total
    latency = HistogramMetricFamily("faxbridge_provider_call_duration_seconds", "FAX.de call latency.",
                                    labels=["operation"])
    for operation, buckets in sorted(stats.buckets.items()):
        bounds = [str(float(bound)) for bound in LATENCY_BUCKETS] + ["+Inf"]  # as prometheus_client writes them
        latency.add_metric([operation], list(zip(bounds, buckets)), sum_value=stats.latency_sum[operation])
    yield latency
