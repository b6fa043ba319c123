"""The PDF side of control codes: each page's text as pdfium reads it, and a letter's pages
written out with the code text whited out, so that recipients never see it.

pdfium's text page ignores colour and size, so codes set in white or 2-point text are found too;
its character boxes say where to white out. A page that carries a code is rendered at fax
resolution with white rectangles over the code (the sent page has no text layer left to leak
the code from); pages without codes are copied as they are. Blocking: call from a worker thread.
"""

from __future__ import annotations

import ctypes
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import img2pdf
import pikepdf
import pypdfium2
import pypdfium2.raw as pdfium_c

from faxbridge.controlcodes import Code
from faxbridge.errors import DocumentError

# Fax resolution ("fine": 204 × 196 dpi); one figure for both axes keeps the page's proportions.
FAX_DPI = 200
# White-out margin around each character box, in points: loose boxes still miss anti-aliased edges.
_MARGIN = 1.5


def page_texts(path: Path) -> list[str]:
    """The text of each page, one character per pdfium character index (so that a code's span
    indexes its character boxes). Raises DocumentError if the file is no readable PDF."""
    try:
        pdf = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as exc:
        raise DocumentError(f"not a readable PDF ({exc})") from None
    try:
        texts = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            texts.append("".join(
                chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 0xFFFD)
                for i in range(textpage.count_chars())
            ))
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def page_count(path: Path) -> int:
    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def write_pages(source: Path, pages: Iterable[int], codes: Sequence[Code], target: Path,
                *, dpi: int = FAX_DPI) -> None:
    """Write ``pages`` (1-based) of ``source`` to ``target``, the text of ``codes`` whited out.

    Not fsynced: the caller makes it durable (it usually writes several letters first).
    """
    wanted = list(pages)
    by_page: dict[int, list[Code]] = {}
    for code in codes:
        by_page.setdefault(code.page, []).append(code)
    source_pdf = pypdfium2.PdfDocument(str(source))
    # Assembled with pikepdf, deterministically (no creation date, an /ID from the content): the
    # same letter printed twice must be the same bytes, or duplicate suppression cannot see it.
    out = pikepdf.Pdf.new()
    try:
        with pikepdf.open(source) as original:
            rendered: list[pikepdf.Pdf] = []
            for number in wanted:
                page_codes = by_page.get(number)
                if not page_codes:
                    out.pages.append(original.pages[number - 1])
                    continue
                image_pdf = pikepdf.open(io.BytesIO(_whited_out_page(source_pdf, number - 1, page_codes, dpi)))
                rendered.append(image_pdf)
                out.pages.append(image_pdf.pages[0])
            out.save(target, deterministic_id=True)
            for image_pdf in rendered:
                image_pdf.close()
    finally:
        out.close()
        source_pdf.close()


def _whited_out_page(pdf: pypdfium2.PdfDocument, index: int, codes: Sequence[Code], dpi: int) -> bytes:
    """One page as a one-page PDF of its image at ``dpi``, white rectangles over the codes.

    The rectangles are drawn into the page itself (page coordinates: pdfium handles /Rotate and
    the crop box when it renders), then the page is rendered."""
    page = pdf[index]
    textpage = page.get_textpage()
    try:
        for code in codes:
            for i in code.text_span:
                left, bottom, right, top = textpage.get_charbox(i, loose=True)
                if right <= left or top <= bottom:
                    continue  # generated characters (line ends) have no box
                _white_rect(page, left - _MARGIN, bottom - _MARGIN, right + _MARGIN, top + _MARGIN)
        page.gen_content()
        bitmap = page.render(scale=dpi / 72, grayscale=True, fill_color=(255, 255, 255, 255))
        image = bitmap.to_pil()
        png = io.BytesIO()
        image.save(png, format="PNG", dpi=(dpi, dpi))
    finally:
        textpage.close()
        page.close()
    layout = img2pdf.get_fixed_dpi_layout_fun((dpi, dpi))
    return img2pdf.convert(png.getvalue(), layout_fun=layout)  # type: ignore[no-any-return]


def _white_rect(page: pypdfium2.PdfPage, left: float, bottom: float, right: float, top: float) -> None:
    rect = pdfium_c.FPDFPageObj_CreateNewRect(ctypes.c_float(left), ctypes.c_float(bottom),
                                              ctypes.c_float(right - left), ctypes.c_float(top - bottom))
    pdfium_c.FPDFPageObj_SetFillColor(rect, 255, 255, 255, 255)
    pdfium_c.FPDFPath_SetDrawMode(rect, pdfium_c.FPDF_FILLMODE_WINDING, False)
    pdfium_c.FPDFPage_InsertObject(page.raw, rect)  # the page owns it from here on


def text_without_codes(text: str, codes: Sequence[Code]) -> str:
    """A page's text with its codes cut out, blanks collapsed (the body of an SMS letter)."""
    parts, position = [], 0
    for code in sorted(codes, key=lambda c: c.start):
        parts.append(text[position:code.start])
        position = code.end
    parts.append(text[position:])
    return " ".join("".join(parts).replace("\ufffe", "").split())
