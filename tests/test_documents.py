"""Checks before paying: each kind of bad document gets a clear reason; good ones their page count."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest

from faxbridge.documents import DocumentLimits, inspect, tiff_page_count
from faxbridge.errors import DocumentError
from faxbridge.simulator.samples import make_pdf, make_tiff


def encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("open-sesame")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


GOOD = [
    ("a.pdf", make_pdf(3), "pdf", 3),
    ("scan.TIF", make_tiff(4), "tiff", 4),
    ("b.tiff", make_tiff(1), "tiff", 1),
    ("page.html", b"<html><body>Hallo</body></html>", "html", 1),
    ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "doc", 1),
    ("logo.bmp", b"BM" + b"\0" * 60, "bmp", 1),
]

BAD = [
    ("empty.pdf", b"", "the file is empty"),
    ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "named .pdf but is a PNG image"),
    ("brief.doc", b"PK\x03\x04" + b"\0" * 50, "ZIP archive"),
    ("cut.pdf", make_pdf(2)[:-200], "truncated"),
    ("locked.pdf", encrypted_pdf(), "password-protected"),
    ("garbage.pdf", b"%PDF-1.4\n garbage \n%%EOF\n", "cannot be read"),
    ("image.jpg", b"\xff\xd8\xff" + b"\0" * 50, "FAX.de takes only PDF, TIF"),
    ("noext", make_pdf(1), "FAX.de takes only"),
    ("bin.html", b"\0\0\0\0binary", "named .html but is"),
    ("bad.tif", b"II*\x00\xff\xff\xff\x7f", "damaged TIFF"),
]


@pytest.mark.parametrize("name, data, kind, pages", GOOD)
def test_good_documents(tmp_path: Path, name: str, data: bytes, kind: str, pages: int) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    info = inspect(path)
    assert (info.kind, info.pages, info.size) == (kind, pages, len(data))


@pytest.mark.parametrize("name, data, reason", BAD)
def test_bad_documents_get_a_reason_naming_the_file(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DocumentError) as err:
        inspect(path)
    assert reason in str(err.value) and name in str(err.value)


def test_limits_on_size_and_pages(tmp_path: Path) -> None:
    path = tmp_path / "big.pdf"
    path.write_bytes(make_pdf(5))
    with pytest.raises(DocumentError, match="documents.max_pages"):
        inspect(path, limits=DocumentLimits(max_pages=4))
    with pytest.raises(DocumentError, match="documents.max_size"):
        inspect(path, limits=DocumentLimits(max_size=100))


def test_the_name_faxde_sees_decides_the_type(tmp_path: Path) -> None:
    path = tmp_path / "upload-1234"
    path.write_bytes(make_pdf(1))
    assert inspect(path, "Rechnung.pdf").kind == "pdf"


def test_a_missing_file_is_a_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot be read"):
        inspect(tmp_path / "gone.pdf")


def test_a_looping_tiff_cannot_hang_the_page_count() -> None:
    # header → IFD at 8 with 0 entries → next IFD offset 8 again
    looping = b"II*\x00\x08\x00\x00\x00" + b"\x00\x00" + b"\x08\x00\x00\x00"
    with pytest.raises(ValueError, match="loops"):
        tiff_page_count(looping)
