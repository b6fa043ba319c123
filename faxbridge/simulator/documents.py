"""What the simulator knows about documents: the file types FAX.de takes, their magic bytes, page counts.

FAXDE-API.md, "Parameters SendJob": SendFile1..3 may be TIF, BMP, HTML, DOC, XLS or PDF, and "we need the
filename in particular the extension to differ the file's type". The real service converts every document
for sending; the simulator cannot convert, so it checks that the bytes really are of the type the extension
claims and counts pages the way a fax machine would see them. The type rules and the TIFF page walk are
faxbridge's own (faxbridge.documents), so the daemon's checks and the simulator's answers cannot drift apart;
only the mapping to FAX.de's result codes lives here.
"""

from __future__ import annotations

import io

from faxbridge.documents import EXTENSIONS, MAGIC, file_type, looks_like_text, tiff_page_count

__all__ = ["EXTENSIONS", "DocumentProblem", "count_pages", "file_type", "pdf_page_count", "tiff_page_count"]

_ALL_BINARY_MAGIC = tuple(m for magics in MAGIC.values() for m in magics)


class DocumentProblem(Exception):
    """A document the real service would refuse; ``kind`` says how ("unsupported" → -6, "conversion" → -7)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def count_pages(filename: str, data: bytes) -> int:
    """Pages this document would have as a fax; raises DocumentProblem like the real conversion would fail."""
    kind = file_type(filename)
    if kind is None:
        raise DocumentProblem("unsupported", f"{filename!r}: not a TIF, BMP, HTML, DOC, XLS or PDF file name")
    if kind == "html":
        if not looks_like_text(data) or data.startswith(_ALL_BINARY_MAGIC):
            raise DocumentProblem("conversion", f"{filename!r}: not HTML text")
        return 1
    if not data.startswith(MAGIC[kind]):
        raise DocumentProblem("conversion", f"{filename!r}: content is not {kind.upper()}")
    if kind == "pdf":
        return pdf_page_count(data)
    if kind == "tiff":
        try:
            return tiff_page_count(data)
        except ValueError as exc:
            raise DocumentProblem("conversion", f"{filename!r}: {exc}") from exc
    # BMP is a single image; the simulator does not render DOC/XLS, so they count as one page.
    return 1


def pdf_page_count(data: bytes) -> int:
    """Pages of a PDF as pypdf reads them; a PDF pypdf cannot open would not convert at FAX.de either."""
    import pypdf  # imported here: only SendJob with a PDF needs it

    try:
        pages = len(pypdf.PdfReader(io.BytesIO(data)).pages)
    except Exception as exc:  # pypdf raises many types for broken or encrypted files; all mean "cannot convert"
        raise DocumentProblem("conversion", f"PDF cannot be read: {exc}") from exc
    if pages < 1:
        raise DocumentProblem("conversion", "PDF has no pages")
    return pages
