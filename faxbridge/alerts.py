"""Mails to people who must act: approvers when a job is held, admins when jobs stay stuck.

Alerts are per incident, not per job: an incident (jobs queued too long, held too long, unknown,
FAX.de failing) opens once — journaled, so a restart does not mail it again — and closes when the
condition clears; it is mailed again only when it comes back. Mail goes through the relay outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from faxbridge.relay import Relay, relay_for
from faxbridge.config import AlertsConfig, ApprovalConfig
from faxbridge.journal import Journal
from faxbridge.model import Job, JobState
from faxbridge.outbound import describe_recipients

log = logging.getLogger(__name__)

QUEUED, HELD, UNKNOWN, PROVIDER = "queued", "held", "unknown", "provider"


@dataclass(frozen=True)
class Incident:
    kind: str
    summary: str  # one line, the mail's subject
    detail: str  # what to do, for the mail's body


def find_incidents(
    journal: Journal, alerts: AlertsConfig, now: float, *, unreachable_since: float | None, paused: str | None
) -> dict[str, Incident]:
    """Which alert conditions hold now (pure but for reading the journal)."""
    found: dict[str, Incident] = {}
    checks = (
        (QUEUED, JobState.QUEUED, alerts.queued_after, False,
         "queued, not sent,", "Look at `faxbridge jobs --state queued` and the log: FAX.de may refuse or"
         " be unreachable, or sending is paused."),
        (HELD, JobState.HELD, alerts.held_after, False,
         "held for approval", "Approve or reject them: `faxbridge approve JOBID`,"
         " `faxbridge reject JOBID --reason …`, or in the console (/held)."),
        (UNKNOWN, JobState.UNKNOWN, alerts.unknown_after, True,
         "of unknown outcome", "Check the FAX.de job list, then `faxbridge retry JOBID`"
         " or `faxbridge cancel JOBID`."),
    )
    for kind, state, after, since_change, words, action in checks:
        count, ids = journal.jobs.waiting_since(state, now - after, since_change=since_change)
        if count:
            shown = ", ".join(map(str, ids)) + (" …" if count > len(ids) else "")
            found[kind] = Incident(
                kind, f"{count} job(s) {words} for over {_words(after)}",
                f"Jobs: {shown}\n\n{action}",
            )
    failing = unreachable_since is not None and now - unreachable_since >= alerts.provider_failing_after
    if failing or paused:
        why = paused or f"FAX.de unreachable for {_words(now - (unreachable_since or now))}"
        found[PROVIDER] = Incident(
            PROVIDER, f"FAX.de keeps failing: {why}"[:200],
            "faxbridge keeps every job and sends it once FAX.de answers again. Check the network,"
            " the FAX.de account and the faxbridge log.",
        )
    return found


class AlertsEdge:
    """Approvers' notices (approval.notify) and admins' alerts (alerts:) through the relay."""

    name = "alerts"

    def __init__(self, services: Any, relay: Relay, *, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.relay = relay
        self.approval: ApprovalConfig = services.config.approval
        self.alerts: AlertsConfig | None = services.config.alerts
        self.report_from: str = services.config.smtp.report_from
        self._clock = clock
        self._job_id = f"alerts-{id(self)}"

    async def start(self) -> None:
        self.relay.start(self.services.scheduler)
        if self.approval.notify:
            self.services.outbound.add_hold_hook(self.notify_held)
        if self.alerts is not None and self.services.scheduler is not None:
            self.services.scheduler.add_job(
                self.check, "interval", seconds=self.alerts.interval, id=self._job_id,
                replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=1,
            )

    async def stop_intake(self) -> None:
        scheduler = self.services.scheduler
        if scheduler is not None and scheduler.get_job(self._job_id) is not None:
            scheduler.remove_job(self._job_id)

    async def close(self) -> None:
        await self.relay.close()

    # -- approvers -------------------------------------------------------------------------

    async def notify_held(self, job: Job, reason: str) -> None:
        message = EmailMessage()
        message["From"] = self.report_from
        message["To"] = ", ".join(self.approval.notify)
        message["Subject"] = f"Fax job {job.id} waits for approval"
        link = self.approval.link.replace("{job}", str(job.id)) if self.approval.link else None
        documents = ", ".join(d.filename for d in job.request.documents) or "(text only)"
        lines = [
            f"faxbridge holds job {job.id} until an approver decides.",
            "",
            f"Why:        {reason}",
            f"From:       {job.source} {job.meta.get('label', '')}".rstrip(),
            f"To:         {describe_recipients(job.request)}",
            f"Documents:  {documents}",
            "",
        ]
        if link:
            lines += [f"Look at it and decide: {link}", ""]
        lines += [f"Or on the server: faxbridge approve {job.id}   /   faxbridge reject {job.id} --reason \"…\""]
        message.set_content("\n".join(lines) + "\n")
        await self.relay.send(message, key=f"held:{job.id}")

    # -- admins ----------------------------------------------------------------------------

    async def check(self) -> list[str]:
        """Open the incidents that began, mail each once; close those that cleared. Returns the
        kinds mailed now."""
        assert self.alerts is not None
        journal = self.services.journal
        now = self._clock()
        calls = self.services.calls
        found = find_incidents(journal, self.alerts, now,
                               unreachable_since=getattr(calls, "unreachable_since", None),
                               paused=self.services.outbound.paused)
        mailed = []
        open_now: Mapping[str, float] = journal.alerts.open_incidents()
        for kind in open_now:
            if kind not in found:
                journal.alerts.close(kind)
                log.info("alert cleared: %s", kind)
        for kind, incident in found.items():
            if kind in open_now or not journal.alerts.open(kind, incident.summary):
                continue
            opened = journal.alerts.open_incidents().get(kind, now)
            log.warning("ALERT: %s", incident.summary)
            await self.relay.send(self._alert_mail(incident), key=f"alert:{kind}:{opened!r}")
            mailed.append(kind)
        return mailed

    def _alert_mail(self, incident: Incident) -> EmailMessage:
        assert self.alerts is not None
        message = EmailMessage()
        message["From"] = self.report_from
        message["To"] = ", ".join(self.alerts.mail_to)
        message["Subject"] = f"faxbridge alert: {incident.summary}"
        message.set_content(
            f"{incident.summary}.\n\n{incident.detail}\n\n"
            "You get this mail once per incident; another comes only after it has cleared and come back.\n"
        )
        return message


def _words(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


def build(services: Any) -> AlertsEdge | None:
    relay = relay_for(services)
    if relay is None:  # the config check demands smtp.relay for both
        return None
    return AlertsEdge(services, relay)
