"""Page images of PDFs and TIFFs, and their cache bounded in size."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from faxbridge.errors import FaxbridgeError
from faxbridge.simulator.samples import make_pdf, make_tiff
from faxbridge.thumbnails import ThumbnailCache, page_count, page_png

from textpdf import text_pdf


def _image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(png))


def test_a_pdf_page_is_rendered_at_the_width_asked_with_its_text_dark(tmp_path: Path) -> None:
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(text_pdf([[("INVOICE", 40.0, 0.0)], ["page two"]]))
    assert page_count(pdf) == 2
    image = _image(page_png(pdf, 1, 300))
    assert image.width == 300 and 420 <= image.height <= 430  # A4's proportions
    assert image.convert("L").getextrema()[0] < 100  # the text is there, not a blank page


def test_a_fax_tiff_keeps_its_proportions_at_half_vertical_resolution(tmp_path: Path) -> None:
    tiff = tmp_path / "fax.tif"
    page = Image.new("1", (1728, 1100), 1)
    page.save(tiff, "TIFF", compression="group4", dpi=(204, 98))  # normal resolution: half height
    image = _image(page_png(tiff, 1, 432))
    assert image.width == 432 and image.height == round(1100 * 204 / 98 * 432 / 1728)


def test_every_page_of_a_multipage_tiff_and_no_page_beyond(tmp_path: Path) -> None:
    tiff = tmp_path / "fax.tif"
    tiff.write_bytes(make_tiff(3))
    assert page_count(tiff) == 3
    assert _image(page_png(tiff, 3, 100)).width == 100
    with pytest.raises(FaxbridgeError, match="has 3 page"):
        page_png(tiff, 4, 100)


@pytest.mark.parametrize(("content", "words"), [(b"hello", "neither a PDF nor a TIFF"),
                                                 (b"%PDF-1.4 broken", "cannot be rendered")])
def test_a_file_that_is_no_page_is_refused_in_words(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(FaxbridgeError, match=words):
        page_png(path, 1, 100)


def test_the_cache_answers_again_without_the_file_and_stays_within_its_size(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache", max_bytes=1)  # every new entry pushes the older ones out
    first, second = tmp_path / "a.pdf", tmp_path / "b.pdf"
    first.write_bytes(make_pdf(1, tag="a"))
    second.write_bytes(make_pdf(1, tag="b"))
    png = cache.page_png(first, 1, 120)
    assert list((tmp_path / "cache").glob("*.png")) and cache.page_png(first, 1, 120) == png
    cache.page_png(second, 1, 120)
    assert len(list((tmp_path / "cache").glob("*.png"))) == 1
    roomy = ThumbnailCache(tmp_path / "roomy")
    kept = roomy.page_png(first, 1, 120)
    [entry] = (tmp_path / "roomy").glob("*.png")
    entry.write_bytes(b"cached")  # served from the cache, not rendered again
    assert roomy.page_png(first, 1, 120) == b"cached" != kept
