"""The status endpoint: /healthz for monitoring and /metrics in the Prometheus text format.

A deliberately tiny HTTP/1.0 server on the daemon's own loop (GET only, small requests, loopback by
default): pulling in a web framework for two read-only pages would cost more start-up time and
memory than it saves. Numbers come from the journal (jobs, inbound faxes) and from the provider
call statistics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from faxbridge.model import JobState, JobType
from faxbridge.provider import LATENCY_BUCKETS

if TYPE_CHECKING:
    from faxbridge.daemon import Daemon

log = logging.getLogger(__name__)

_MAX_REQUEST = 8192


async def start_server(daemon: Daemon, host: str, port: int) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, *_ = head[:_MAX_REQUEST].decode("latin-1").split(" ", 2)
            status, content_type, body = respond(daemon, method, path.split("?")[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", "bad request\n"
        except Exception:
            log.exception("status endpoint failed")
            status, content_type, body = 500, "text/plain", "internal error\n"
        data = body.encode("utf-8")
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  500: "Internal Server Error", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode("latin-1") + data
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_REQUEST)
    log.info("status endpoint on http://%s:%d/healthz and /metrics", host, port)
    return server


def respond(daemon: Daemon, method: str, path: str) -> tuple[int, str, str]:
    if method != "GET":
        return 405, "text/plain", "GET only\n"
    if path == "/healthz":
        problems = daemon.problems()
        body = json.dumps({"ok": not problems, "problems": problems, **attention(daemon)}, indent=1)
        return (503 if problems else 200), "application/json", body + "\n"
    if path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", render(daemon)
    return 404, "text/plain", "try /healthz or /metrics\n"


def attention(daemon: Daemon) -> dict[str, object]:
    """Things for the operator that do not make the service unhealthy."""
    if daemon.services is None:
        return {}
    unknown = daemon.services.journal.jobs.in_states(JobState.UNKNOWN)
    return {"jobs_with_unknown_outcome": [job.id for job in unknown]}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(daemon: Daemon) -> str:
    services = daemon.services
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")

    metric("faxbridge_up", "gauge", "1 while the daemon is ready.",
           [({}, 1.0 if daemon.ready is not None and daemon.ready.is_set() else 0.0)])
    metric("faxbridge_healthy", "gauge", "1 when /healthz reports no problem.",
           [({}, 0.0 if daemon.problems() else 1.0)])
    metric("faxbridge_start_time_seconds", "gauge", "When the daemon started (Unix time).",
           [({}, daemon.started_at)])
    if services is None:
        return "\n".join(lines) + "\n"

    counts = services.journal.jobs.counts_by_state_and_type()
    metric("faxbridge_jobs", "gauge", "Jobs in the journal by state and type.", [
        ({"state": state.value, "type": job_type.value}, float(counts.get((state.value, job_type.value), 0)))
        for state in JobState for job_type in JobType
    ])
    queued = sum(n for (state, _), n in counts.items() if state == JobState.QUEUED.value)
    metric("faxbridge_queue_depth", "gauge", "Jobs waiting for a SendJob attempt.", [({}, float(queued))])
    oldest = services.journal.jobs.oldest_unfinished_created_at()
    metric("faxbridge_oldest_unfinished_job_age_seconds", "gauge",
           "Age of the oldest job that has not ended (0 when there is none).",
           [({}, time.time() - oldest if oldest else 0.0)])
    metric("faxbridge_sending_paused", "gauge", "1 while all sending is paused (account problem).",
           [({}, 1.0 if services.outbound.paused else 0.0)])
    metric("faxbridge_provider_calls_in_flight", "gauge", "FAX.de calls running now.",
           [({}, float(services.calls.in_flight))])

    stats = services.calls.stats
    metric("faxbridge_provider_calls_total", "counter",
           "FAX.de calls by operation and outcome (ok, a result code, or transport).",
           [({"operation": op, "outcome": outcome}, float(n)) for (op, outcome), n in sorted(stats.calls.items())])
    lines.append("# HELP faxbridge_provider_call_duration_seconds FAX.de call latency.")
    lines.append("# TYPE faxbridge_provider_call_duration_seconds histogram")
    for op, buckets in sorted(stats.buckets.items()):
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets):
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'faxbridge_provider_call_duration_seconds_bucket{{operation="{op}",le="{le}"}} {count}')
        lines.append(f'faxbridge_provider_call_duration_seconds_sum{{operation="{op}"}} {stats.latency_sum[op]:g}')
        lines.append(f'faxbridge_provider_call_duration_seconds_count{{operation="{op}"}} {buckets[-1]}')

    inbound = services.journal.inbound.counts_by_state()
    metric("faxbridge_inbound_faxes", "gauge", "Received faxes in the journal by state.",
           [({"state": state}, float(n)) for state, n in sorted(inbound.items())])
    return "\n".join(lines) + "\n"
