"""Approval and alerts by mail, end to end: the daemon's SMTP edge, a real aiosmtpd relay, the
simulator — held mails, the approvers' notice, the sender's report of a rejection, the send report
PDF attached, and admin alerts once per incident (also across a restart)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf

from faxbridge.model import JobState
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import RunningDaemon, wait_until
from test_smtp_support import SENDER, Rig, mail, relay, smtp_section  # noqa: F401 (fixture)

FAX = "+494012345678@fax.example.com"
APPROVER = "approver@example.com"
ADMIN = "admin@example.com"


def start(tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path],
          run_daemon: Callable[..., RunningDaemon], relay_port: int, smtp: dict[str, Any] | None = None,
          **sections: Any) -> Rig:
    config = make_config(smtp=smtp_section(relay_port, **(smtp or {})), **sections)
    return Rig(run_daemon(config), tmp_path / "state", simulator)


def subjects(relay: Any) -> list[str]:
    return [m.message["Subject"] for m in relay.sink.messages]


def test_a_held_mail_tells_the_approvers_and_a_rejection_reaches_the_sender(
    tmp_path, simulator, make_config, run_daemon, relay
) -> None:
    rig = start(tmp_path, simulator, make_config, run_daemon, relay.port,
                smtp={"hold": {"example.com": "always"}},
                approval={"notify": [APPROVER], "link": "https://fax.example.com/jobs/{job}"})
    rig.send(mail(attachments=[("Angebot.pdf", make_pdf(1, tag="held"), "application/pdf")]), [FAX])
    [notice] = relay.sink.wait_for(1)
    [job] = rig.jobs()
    assert job.state is JobState.HELD and simulator.calls_for("SendJob") == []
    assert notice.rcpt_tos == [APPROVER]
    text = notice.message.get_body(("plain",)).get_content()
    assert notice.message["Subject"] == f"Fax job {job.id} waits for approval"
    assert f"https://fax.example.com/jobs/{job.id}" in text and "smtp.hold for *@example.com" in text

    rig.daemon.call(lambda: rig.daemon.services.outbound.reject(job.id, "bob", "wrong customer"))
    _, report = relay.sink.wait_for(2)
    assert report.rcpt_tos == [SENDER] and report.message["Subject"].startswith("Fax NOT sent")
    assert "rejected by bob: wrong customer" in report.message.get_body(("plain",)).get_content()
    assert simulator.calls_for("SendJob") == []
    rig.journal.close()


def test_the_send_report_pdf_rides_on_the_senders_report_mail(
    tmp_path, simulator, make_config, run_daemon, relay
) -> None:
    simulator.polls_until_done = 0
    rig = start(tmp_path, simulator, make_config, run_daemon, relay.port, smtp={"report_pdf": True})
    pdf = make_pdf(1, tag="attached")
    rig.send(mail(attachments=[("Angebot.pdf", pdf, "application/pdf")]), [FAX])
    [job] = rig.wait_final(1)
    [report] = relay.sink.wait_for(1)
    [attachment] = [p for p in report.message.iter_attachments() if p.get_filename() == f"fax-{job.id}-report.pdf"]
    text = " ".join(pypdf.PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text().split())
    import hashlib

    assert f"SHA-256 {hashlib.sha256(pdf).hexdigest()}" in text and "result: OK" in text
    rig.journal.close()


def test_an_alert_is_mailed_once_per_incident_and_again_after_it_cleared_and_came_back(
    tmp_path, simulator, make_config, run_daemon, relay
) -> None:
    sections = {
        "approval": {"hold": "always"},
        # Checked by hand below (interval long): each check is one step of the story.
        "alerts": {"mail_to": [ADMIN], "held_after": "0s", "queued_after": "1h", "unknown_after": "1h",
                   "provider_failing_after": "1h", "interval": "1h"},
    }
    rig = start(tmp_path, simulator, make_config, run_daemon, relay.port, **sections)

    def check() -> list[str]:
        edge = next(e for e in rig.daemon.daemon.edges if e.name == "alerts")
        return rig.daemon.call(edge.check)

    rig.send(mail(attachments=[("a.pdf", make_pdf(1, tag="a"), "application/pdf")]), [FAX])
    [first] = wait_until(lambda: [j for j in rig.jobs() if j.state is JobState.HELD], what="a held job")
    assert check() == ["held"]
    [alert] = relay.sink.wait_for(1)
    assert alert.rcpt_tos == [ADMIN]
    assert alert.message["Subject"] == "faxbridge alert: 1 job(s) held for approval for over 0 s"
    assert f"Jobs: {first.id}" in alert.message.get_body(("plain",)).get_content()
    assert check() == []  # the same incident: no second mail

    rig.daemon.stop()  # a restart does not forget the open incident
    rig.journal.close()
    rig = start(tmp_path, simulator, make_config, run_daemon, relay.port, **sections)
    assert check() == []

    rig.daemon.call(lambda: rig.daemon.services.outbound.approve(first.id, "alice"))
    assert check() == []  # cleared
    assert rig.journal.alerts.open_incidents() == {}
    rig.send(mail(attachments=[("b.pdf", make_pdf(1, tag="b"), "application/pdf")]), [FAX])
    wait_until(lambda: [j for j in rig.jobs() if j.state is JobState.HELD], what="another held job")
    assert check() == ["held"]  # it came back: mailed again
    relay.sink.wait_for(2)
    assert [s for s in subjects(relay) if s.startswith("faxbridge alert")] == [alert.message["Subject"]] * 2
    rig.journal.close()
