"""Small, valid sample documents for tests and the demo: multi-page TIFF faxes and PDFs.

Both are deterministic: the same arguments give the same bytes (the simulator's duplicate check, -77,
compares bytes). Pass a different ``tag`` to get a different document with the same page count.
"""

from __future__ import annotations

import io
import struct

# Fax "fine" resolution, dots per inch (ITU-T T.4: 8 dots/mm × 7.7 lines/mm).
_X_DPI, _Y_DPI = 204, 196

# TIFF 6.0 field types.
_SHORT, _LONG, _RATIONAL, _ASCII = 3, 4, 5, 2


def make_tiff(pages: int, *, width: int = 64, height: int = 32, tag: str = "") -> bytes:
    """A little-endian, uncompressed, bilevel multi-page TIFF, as a fax machine would store it.

    Each page is a readable baseline TIFF image (Pillow and img2pdf open it) with a different pattern, so
    pages can be told apart; ``tag`` goes into ImageDescription to make otherwise equal files differ.
    """
    if pages < 1:
        raise ValueError("a TIFF needs at least one page")
    row_bytes = (width + 7) // 8
    out = bytearray(b"II*\x00\x00\x00\x00\x00")  # header; the first IFD offset is patched below
    link_at = 4  # where the offset of the next IFD must be written
    description = (tag or "faxbridge sample").encode("ascii", "replace") + b"\x00"
    for page in range(pages):
        # Pixel data first, then the IFD and its out-of-line values, each on a word boundary.
        strip_at = len(out)
        out += _page_pattern(page, row_bytes, height)
        if len(out) % 2:
            out += b"\x00"
        description_at = len(out)
        out += description
        if len(out) % 2:
            out += b"\x00"
        resolution_at = len(out)
        out += struct.pack("<IIII", _X_DPI, 1, _Y_DPI, 1)
        entries = [
            (256, _LONG, 1, width),  # ImageWidth
            (257, _LONG, 1, height),  # ImageLength
            (258, _SHORT, 1, 1),  # BitsPerSample: bilevel
            (259, _SHORT, 1, 1),  # Compression: none
            (262, _SHORT, 1, 0),  # PhotometricInterpretation: WhiteIsZero, as faxes are
            (270, _ASCII, len(description), description_at),  # ImageDescription
            (273, _LONG, 1, strip_at),  # StripOffsets
            (277, _SHORT, 1, 1),  # SamplesPerPixel
            (278, _LONG, 1, height),  # RowsPerStrip: one strip per page
            (279, _LONG, 1, row_bytes * height),  # StripByteCounts
            (282, _RATIONAL, 1, resolution_at),  # XResolution
            (283, _RATIONAL, 1, resolution_at + 8),  # YResolution
            (296, _SHORT, 1, 2),  # ResolutionUnit: inch
            (297, _SHORT, 2, page | (pages << 16)),  # PageNumber: this page, of pages
        ]
        ifd_at = len(out)
        struct.pack_into("<I", out, link_at, ifd_at)
        out += struct.pack("<H", len(entries))
        for number, field_type, count, value in entries:
            if field_type == _SHORT and count == 1:
                out += struct.pack("<HHIHH", number, field_type, count, value, 0)
            else:
                out += struct.pack("<HHII", number, field_type, count, value)
        link_at = len(out)
        out += b"\x00\x00\x00\x00"  # next IFD: none yet
    return bytes(out)


def _page_pattern(page: int, row_bytes: int, height: int) -> bytes:
    """Stripes whose spacing depends on the page number (1 = black with WhiteIsZero)."""
    rows = []
    for y in range(height):
        black = (y // (page + 1)) % 2 == 0
        rows.append((b"\xff" if black else b"\x00") * row_bytes)
    return b"".join(rows)


def make_pdf(pages: int, *, tag: str = "") -> bytes:
    """A PDF with ``pages`` blank A4 pages; ``tag`` becomes its title so otherwise equal files differ."""
    import pypdf  # imported here so importing this module stays cheap

    if pages < 1:
        raise ValueError("a PDF needs at least one page")
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)  # A4 in points
    if tag:
        writer.add_metadata({"/Title": tag})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
