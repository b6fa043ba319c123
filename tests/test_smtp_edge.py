"""Mail to fax end to end: the real daemon, its SMTP listener on a free loopback port, smtplib as the
office's mail server, the simulator as FAX.de and a second aiosmtpd as the relay for reports."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pypdf

from faxbridge.model import JobState
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import wait_until
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


def test_three_pdfs_become_sendfile1_to_3(start_rig, relay) -> None:
    pdfs = [make_pdf(n, tag=f"three-{n}") for n in (1, 2, 3)]
    rig = start_rig(relay.port)
    rig.send(mail(attachments=[(f"teil{n}.pdf", pdf, "application/pdf") for n, pdf in enumerate(pdfs, 1)]), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    for slot, pdf in enumerate(pdfs, 1):
        assert call.params[f"SendFilename{slot}"] == f"teil{slot}.pdf"
        assert call.params[f"SendFile{slot}"] == pdf


def test_four_pdfs_are_merged_into_one_in_their_order(start_rig, relay) -> None:
    pdfs = [make_pdf(n, tag=f"four-{n}") for n in (1, 2, 1, 3)]
    rig = start_rig(relay.port)
    rig.send(mail(attachments=[(f"p{n}.pdf", pdf, "application/pdf") for n, pdf in enumerate(pdfs, 1)]), [FAX])
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "p1 (+3 merged).pdf"
    merged = pypdf.PdfReader(io.BytesIO(call.params["SendFile1"]))
    assert len(merged.pages) == 1 + 2 + 1 + 3
    assert call.params["SendFilename2"] == "" and call.params["SendFile2"] == b""
    assert job.state is JobState.DELIVERED


def test_four_attachments_that_cannot_be_merged_are_refused_with_a_report(start_rig, relay) -> None:
    tiffs = [("scan%d.tif" % n, make_tiff(1, tag=f"t{n}"), "image/tiff") for n in range(4)]
    rig = start_rig(relay.port)
    rig.send(mail(subject="Vier Scans", attachments=tiffs), [FAX])
    [row] = rig.wait_processed(1)
    assert row["state"] == "rejected"
    [report] = relay.sink.wait_for(1)
    assert report.rcpt_tos == [SENDER]
    assert report.message["Subject"] == "Fax NOT sent: Vier Scans"
    text = report.message.get_content()
    assert "at most 3 documents" in text and "scan0.tif" in text
    assert rig.simulator.calls_for("SendJob") == []
    status = (rig.state_dir / "mail-archive" / f"{row['key']}.status.csv").read_text("utf-8-sig")
    assert "Rejected: 4 attachments" in status


def test_umlaut_file_name_and_subject_are_decoded_and_kept_in_the_report(start_rig, relay) -> None:
    pdf = make_pdf(1, tag="umlaut")
    rig = start_rig(relay.port)
    rig.send(mail(subject="Rückfrage zur Größe", body=None,
                  attachments=[("Angebot Müller – März.pdf", pdf, "application/pdf")]), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Angebot Müller – März.pdf"
    assert call.params["SendFile1"] == pdf
    [report] = relay.sink.wait_for(1)
    assert report.message["Subject"] == "Fax delivered: Rückfrage zur Größe"
    assert '"Rückfrage zur Größe"' in report.message.get_body(("plain",)).get_content()


def test_html_mail_with_inline_image_and_pdf_faxes_the_text_and_the_pdf_only(start_rig, relay) -> None:
    pdf = make_pdf(1, tag="html")
    message = mail(body=None)
    message.set_content(
        '<html><head><style>p {color: red}</style></head><body>'
        '<p>Hallo,<br>anbei <b>das</b> Angebot.</p><p>Gr&uuml;&szlig;e<br>Alice</p>'
        '<img src="cid:logo@example.com"></body></html>',
        subtype="html",
    )
    message.add_related(b"\x89PNG\r\n\x1a\nlogo", maintype="image", subtype="png", cid="<logo@example.com>")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="Angebot.pdf")
    rig = start_rig(relay.port)
    rig.send(message, [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendText"] == "Hallo,\nanbei das Angebot.\n\nGrüße\nAlice"
    assert call.params["SendFilename1"] == "Angebot.pdf" and call.params["SendFile1"] == pdf
    assert call.params["SendFilename2"] == ""  # the logo is not faxed


def test_sms_takes_the_body_without_its_signature(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    rig.send(mail(subject="egal", body="Bin in 10 Minuten da.\n-- \nAlice Example\nACME GmbH\n",
                  to="+4915112345678@sms.example.com"), ["+4915112345678@sms.example.com"])
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["JobType"] == 1
    assert call.params["Recipient"] == "+4915112345678"
    assert call.params["SendText"] == "Bin in 10 Minuten da."
    [report] = relay.sink.wait_for(1)
    assert report.message["Subject"] == "SMS sent: egal"


def test_a_busy_line_is_reported_as_not_delivered_in_plain_words(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    rig.simulator.set_result("+494012345678", "Busy")
    rig.send(mail(), [FAX])
    [job] = rig.wait_final(1)
    assert job.state is JobState.FAILED
    [report] = relay.sink.wait_for(1)
    assert report.message["Subject"] == "Fax NOT delivered (Busy): Angebot"
    text = report.message.get_body(("plain",)).get_content()
    assert "was NOT delivered to +494012345678: the line was busy every time it was called." in text
    assert "delivered to" not in text.replace("NOT delivered to", "")


def test_several_recipients_get_one_job_each_or_one_combined_job(start_rig, relay) -> None:
    to = ["+494012345678@fax.example.com", "+493012345678@fax.example.com"]
    rig = start_rig(relay.port)
    rig.send(mail(to=", ".join(to)), to)
    jobs = rig.wait_final(2)
    assert sorted(j.request.recipients[0].address for j in jobs) == ["+493012345678", "+494012345678"]
    assert len(rig.simulator.calls_for("SendJob")) == 2
    assert len(relay.sink.wait_for(2)) == 2


def test_combined_recipients_make_one_job_with_a_recipient_file(start_rig, relay) -> None:
    to = ["+494012345678@fax.example.com", "+493012345678@fax.example.com"]
    rig = start_rig(relay.port, multi_recipient="combined")
    rig.send(mail(to=", ".join(to)), to)
    [job] = rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["Recipient"] == ""
    assert call.params["RecipientFile"] == b"+494012345678\n+493012345678\n"
    [report] = relay.sink.wait_for(1)
    assert "+494012345678" in report.message.get_body(("plain",)).get_content()


def test_x_fax_headers_set_the_spec_options_and_the_send_time(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0)
    headers = {"X-Fax-Station-Id": "ACME GmbH", "X-Fax-Header": "Angebot 42",
               "X-Fax-Send-At": later.astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat()}
    rig.send(mail(headers=headers), [FAX])
    [row] = rig.wait_processed(1)
    assert row["state"] == "processed", row["problems"]
    [call] = wait_until(lambda: rig.simulator.calls_for("SendJob"), what="SendJob")
    assert call.params["Options"] == "STATIONID=ACME GmbH;FAXHEADER=Angebot 42"
    assert call.params["SendDateTime"] == later


def test_an_unknown_or_invalid_x_fax_header_refuses_the_mail(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    rig.send(mail(subject="a", headers={"X-Fax-Colour": "red"}), [FAX])
    rig.send(mail(subject="b", headers={"X-Fax-Station-Id": "Zu lang für eine Kennung"}), [FAX])
    rows = rig.wait_processed(2)
    assert [r["state"] for r in rows] == ["rejected", "rejected"]
    reports = {r.message["Subject"]: r.message.get_content() for r in relay.sink.wait_for(2)}
    assert "X-Fax-Colour: unknown header" in reports["Fax NOT sent: a"]
    assert "X-Fax-Station-Id: ASCII characters only" in reports["Fax NOT sent: b"]
    assert rig.simulator.calls_for("SendJob") == []


def test_a_letter_domain_sends_the_pdf_as_iletter(start_rig, relay) -> None:
    pdf = make_pdf(1, tag="letter")
    rig = start_rig(relay.port)
    rig.send(mail(to="post@letter.example.com", attachments=[("Brief.pdf", pdf, "application/pdf")]),
             ["post@letter.example.com"])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["JobType"] == 3
    assert call.params["Recipient"] == ""
    assert call.params["SendText"] == ""
    assert call.params["SendFile1"] == pdf


def test_a_slow_journal_fsync_before_250_does_not_stall_other_sessions(start_rig, relay, monkeypatch) -> None:
    # The spool row's fsync ran on the event loop: while one mail was being made durable, every
    # other session (and the hotfolders, the sender) waited (issue 7, bench.smtp_rate).
    import threading
    import time

    from faxbridge.edges.smtp import server as smtp

    rig = start_rig(relay.port)
    journal = rig.daemon.services.journal
    original, original_syncfs = journal.sync, smtp.sync_file_system
    made_durable: list[str] = []

    def slow_sync() -> None:
        time.sleep(1.0)  # a disk that takes its time
        original()

    def slow_syncfs(path: Path) -> bool:
        time.sleep(1.0)
        made_durable.append(threading.current_thread().name)
        return original_syncfs(path)

    monkeypatch.setattr(journal, "sync", slow_sync)
    monkeypatch.setattr(smtp, "sync_file_system", slow_syncfs)  # spool and journal share a file system
    sending = threading.Thread(target=rig.send, args=(mail(subject="slow"), [FAX]))
    sending.start()
    time.sleep(0.2)  # the first mail is inside its fsync now
    started = time.monotonic()
    with rig.client() as other:
        other.ehlo("other.example.com")
        answered = time.monotonic() - started
    sending.join(10)
    assert answered < 0.5
    assert made_durable and "MainThread" not in made_durable
    monkeypatch.setattr(journal, "sync", original)
    assert [r["state"] for r in rig.wait_processed(1)] == ["processed"]


def test_the_spool_waits_while_mails_arrive_but_not_for_long(start_rig, relay, monkeypatch) -> None:
    # Accepting mail comes first (a burst was answered at half the rate while earlier mails were
    # read and sent), within a bound: a mail is processed PROCESS_DEFER after it came at the latest.
    import time

    from faxbridge.edges.smtp import server as smtp

    monkeypatch.setattr(smtp, "INTAKE_QUIET", 2.0)
    monkeypatch.setattr(smtp, "PROCESS_DEFER", 60.0)
    rig = start_rig(relay.port)
    rig.send(mail(subject="first", body="Erstes Fax.\n"), [FAX])
    time.sleep(0.5)
    assert [r["state"] for r in rig.mail_rows()] == ["spooled"]  # a mail came 0.5 s ago: wait
    assert [r["state"] for r in rig.wait_processed(1)] == ["processed"]  # quiet for 2 s: go

    monkeypatch.setattr(smtp, "INTAKE_QUIET", 600.0)  # as if mails never stopped coming
    monkeypatch.setattr(smtp, "PROCESS_DEFER", 1.0)
    rig.send(mail(subject="second", body="Zweites Fax.\n"), [FAX])
    assert [r["state"] for r in rig.wait_processed(2)] == ["processed", "processed"]


REPLY_BODY = (
    "Bitte rufen Sie mich zurück.\n"
    "\n"
    "-- \n"
    "Alice Example\n"
    "ACME GmbH\n"
    "\n"
    "Am 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:\n"
    "> Wann passt es Ihnen?\n"
)


def test_the_note_leaves_out_signature_and_quoted_reply(start_rig, relay) -> None:
    rig = start_rig(relay.port)
    rig.send(mail(body=REPLY_BODY), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendText"] == "Bitte rufen Sie mich zurück."


def test_with_trim_body_off_the_whole_body_is_faxed_delimiter_and_all(start_rig, relay) -> None:
    rig = start_rig(relay.port, trim_body=False, body="cover")
    rig.send(mail(body=REPLY_BODY), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendText"] == REPLY_BODY.rstrip("\n")  # "-- " keeps its blank
