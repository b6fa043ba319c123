"""Test helper: a PDF with real text (Helvetica), written by hand, so tests need no PDF library
that can draw. Each page is a list of lines; a line is text, or (text, size, grey) for tiny or
white text (grey 1 = white)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

Line = str | tuple[str, float, float]


def _escape(text: str) -> bytes:
    data = text.encode("cp1252")
    return data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def text_pdf(pages: Sequence[Sequence[Line]]) -> bytes:
    """A PDF of A4 pages, each line set at 12 pt unless given, from the top down."""
    objects: list[bytes] = []
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"")  # pages: filled in below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        stream = [b"BT"]
        y = 800.0
        for line in lines:
            text, size, grey = (line, 12.0, 0.0) if isinstance(line, str) else line
            stream.append(b"%.2f g /F1 %.2f Tf 1 0 0 1 60 %.2f Tm (" % (grey, size, y) + _escape(text) + b") Tj")
            y -= max(size * 1.4, 4)
        stream.append(b"ET")
        content = b"\n".join(stream)
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % content_id
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_text_pdf(path: Path, pages: Sequence[Sequence[Line]]) -> Path:
    path.write_bytes(text_pdf(pages))
    return path
