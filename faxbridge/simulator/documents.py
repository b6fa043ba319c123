"""What the simulator knows about documents: the file types FAX.de takes, their magic bytes, page counts.

FAXDE-API.md, "Parameters SendJob": SendFile1..3 may be TIF, BMP, HTML, DOC, XLS or PDF, and "we need the
filename in particular the extension to differ the file's type". The real service converts every document
for sending; the simulator cannot convert, so it checks that the bytes really are of the type the extension
claims and counts pages the way a fax machine would see them.
"""

from __future__ import annotations

import io
import struct

# Extension (lower case, no dot) → the type FAX.de uses for it.
EXTENSIONS: dict[str, str] = {
    "tif": "tiff",
    "tiff": "tiff",
    "bmp": "bmp",
    "htm": "html",
    "html": "html",
    "doc": "doc",
    "xls": "xls",
    "pdf": "pdf",
}

# Leading bytes of each binary type. DOC and XLS are both OLE2 compound files: the magic cannot tell them
# apart, and FAX.de only needs to know the file is one (MS-CFB, section 2.2 "Compound File Header").
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic TIFF and BigTIFF
    "bmp": (b"BM",),
    "doc": (_OLE2,),
    "xls": (_OLE2,),
}
_ALL_BINARY_MAGIC = tuple(m for magics in _MAGIC.values() for m in magics)


class DocumentProblem(Exception):
    """A document the real service would refuse; ``kind`` says how ("unsupported" → -6, "conversion" → -7)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def file_type(filename: str) -> str | None:
    """The FAX.de type of a file name, from its extension; None if FAX.de does not take it."""
    _, dot, extension = filename.rpartition(".")
    if not dot:
        return None
    return EXTENSIONS.get(extension.strip().lower())


def count_pages(filename: str, data: bytes) -> int:
    """Pages this document would have as a fax; raises DocumentProblem like the real conversion would fail."""
    kind = file_type(filename)
    if kind is None:
        raise DocumentProblem("unsupported", f"{filename!r}: not a TIF, BMP, HTML, DOC, XLS or PDF file name")
    if kind == "html":
        if not looks_like_text(data):
            raise DocumentProblem("conversion", f"{filename!r}: not HTML text")
        return 1
    if not data.startswith(_MAGIC[kind]):
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


def looks_like_text(data: bytes) -> bool:
    """HTML is text: no NUL bytes near the start and not one of the binary formats in disguise."""
    head = data[:8192]
    return bool(head.strip()) and b"\x00" not in head and not head.startswith(_ALL_BINARY_MAGIC)


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


def tiff_page_count(data: bytes) -> int:
    """Pages of a TIFF: the length of its IFD chain (TIFF 6.0, section 2 "Image File Directory").

    Walks offsets only, never decodes an image, and refuses offsets outside the file or a chain that loops,
    so a hostile file cannot make it run forever. Handles BigTIFF (8-byte offsets) too.
    """
    if len(data) < 8:
        raise ValueError("TIFF header truncated")
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        raise ValueError("not a TIFF byte order mark")
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 42:
        offset_fmt, count_fmt, entry_size, first_at = "I", "H", 12, 4
    elif version == 43:
        if len(data) < 16:
            raise ValueError("BigTIFF header truncated")
        offset_fmt, count_fmt, entry_size, first_at = "Q", "Q", 20, 8
    else:
        raise ValueError(f"unknown TIFF version {version}")
    offset_size = struct.calcsize(offset_fmt)
    count_size = struct.calcsize(count_fmt)
    (offset,) = struct.unpack_from(order + offset_fmt, data, first_at)
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise ValueError("TIFF IFD chain loops")
        seen.add(offset)
        if offset + count_size > len(data):
            raise ValueError("TIFF IFD offset outside the file")
        (entries,) = struct.unpack_from(order + count_fmt, data, offset)
        next_at = offset + count_size + entries * entry_size
        if next_at + offset_size > len(data):
            raise ValueError("TIFF IFD truncated")
        (offset,) = struct.unpack_from(order + offset_fmt, data, next_at)
    if not seen:
        raise ValueError("TIFF has no image")
    return len(seen)
