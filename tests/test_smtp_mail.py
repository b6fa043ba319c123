"""plan_mail: from the bytes of a mail to the SendRequests it asks for — charsets, RFC 2047/2231
names, the body modes, attachments that are (not) documents, X-Fax-* headers — without a server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from faxbridge.edges.smtp.mail import (
    NOTHING_TO_FAX,
    Addressee,
    MailSettings,
    fax_text,
    parse_send_at,
    plan_mail,
    sms_text,
)
from faxbridge.config import BodyMode, MultiRecipient
from faxbridge.documents import DocumentLimits
from faxbridge.model import JobType
from faxbridge.simulator.samples import make_pdf, make_tiff

FAX = Addressee("+494012345678@fax.example.com", JobType.FAX, "+494012345678")
FAX2 = Addressee("+493012345678@fax.example.com", JobType.FAX, "+493012345678")
SMS = Addressee("+4915112345678@sms.example.com", JobType.SMS, "+4915112345678")
UTC = dt.timezone.utc
NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def b64(data: bytes) -> str:
    import base64

    return base64.encodebytes(data).decode()


def raw_mail(*parts: str, headers: str = "", boundary: str = "BOUNDARY") -> bytes:
    head = (
        "From: alice@example.com\r\nTo: +494012345678@fax.example.com\r\n"
        "Subject: =?iso-8859-1?q?R=FCckfrage?=\r\nMessage-ID: <m1@example.com>\r\n"
        f"MIME-Version: 1.0\r\n{headers}"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    )
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return (head + body).encode("latin-1")


def plan(data: bytes, tmp_path: Path, *addressees: Addressee, **settings):
    return plan_mail(data, addressees or (FAX,), MailSettings(**settings), tmp_path / "work", now=NOW)


def test_charsets_rfc2047_subject_and_both_file_name_encodings(tmp_path) -> None:
    pdf1, pdf2 = make_pdf(1, tag="a"), make_pdf(1, tag="b")
    data = raw_mail(
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        "Gr=FC=DFe aus K=F6ln",
        # RFC 2231, as Thunderbird and Apple Mail write it
        "Content-Type: application/pdf\r\nContent-Disposition: attachment;"
        " filename*=utf-8''Angebot%20M%C3%BCller.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(pdf1),
        # RFC 2047 inside the parameter, as Outlook writes it
        'Content-Type: application/pdf; name="=?utf-8?q?Pr=C3=BCfung.pdf?="\r\nContent-Disposition: attachment;'
        ' filename="=?utf-8?q?Pr=C3=BCfung.pdf?="\r\nContent-Transfer-Encoding: base64\r\n\r\n' + b64(pdf2),
    )
    result = plan(data, tmp_path, body=BodyMode.COVER)
    assert result.subject == "Rückfrage"
    assert result.message_id == "<m1@example.com>"
    [part] = result.parts
    assert part.request.text == "Grüße aus Köln"
    assert [d.filename for d in part.request.documents] == ["Angebot Müller.pdf", "Prüfung.pdf"]
    assert [d.path.read_bytes() for d in part.request.documents] == [pdf1, pdf2]


def test_apple_mail_body_split_around_an_attachment_is_kept_whole(tmp_path) -> None:
    pdf = make_pdf(1)
    data = raw_mail(
        "Content-Type: text/plain; charset=utf-8\r\n\r\nOben",
        "Content-Type: application/pdf\r\nContent-Disposition: inline; filename=a.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(pdf),
        "Content-Type: text/plain; charset=utf-8\r\n\r\nUnten",
    )
    [part] = plan(data, tmp_path).parts
    assert part.request.text == "Oben\n\nUnten"
    assert [d.filename for d in part.request.documents] == ["a.pdf"]


def test_format_flowed_text_is_joined(tmp_path) -> None:
    data = raw_mail('Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nEin langer \r\nSatz.\r\n')
    [part] = plan(data, tmp_path).parts
    assert part.request.text == "Ein langer Satz."


def test_signature_parts_and_inline_images_are_left_out_but_png_attachments_converted(tmp_path) -> None:
    pdf = make_pdf(1)
    data = raw_mail(
        "Content-Type: text/plain\r\n\r\nHallo",
        "Content-Type: image/png\r\nContent-Disposition: inline; filename=logo.png\r\n\r\nPNG",
        "Content-Type: application/pgp-signature; name=signature.asc\r\n\r\n-----BEGIN PGP SIGNATURE-----",
        "Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(pdf),
    )
    result = plan(data, tmp_path)
    [part] = result.parts
    assert [d.filename for d in part.request.documents] == ["a.pdf"]
    assert any("logo.png" in n for n in result.notes) and any("signature" in n for n in result.notes)

    attached_png = raw_mail(
        "Content-Type: text/plain\r\n\r\nHallo",
        "Content-Type: image/png\r\nContent-Disposition: attachment; filename=foto.png\r\n\r\nPNG",
    )
    refused = plan(attached_png, tmp_path)  # attached, so converted: "PNG" is no image
    assert refused.parts == ()
    assert refused.problems == ((FAX.address, "foto.png: not an image faxbridge can read (damaged, or another"
                                 " type)"),)


@pytest.mark.parametrize(
    ("part", "problem"),
    [
        ("Content-Type: application/ms-tnef; name=winmail.dat\r\n\r\nx", "winmail.dat"),
        ("Content-Type: message/rfc822\r\n\r\nSubject: fwd\r\n\r\nhi", "forwarded-message-1.eml: this type"),
        ("Content-Type: application/pdf; name=fake.pdf\r\n\r\nnot a pdf", "fake.pdf: named .pdf but is text"),
        ("Content-Type: application/octet-stream; name=a.zip\r\n\r\nPK", "a.zip: this type cannot"),
    ],
)
def test_attachments_that_are_not_documents_refuse_the_fax(tmp_path, part: str, problem: str) -> None:
    result = plan(raw_mail("Content-Type: text/plain\r\n\r\nHallo", part), tmp_path)
    assert result.parts == ()
    assert problem in result.problems[0][1]


def test_a_pdf_without_a_file_name_is_named_by_its_type(tmp_path) -> None:
    pdf = make_pdf(1)
    data = raw_mail(
        "Content-Type: application/pdf\r\nContent-Disposition: attachment\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(pdf)
    )
    [part] = plan(data, tmp_path).parts
    assert [d.filename for d in part.request.documents] == ["attachment-1.pdf"]


def test_pdfs_merge_beside_other_documents_and_too_many_others_are_refused(tmp_path) -> None:
    tif = make_tiff(1)
    pdfs = [make_pdf(1, tag=str(i)) for i in range(3)]
    mixed = raw_mail(
        *[f"Content-Type: application/pdf; name=p{i}.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(p)
          for i, p in enumerate(pdfs)],
        "Content-Type: image/tiff; name=s.tif\r\nContent-Disposition: attachment; filename=s.tif\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(tif),
    )
    [part] = plan(mixed, tmp_path).parts
    assert [d.filename for d in part.request.documents] == ["p0 (+2 merged).pdf", "s.tif"]


def test_documents_over_the_page_limit_are_refused(tmp_path) -> None:
    data = raw_mail("Content-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    + b64(make_pdf(5)))
    result = plan(data, tmp_path, limits=DocumentLimits(max_pages=4))
    assert result.parts == ()
    assert "5 pages is more than the limit of 4" in result.problems[0][1]


def test_separate_and_combined_recipients_and_mixed_job_types(tmp_path) -> None:
    data = raw_mail("Content-Type: text/plain\r\n\r\nHallo")
    separate = plan(data, tmp_path, FAX, FAX2, SMS)
    assert [(p.index, p.request.job_type, [r.address for r in p.request.recipients]) for p in separate.parts] == [
        (0, JobType.FAX, ["+494012345678"]),
        (1, JobType.FAX, ["+493012345678"]),
        (2, JobType.SMS, ["+4915112345678"]),
    ]
    combined = plan(data, tmp_path, FAX, FAX2, SMS, multi_recipient=MultiRecipient.COMBINED)
    assert [len(p.request.recipients) for p in combined.parts] == [2, 1]
    assert plan(data, tmp_path, FAX, FAX2) == plan(data, tmp_path, FAX, FAX2)  # deterministic


def test_a_mail_with_nothing_to_fax_is_refused(tmp_path) -> None:
    result = plan(raw_mail("Content-Type: text/plain\r\n\r\n-- \r\nAlice"), tmp_path, body=BodyMode.AUTO)
    assert result.problems == ((FAX.address, NOTHING_TO_FAX),)
    assert plan(raw_mail("Content-Type: text/plain\r\n\r\n"), tmp_path, body=BodyMode.COVER).problems == (
        (FAX.address, NOTHING_TO_FAX),
    )


REPLY = "Gern, bis morgen.\n\nAm 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:\n> Passt 10 Uhr?"


@pytest.mark.parametrize(
    ("body", "documents", "mode", "trim", "text"),
    [
        ("Hallo\n-- \nAlice", True, BodyMode.AUTO, True, "Hallo"),
        ("Hallo\n-- \nAlice", True, BodyMode.AUTO, False, "Hallo\n-- \nAlice"),  # the blank kept
        ("-- \nAlice", True, BodyMode.AUTO, True, ""),
        ("-- \nAlice", True, BodyMode.AUTO, False, ""),
        ("-- \nAlice", False, BodyMode.AUTO, True, ""),  # then refused: nothing to fax
        ("-- \nAlice", False, BodyMode.AUTO, False, "-- \nAlice"),
        ("-- \nAlice", True, BodyMode.COVER, True, ""),
        ("-- \nAlice", True, BodyMode.COVER, False, "-- \nAlice"),
        ("Hallo\n-- \nAlice", True, BodyMode.COVER, True, "Hallo"),
        (REPLY, True, BodyMode.AUTO, True, "Gern, bis morgen."),
        (REPLY, True, BodyMode.AUTO, False, REPLY),
        (REPLY + "\n-- \nAlice", False, BodyMode.COVER, True, "Gern, bis morgen."),
        ("Am 03.03.2025 um 10:00 schrieb Bob:\n> Passt 10 Uhr?", True, BodyMode.AUTO, True, ""),
        ("Hallo", True, BodyMode.IGNORE, True, ""),
        ("Hallo", False, BodyMode.IGNORE, False, ""),
        ("", False, BodyMode.AUTO, True, ""),
    ],
)
def test_fax_text_by_body_mode(body: str, documents: bool, mode: BodyMode, trim: bool, text: str) -> None:
    assert fax_text(body, documents, mode, trim=trim) == text


@pytest.mark.parametrize(
    ("body", "subject", "text", "problem"),
    [
        ("Bin gleich da\n-- \nAlice", "x", "Bin gleich da", ""),
        ("-- \nAlice", "Rückruf bitte", "Rückruf bitte", ""),
        ("", "", "", "an SMS needs a text: the mail body and subject are empty"),
        ("x" * 1601, "", "", "the SMS text has 1601 characters; at most 1600 (10 messages) are sent"),
    ],
)
def test_sms_text(body: str, subject: str, text: str, problem: str) -> None:
    assert sms_text(body, subject, 1600) == (text, problem)


def test_x_fax_headers_map_to_options_per_job_type(tmp_path) -> None:
    headers = "X-Fax-Retry: 3\r\nX-Fax-Caller-Id: +4940123456\r\nX-Fax-Flash: yes\r\nX-Fax-Sms-From: ACME\r\n"
    data = raw_mail("Content-Type: text/plain\r\n\r\nHallo", headers=headers)
    result = plan(data, tmp_path, SMS)
    assert result.problems == ((SMS.address, "X-Fax-Retry: applies to job type fax only, not sms"),)
    ok = plan(raw_mail("Content-Type: text/plain\r\n\r\nHallo",
                       headers="X-Fax-Flash: yes\r\nX-Fax-Sms-From: ACME\r\n"), tmp_path, SMS)
    assert ok.parts[0].request.options == (("FLASHSMS", ""), ("SMSFROM", "ACME"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-02T09:30:00+01:00", dt.datetime(2025, 3, 2, 8, 30, tzinfo=UTC)),
        ("2025-03-02 09:30Z", dt.datetime(2025, 3, 2, 9, 30, tzinfo=UTC)),
        ("2025-03-02 09:30", dt.datetime(2025, 3, 2, 8, 30, tzinfo=UTC)),  # local (here +01:00)
        ("Sun, 02 Mar 2025 09:30:00 +0100", dt.datetime(2025, 3, 2, 8, 30, tzinfo=UTC)),
        ("2025-03-01T11:00:00Z", None),  # in the past: at once
    ],
)
def test_send_at(value: str, expected: dt.datetime | None) -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    assert parse_send_at(value, cet, now=NOW) == expected


@pytest.mark.parametrize("value", ["morgen früh", "", "2027-01-01T00:00Z"])
def test_send_at_refuses_what_it_cannot_read_or_is_too_far(value: str) -> None:
    with pytest.raises(ValueError):
        parse_send_at(value, UTC, now=NOW)


def test_a_photo_sent_inline_by_a_phone_is_faxed_but_a_cid_logo_is_not(tmp_path) -> None:
    import base64
    import io

    from PIL import Image

    photo = io.BytesIO()
    Image.effect_noise((700, 900), 60).convert("RGB").save(photo, format="JPEG", quality=95)
    assert len(photo.getvalue()) >= 100_000
    b64photo = base64.b64encode(photo.getvalue()).decode()
    data = raw_mail(
        "Content-Type: text/html\r\n\r\n<p>Logo: <img src=\"cid:big@x\"></p>",
        "Content-Type: image/jpeg\r\nContent-Disposition: inline; filename=IMG_0001.jpeg\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64photo,
        "Content-Type: image/jpeg\r\nContent-ID: <big@x>\r\nContent-Disposition: inline; filename=logo.jpeg\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64photo,
    )
    result = plan(data, tmp_path)
    [part] = result.parts
    assert [d.filename for d in part.request.documents] == ["IMG_0001.pdf"]
    assert any("logo.jpeg" in n for n in result.notes)


def test_attachments_without_a_file_name_are_converted_by_their_content_type(tmp_path) -> None:
    import base64
    import io

    from PIL import Image

    photo = io.BytesIO()
    Image.new("RGB", (300, 400), "red").save(photo, format="JPEG")
    data = raw_mail(
        "Content-Type: text/plain\r\n\r\nHallo",
        "Content-Type: image/jpeg\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(photo.getvalue()).decode(),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment\r\n\r\nGrüße",
    )
    [part] = plan(data, tmp_path).parts
    assert [d.filename for d in part.request.documents] == ["attachment-1.pdf", "attachment-2.pdf"]
