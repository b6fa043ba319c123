"""Conversions where documents enter: real hotfolder drops, real mail through smtplib, the CLI —
checked at the simulator by reading the PDF FAX.de received (pages, sizes, which way is up)."""

from __future__ import annotations

import email.policy
import io
import json
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest
from PIL import Image

from faxbridge.model import JobState
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import RunningDaemon, wait_until
from test_cli import faxbridge
from test_convert import A4, assert_upright, jpeg, png_claiming, secured_pdf, size_of, upright
from test_smtp_support import SENDER, mail, relay, start_rig  # noqa: F401 (fixtures)

NUMBER = "+494012345678"
FAX = f"{NUMBER}@fax.example.com"


def received_pdf(call: Any, slot: int = 1) -> pypdf.PdfReader:
    """The document FAX.de got in SendFile<slot>, as FAX.de would open it."""
    data = call.params[f"SendFile{slot}"]
    assert data.startswith(b"%PDF-"), call.params[f"SendFilename{slot}"]
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert not reader.is_encrypted
    return reader


def picture(page: pypdf.PageObject) -> Image.Image:
    [embedded] = page.images
    return embedded.image


# -- hotfolder -----------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def start(make_config: Callable[..., Path], run_daemon: Callable[..., RunningDaemon], folder: Path):
    def start_daemon(**keys: Any) -> RunningDaemon:
        return run_daemon(make_config(hotfolders=[{"path": str(folder), "settle_time": "0.15s", **keys}]))

    return start_daemon


def test_a_dropped_phone_photo_is_faxed_upright_and_archived_beside_its_original(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    photo = jpeg(tmp_path / "IMG_4711.jpg", upright(3000, 4000), orientation=6)  # 12 MP, turned by EXIF
    (folder / f"{NUMBER}_Lieferschein.jpg").write_bytes(photo.read_bytes())
    sent = folder / "sent"
    wait_until((sent / f"{NUMBER}_Lieferschein.fax.pdf").exists, what="the PDF in sent/")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == f"{NUMBER}_Lieferschein.pdf"
    reader = received_pdf(call)
    [page] = reader.pages
    assert size_of(page) == A4
    assert_upright(picture(page))
    assert (sent / f"{NUMBER}_Lieferschein.jpg").read_bytes() == photo.read_bytes()
    assert (sent / f"{NUMBER}_Lieferschein.fax.pdf").read_bytes() == call.params["SendFile1"]
    assert simulator.jobs[0].page_count == 1

    # The same photo again is a duplicate, although it is converted once more.
    (folder / f"{NUMBER}_Lieferschein.jpg").write_bytes(photo.read_bytes())
    error = folder / "failed" / f"{NUMBER}_Lieferschein.error.txt"
    wait_until(error.exists, what="the duplicate refused")
    assert "submitted as job" in error.read_text()
    assert len(simulator.calls_for("SendJob")) == 1


def test_dropped_text_and_a_secured_pdf_are_faxed_as_readable_pdfs(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    (folder / f"{NUMBER}_Notiz.txt").write_bytes("Grüße aus Köln – bitte zurückrufen.\n".encode("cp1252"))
    wait_until(lambda: len(simulator.calls_for("SendJob")) == 1, what="the text sent")
    secured_pdf(folder / f"{NUMBER}_Kontoauszug.pdf", 2, "AES-256")
    wait_until(lambda: len(simulator.calls_for("SendJob")) == 2, what="the secured PDF sent")
    text_call, pdf_call = simulator.calls_for("SendJob")
    assert text_call.params["SendFilename1"] == f"{NUMBER}_Notiz.pdf"
    [page] = received_pdf(text_call).pages
    assert "Grüße aus Köln – bitte zurückrufen." in page.extract_text()
    assert pdf_call.params["SendFilename1"] == f"{NUMBER}_Kontoauszug.pdf"
    assert len(received_pdf(pdf_call).pages) == 2


def test_bad_images_and_a_locked_pdf_go_to_failed_in_plain_words_and_the_next_one_is_sent(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    good = jpeg(tmp_path / "good.jpg", upright(1200, 1600), 1).read_bytes()
    bad = {
        f"{NUMBER}_kaputt.jpg": (good[: len(good) // 2], "the image is damaged and cannot be converted"),
        f"{NUMBER}_bombe.png": (png_claiming(30_000, 30_000), "30000 × 30000 pixels (900 megapixels) is too large"),
        f"{NUMBER}_geheim.pdf": (secured_pdf(tmp_path / "s.pdf", 1, "AES-128", "pw").read_bytes(),
                                 "the PDF needs a password to open; FAX.de cannot open it"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    for name, (_, reason) in bad.items():
        error = folder / "failed" / (name.rpartition(".")[0] + ".error.txt")
        wait_until(error.exists, what=error.name)
        text = error.read_text()
        assert reason in text, text
        assert (folder / "failed" / name).exists()
    assert not any((folder / "failed").glob("*.fax.pdf"))
    assert simulator.calls_for("SendJob") == []

    (folder / f"{NUMBER}_gut.jpg").write_bytes(good)
    wait_until((folder / "sent" / f"{NUMBER}_gut.fax.pdf").exists, what="the next photo sent")
    [call] = simulator.calls_for("SendJob")
    assert_upright(picture(received_pdf(call).pages[0]))
    processing = folder / ".faxbridge" / "processing"
    wait_until(lambda: not list(processing.iterdir()), what="no claim left behind, converted PDFs included")


def test_a_bundle_of_photos_becomes_one_pdf_in_the_order_listed(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    start()
    # The sidecar first: it waits for the files it lists (a photo alone would go without it).
    (folder / "Seiten.yaml").write_text(f'recipient: "{NUMBER}"\nfiles: [b.jpg, a.jpg]\n')
    jpeg(tmp_path / "b.jpg", upright(800, 600), 1).rename(folder / "b.jpg")  # landscape
    jpeg(tmp_path / "a.jpg", upright(), 8).rename(folder / "a.jpg")  # portrait after EXIF
    wait_until(lambda: simulator.calls_for("SendJob"), what="the bundle sent")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "b (+1 images).pdf" and call.params["SendFilename2"] == ""
    pages = received_pdf(call).pages
    assert [size_of(p) for p in pages] == [(A4[1], A4[0]), A4]
    assert_upright(picture(pages[1]))
    wait_until((folder / "sent" / "b.fax.pdf").exists, what="the PDF in sent/")


# -- mail ----------------------------------------------------------------------------------------


def test_photos_mailed_with_send_message_become_one_pdf_beside_the_pdf(start_rig, relay, tmp_path) -> None:
    first = jpeg(tmp_path / "1.jpg", upright(3000, 4000), 6).read_bytes()
    png = io.BytesIO()
    upright(1600, 900).save(png, format="PNG")
    pdf = make_pdf(2, tag="mail")
    rig = start_rig(relay.port)
    rig.send(mail(attachments=[("IMG_0001.jpg", first, "image/jpeg"), ("Angebot.pdf", pdf, "application/pdf"),
                               ("Screenshot.png", png.getvalue(), "image/png")]), [FAX])
    [job] = rig.wait_final(1)
    assert job.state is JobState.DELIVERED
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "IMG_0001 (+1 images).pdf"
    pages = received_pdf(call).pages
    assert [size_of(p) for p in pages] == [A4, (A4[1], A4[0])]
    assert_upright(picture(pages[0]))
    assert call.params["SendFilename2"] == "Angebot.pdf" and call.params["SendFile2"] == pdf
    assert rig.simulator.jobs[0].page_count == 2 + 2 + 1  # the images, the PDF, the note's cover page


@pytest.mark.parametrize("line_ends", ["crlf", "bare-lf"])
def test_mail_from_a_script_with_sendmail_converts_text_and_heic(start_rig, relay, tmp_path, line_ends) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    heic = io.BytesIO()
    upright().save(heic, format="HEIF", quality=90)
    message = mail(attachments=[("Счёт.txt", "Счёт № 5 — оплатить до пятницы.\n".encode("cp1251"), "text/plain"),
                                ("IMG_0002.HEIC", heic.getvalue(), "image/heic")])
    # Python's everyday idiom sends bare LF line ends (as_bytes()); an MTA sends CRLF.
    data = message.as_bytes() if line_ends == "bare-lf" else message.as_bytes(policy=email.policy.SMTP)
    rig = start_rig(relay.port)
    with smtplib.SMTP("127.0.0.1", rig.port, timeout=10) as client:
        client.sendmail(SENDER, [FAX], data)
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Счёт.pdf"
    assert "Счёт № 5 — оплатить до пятницы." in received_pdf(call, 1).pages[0].extract_text()
    assert call.params["SendFilename2"] == "IMG_0002.pdf"
    assert_upright(picture(received_pdf(call, 2).pages[0]))


def test_a_corrupt_photo_by_mail_gets_a_report_in_plain_words_and_the_next_mail_is_faxed(
    start_rig, relay, tmp_path
) -> None:
    good = jpeg(tmp_path / "g.jpg", upright(1200, 1600), 3).read_bytes()
    locked = secured_pdf(tmp_path / "l.pdf", 1, "RC4-128", "pw").read_bytes()
    rig = start_rig(relay.port)
    rig.send(mail(subject="Kaputt", attachments=[("Foto.jpg", good[:2000], "image/jpeg")]), [FAX])
    rig.send(mail(subject="Gesperrt", attachments=[("Vertrag.pdf", locked, "application/pdf")]), [FAX])
    rig.wait_processed(2)
    reports = {r.message["Subject"]: r.message.get_content() for r in relay.sink.wait_for(2)}
    assert "Foto.jpg: the image is damaged and cannot be converted" in reports["Fax NOT sent: Kaputt"]
    assert "Vertrag.pdf: the PDF needs a password to open" in reports["Fax NOT sent: Gesperrt"]
    assert rig.simulator.calls_for("SendJob") == []

    rig.send(mail(subject="Gut", attachments=[("Foto.jpg", good, "image/jpeg")]), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert_upright(picture(received_pdf(call).pages[0]))


# -- faxbridge send ------------------------------------------------------------------------------


def test_cli_send_converts_a_photo_and_knows_it_again(make_config, simulator, tmp_path) -> None:
    photo = jpeg(tmp_path / "Quittung.jpg", upright(3000, 4000), 5)  # mirrored and turned
    config = make_config(convert={"colour": "grey"})
    out = faxbridge("send", "-c", str(config), "--to", "+49 40 123456", "--json", str(photo))
    result = json.loads(out.stdout)
    assert result["state"] == "submitted" and result["page_count"] == 1
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Quittung.pdf"
    image = picture(received_pdf(call).pages[0])
    assert image.mode == "L"
    assert image.size[0] < image.size[1]
    assert image.getpixel((image.size[0] // 10, image.size[1] // 10)) < 140  # red, greyed: top-left

    again = faxbridge("send", "-c", str(config), "--to", "+49 40 123456", str(photo), check=False)
    assert again.returncode == 1 and "job 1" in again.stderr
    assert len(simulator.calls_for("SendJob")) == 1


def test_check_config_lists_the_formats(make_config) -> None:
    out = faxbridge("check-config", "-c", str(make_config(convert={"as_is": ["tiff", "bmp"]})))
    assert "images (JPEG, PNG, GIF, WebP, HEIC): converted to A4 PDF (color)" in out.stdout
    assert "text (.txt): converted to PDF with DejaVuSansMono.ttf" in out.stdout
    assert "DOC and XLS: converted to PDF by LibreOffice" in out.stdout


def test_an_outlook_winmail_dat_is_unpacked_and_its_files_converted(start_rig, relay, tmp_path) -> None:
    from test_convert_tnef import winmail

    photo = jpeg(tmp_path / "p.jpg", upright(), 8).read_bytes()
    pdf = make_pdf(2, tag="tnef")
    tnef = winmail([("FOTO~1.JPG", "Foto vom Lager.jpg", photo), ("ANGEBOT.PDF", "Angebot März.pdf", pdf),
                    ("NOTIZ.TXT", "Notiz.txt", "Grüße — bitte bis Freitag.\r\n".encode("cp1252"))])
    rig = start_rig(relay.port)
    rig.send(mail(attachments=[("winmail.dat", tnef, "application/ms-tnef")]), [FAX])
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert [call.params[f"SendFilename{i}"] for i in (1, 2, 3)] == ["Foto vom Lager.pdf", "Angebot März.pdf", "Notiz.pdf"]
    assert_upright(picture(received_pdf(call, 1).pages[0]))
    assert call.params["SendFile2"] == pdf
    assert "Grüße — bitte bis Freitag." in received_pdf(call, 3).pages[0].extract_text()

    rig.send(mail(subject="Leer", attachments=[("winmail.dat", winmail([]), "application/ms-tnef")]), [FAX])
    rig.wait_processed(2)
    [report] = [r for r in relay.sink.wait_for(2) if r.message["Subject"] == "Fax NOT sent: Leer"]
    assert "winmail.dat" in report.message.get_content()


# -- Office documents (real LibreOffice) -------------------------------------------------------


@pytest.mark.timeout(300)
def test_office_files_dropped_are_faxed_as_pdfs_bad_ones_refused_and_a_resend_is_a_duplicate(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    from test_convert_office import docx_bytes, encrypted_docx_bytes, rtf_bytes, zip_bomb_docx

    start()
    docx = docx_bytes(["Seite eins: Grüße aus Köln", "Seite zwei: Привет"])
    (folder / f"{NUMBER}_Angebot.docx").write_bytes(docx)
    (folder / f"{NUMBER}_gesperrt.docx").write_bytes(encrypted_docx_bytes())
    (folder / f"{NUMBER}_bombe.docx").write_bytes(zip_bomb_docx(64 * 1024 * 1024))
    wait_until((folder / "sent" / f"{NUMBER}_Angebot.fax.pdf").exists, timeout=150, what="the DOCX sent")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == f"{NUMBER}_Angebot.pdf"
    pages = received_pdf(call).pages
    assert len(pages) == 2  # the page size is the document's own (this one names none)
    assert "Grüße aus Köln" in pages[0].extract_text() and "Привет" in pages[1].extract_text()
    assert simulator.jobs[0].page_count == 2
    for name in ("gesperrt", "bombe"):
        error = folder / "failed" / f"{NUMBER}_{name}.error.txt"
        wait_until(error.exists, timeout=150, what=error.name)
        assert f"{NUMBER}_{name}.docx: " in error.read_text()

    (folder / f"{NUMBER}_Angebot.docx").write_bytes(docx)  # converted again: the same bytes
    error = folder / "failed" / f"{NUMBER}_Angebot.error.txt"
    wait_until(error.exists, timeout=150, what="the resent DOCX refused as a duplicate")
    assert "submitted as job" in error.read_text()

    (folder / f"{NUMBER}_Brief.rtf").write_bytes(rtf_bytes(["Eins", "Zwei", "Drei"]))
    wait_until(lambda: len(simulator.calls_for("SendJob")) == 2, timeout=150, what="the next document sent")
    assert len(received_pdf(simulator.calls_for("SendJob")[1]).pages) == 3


@pytest.mark.timeout(300)
def test_an_office_file_mailed_by_a_script_is_faxed_as_a_pdf(start_rig, relay) -> None:
    from test_convert_office import rtf_bytes

    rig = start_rig(relay.port)
    message = mail(attachments=[("Vertrag.rtf", rtf_bytes(["Seite 1", "Seite 2"]), "application/rtf")])
    with smtplib.SMTP("127.0.0.1", rig.port, timeout=10) as client:
        client.sendmail(SENDER, [FAX], message.as_bytes(policy=email.policy.SMTP))
    rig.wait_final(1)
    [call] = rig.simulator.calls_for("SendJob")
    assert call.params["SendFilename1"] == "Vertrag.pdf"
    assert len(received_pdf(call).pages) == 2


def test_office_off_refuses_an_office_file_in_plain_words(folder: Path, simulator: Simulator, start: Any) -> None:
    from test_convert_office import docx_bytes

    start(convert={"office": False})
    (folder / f"{NUMBER}_Angebot.docx").write_bytes(docx_bytes(["x"]))
    error = folder / "failed" / f"{NUMBER}_Angebot.error.txt"
    wait_until(error.exists, what="the DOCX refused")
    assert "Office documents are not converted here (convert.office is off)" in error.read_text()
    assert simulator.calls_for("SendJob") == []


def test_a_winmail_dat_dropped_into_a_hotfolder_is_unpacked_and_faxed(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    from test_convert_tnef import winmail

    start(recipient=NUMBER)
    photo = jpeg(tmp_path / "p.jpg", upright(), 3).read_bytes()
    tnef = winmail([("FOTO~1.JPG", "Foto.jpg", photo), ("NOTIZ.TXT", "Notiz.txt", "Bitte zurückrufen.\r\n".encode("cp1252"))])
    (folder / "winmail.dat").write_bytes(tnef)
    wait_until((folder / "sent" / "winmail.dat").exists, what="the winmail.dat sent")
    [call] = simulator.calls_for("SendJob")
    assert [call.params[f"SendFilename{i}"] for i in (1, 2)] == ["Foto.pdf", "Notiz.pdf"]
    assert_upright(picture(received_pdf(call, 1).pages[0]))
    assert "Bitte zurückrufen." in received_pdf(call, 2).pages[0].extract_text()
    assert {p.name for p in (folder / "sent").glob("*.fax.pdf")} == {"Foto.fax.pdf", "Notiz.fax.pdf"}


def test_a_winmail_dat_with_more_files_than_fax_de_takes_is_refused(
    tmp_path: Path, folder: Path, simulator: Simulator, start: Any
) -> None:
    from test_convert_tnef import winmail

    start(recipient=NUMBER)
    texts = [(f"N{i}.TXT", f"Notiz {i}.txt", f"Notiz {i}\n".encode()) for i in range(4)]
    (folder / "winmail.dat").write_bytes(winmail(texts))
    error = folder / "failed" / "winmail.error.txt"
    wait_until(error.exists, what="the winmail.dat refused")
    assert "4 documents after unpacking; FAX.de takes at most 3 per job" in error.read_text()
    assert simulator.calls_for("SendJob") == []


def test_cli_send_of_a_missing_file_says_so_in_one_line(make_config, simulator, tmp_path) -> None:
    out = faxbridge("send", "-c", str(make_config()), "--to", "+49 40 123456", str(tmp_path / "weg.jpg"), check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == "faxbridge: weg.jpg: cannot be read (No such file or directory)"
    assert simulator.calls_for("SendJob") == []


def test_duplicate_suppression_compares_the_originals_not_the_conversions(tmp_path: Path) -> None:
    # Issue 16: conversions are not byte-stable (LibreOffice, a newer Pillow); the content key is
    # taken from what the sender sent, so two conversions of one photo are one send.
    from faxbridge.model import Document, JobType, Recipient, SendRequest
    from faxbridge.outbound import content_key

    photo = tmp_path / "IMG_1.jpg"
    photo.write_bytes(b"the same photo")
    first, second = tmp_path / "a.fax.pdf", tmp_path / "b.fax.pdf"
    first.write_bytes(b"%PDF- one conversion")
    second.write_bytes(b"%PDF- another conversion, other bytes")

    def request(converted: Path) -> SendRequest:
        document = Document("IMG_1.pdf", converted, sources=(photo,))
        return SendRequest(JobType.FAX, (Recipient("+494012345678"),), (document,))

    key = content_key(request(first))
    assert content_key(request(second)) == key
    photo.write_bytes(b"another photo")
    assert content_key(request(first)) != key

    from faxbridge.journal.codec import request_from_json, request_to_json

    assert request_from_json(request_to_json(request(first))) == request(first)  # sources journaled
