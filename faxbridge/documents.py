"""Checking a document before anyone pays for it: its type by content, its pages, its size.

FAXDE-API.md ("Parameters SendJob"): SendFile1..3 may be TIF, BMP, HTML, DOC, XLS or PDF, and FAX.de
tells the type by the file name's extension. A file whose bytes are not what its name says fails at
FAX.de's conversion (-7) — after the upload, sometimes after being charged — so it is refused here
first, with a sentence the user understands. The checks read whole files: call from a worker thread.
"""

from __future__ import annotations

import io
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from faxbridge.errors import DocumentError

# Extension (lower case, no dot) → the type FAX.de reads it as.
EXTENSIONS: dict[str, str] = {
    "pdf": "pdf", "tif": "tiff", "tiff": "tiff", "bmp": "bmp",
    "htm": "html", "html": "html", "doc": "doc", "xls": "xls",
}

# DOC and XLS are both OLE2 compound files (MS-CFB 2.2): the magic cannot tell them apart.
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAGIC: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic TIFF and BigTIFF
    "bmp": (b"BM",),
    "doc": (_OLE2,),
    "xls": (_OLE2,),
}
# What a disguised file really is, for the error message.
_OTHERMAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (perhaps DOCX/XLSX, which FAX.de does not take)"),
    (b"%!PS", "a PostScript file"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"Rar!", "a RAR archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class DocumentLimits:
    max_size: int = 20 * 1024 * 1024
    max_pages: int = 200


@dataclass(frozen=True)
class DocumentInfo:
    filename: str
    kind: str  # pdf, tiff, bmp, html, doc, xls
    size: int
    pages: int


def file_type(filename: str) -> str | None:
    """The FAX.de type a file name announces; None when FAX.de does not take that extension."""
    _, dot, extension = filename.rpartition(".")
    return EXTENSIONS.get(extension.strip().lower()) if dot else None


def what_it_is(data: bytes) -> str:
    """A human description of what the bytes are, for 'X is really Y' messages."""
    for kind, magics in MAGIC.items():
        if data.startswith(magics):
            return {"doc": "a Word/Excel (OLE2) file", "xls": "a Word/Excel (OLE2) file"}.get(
                kind, f"a {kind.upper()} file"
            )
    for magic, description in _OTHERMAGIC:
        if data.startswith(magic):
            return description
    return "text" if looks_like_text(data) else "unrecognised binary data"


def looks_like_text(data: bytes) -> bool:
    """HTML is text: something printable near the start and no NUL bytes."""
    head = data[:8192]
    return bool(head.strip()) and b"\x00" not in head


def inspect(path: Path, filename: str | None = None, limits: DocumentLimits = DocumentLimits()) -> DocumentInfo:
    """Check one document; raises DocumentError with the reason. ``filename``: the name FAX.de sees."""
    name = filename or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise DocumentError(f"{name}: the file is empty")
    if size > limits.max_size:
        shown, limit = human_size(size), human_size(limits.max_size)
        if shown == limit:  # just over: say it in bytes
            shown, limit = f"{size} bytes", f"{limits.max_size} bytes"
        raise DocumentError(
            f"{name}: {shown} is larger than the limit of {limit} (documents.max_size)",
            action="Send a smaller file (fewer pages, lower resolution), or split it into several.",
        )
    kind = file_type(name)
    if kind is None:
        raise DocumentError(
            f"{name}: FAX.de takes only PDF, TIF, BMP, HTML, DOC and XLS files (by extension)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    pages = count_pages(name, kind, data)
    if pages > limits.max_pages:
        raise DocumentError(
            f"{name}: {pages} pages is more than the limit of {limits.max_pages} (documents.max_pages)",
            action="Split the document into several of fewer pages.",
        )
    return DocumentInfo(filename=name, kind=kind, size=size, pages=pages)


def count_pages(name: str, kind: str, data: bytes) -> int:
    if kind == "html":
        if not looks_like_text(data):
            raise DocumentError(f"{name}: named .html but is {what_it_is(data)}")
        return 1
    if not data.startswith(MAGIC[kind]):
        raise DocumentError(f"{name}: named .{name.rpartition('.')[2]} but is {what_it_is(data)}")
    if kind == "pdf":
        return pdf_page_count(name, data)
    if kind == "tiff":
        try:
            return tiff_page_count(data)
        except ValueError as exc:
            raise DocumentError(f"{name}: damaged TIFF ({exc})") from None
    return 1  # BMP is one image; DOC/XLS pages are only known after FAX.de's conversion


def pdf_page_count(name: str, data: bytes) -> int:
    import pypdf  # only PDFs need it; keeps start-up light

    # A PDF ends with %%EOF (ISO 32000-1, 7.5.5); a download or copy cut short does not.
    if b"%%EOF" not in data[-2048:]:
        raise DocumentError(f"{name}: the PDF is truncated (no end-of-file marker)")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError(f"{name}: the PDF is password-protected; FAX.de cannot open it")
        pages = len(reader.pages)
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types for broken files; all mean "cannot convert"
        raise DocumentError(f"{name}: the PDF cannot be read ({type(exc).__name__})") from None
    if pages < 1:
        raise DocumentError(f"{name}: the PDF has no pages")
    return pages


def tiff_page_count(data: bytes) -> int:
    """Pages of a TIFF: the length of its IFD chain (TIFF 6.0, section 2 "Image File Directory").

    Walks offsets only, never decodes an image, and refuses offsets outside the file or a chain
    that loops, so a hostile file cannot make it run forever. Handles BigTIFF too.
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


_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """A file name as FAX.de and a report may show it (SendFilename1..3): no path, no control
    characters, not too long — whether it came from a mail or a folder.

    Umlauts stay (NFC); only the extension decides the type (FAXDE-API.md, SendFilename1..3).
    Windows path parts (``C:\\Users\\x\\scan.pdf``, ``..\\..\\x.pdf``) are cut off: FAX.de runs a
    Windows server, where they would mean folders.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" .")
    if not name:
        return fallback
    if len(name) > 120:  # at most 120 characters, the extension kept
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 119 - len(ext)] + dot + ext) if dot and len(ext) <= 5 else name[:120]
        # Cut mid-name: not ending in a space or dot, which Windows (FAX.de) would drop.
        name = name.strip(" .") or fallback
    return name


def human_size(size: int) -> str:
    """Bytes counted as the config counts them (20MB = 20 000 000 bytes): "50 kB", "19.5 MB"."""
    for unit, factor in (("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
