"""Mail to fax end to end: the real daemon, its SMTP listener on a free loopback port, smtplib as the
office's mail server, the simulator as FAX.de and a second aiosmtpd as the relay for reports."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf

from faxbridge.model import JobState
from faxbridge.simulator.samples import make_pdf, make_tiff

from test_smtp_support import SENDER, mail, relay, start_rig  # noqa: F401 (fixtures)

FAX = "+494012345678@fax.example.com"


def test_plain_text_mail_becomes_a_fax_note_and_the_sender_gets_a_report(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    rig.send(mail(body="Bitte rufen Sie mich zurück.\n\nGrüße\nAlice\n"), [FAX])
    [job] = rig.wait_final(1)
    assert job.state is JobState.DELIVERED
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["JobType"] == 0
    assert call.params["Recipient"] == "+494012345678"
    assert call.params["SendText"] == "Bitte rufen Sie mich zurück.\n\nGrüße\nAlice"
    assert call.params["SendFilename1"] == ""
    [report] = relay.sink.wait_for(1)
    assert report.rcpt_tos == [SENDER]
    assert report.mail_from == "faxbridge@example.com"
    message = report.message
    assert message["Subject"] == "Fax delivered: Angebot"
    assert message["Auto-Submitted"] == "auto-replied"
    text = message.get_body(("plain",)).get_content()
    assert "was delivered to +494012345678" in text
    [csv] = [p for p in message.iter_attachments() if p.get_filename() == "status.csv"]
    assert b'"+494012345678","FAX","OK"' in csv.get_content().encode() or '"OK"' in csv.get_content()


def test_one_pdf_is_sent_byte_for_byte_and_the_mail_is_archived_with_its_status(start_rig, relay) -> None:
    pdf = make_pdf(2, tag="one")
    rig = start_rig(relay.port)
    rig.send(mail(body="-- \nAlice\nACME GmbH\n", attachments=[("Angebot.pdf", pdf, "application/pdf")]), [FAX])
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Angebot.pdf"
    assert call.params["SendFile1"] == pdf
    assert call.params["SendText"] == ""  # body auto: only a signature beside an attachment
    [row] = rig.mail_rows()
    archive = Path(row["archive_path"])
    assert archive.exists() and archive.read_bytes().startswith(b"From: ") or b"Subject" in archive.read_bytes()
    status = archive.with_name(archive.stem + ".status.csv").read_text("utf-8-sig")
    assert '"+494012345678","FAX","OK"' in status
    assert not (rig.state_dir / "spool" / row["key"]).exists()  # documents cleaned up after the end
    relay.sink.wait_for(1)
