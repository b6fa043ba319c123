"""Plain text files (.txt) in any usual charset → a monospace PDF (fpdf2 with a system TrueType font).

fpdf2 is pure Python, writes real text (searchable, sharp at any fax resolution) and embeds only
the glyphs used of a Unicode TrueType font, so umlauts and Cyrillic come out right; reportlab
would do the same with a C extension and ten times the size, and a picture of the text rendered by
Pillow would be blurry and large. The font comes from the system (fonts-dejavu-core).

Blocking: call it from a worker thread.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from faxbridge.convert import ConversionError
from faxbridge.convert.settings import Paper

TEXT_SUFFIXES: Final = frozenset({".txt", ".text"})

# Monospace TrueType fonts with Latin and Cyrillic letters, best first (Debian package in brackets).
FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),  # fonts-dejavu-core
    Path("/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf"),  # fonts-liberation2
    Path("/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf"),  # fonts-liberation
    Path("/usr/share/fonts/truetype/freefont/FreeMono.ttf"),  # fonts-freefont-ttf
)
FONT_PACKAGE: Final = "fonts-dejavu-core"
MAX_TEXT_BYTES: Final = 2_000_000  # about 800 pages of text: more is not a fax
FONT_SIZE: Final = 10.0  # pt: 85 characters on an A4 line, legible after fax transmission
MARGIN_MM: Final = 15.0
TAB: Final = 8
# BOMs (Unicode 15, 23.8), longest first: UTF-32 LE starts with the UTF-16 LE mark.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # fmt: skip
# Without a BOM and not UTF-8: the 8-bit charsets German and Russian offices write.
_EIGHT_BIT: Final = ("cp1252", "cp1251", "koi8_r", "cp866")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TextOptions:
    paper: Paper = Paper.A4
    max_pages: int = 200


def decode_text(data: bytes) -> tuple[str, str]:
    """The text and the charset it was read as: a BOM decides, then UTF-8, then the best of
    Windows-1252 (which reads Latin-1 too), Windows-1251, KOI8-R and CP866."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding), encoding
            except UnicodeDecodeError:
                break  # a BOM on something else: guess below
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=list(_EIGHT_BIT)).best()
    encoding = best.encoding if best is not None else "cp1252"
    if encoding != "cp1252" and _latin_words_with_cyrillic(data.decode(encoding, errors="replace")):
        encoding = "cp1252"  # "Mьller" is German read as Russian
    if encoding == "cp1252":
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # bytes Windows-1252 leaves undefined (0x81, 0x8D …)
            return data.decode("latin-1"), "latin-1"
    return data.decode(encoding, errors="replace"), encoding


def _latin_words_with_cyrillic(text: str) -> bool:
    """Russian words are all Cyrillic; German read as Cyrillic shows ASCII letters beside them."""
    words = re.findall(r"\w+", text)
    cyrillic = [w for w in words if re.search(r"[\u0400-\u04ff]", w)]
    mixed = [w for w in cyrillic if re.search(r"[A-Za-z]", w)]
    return bool(cyrillic) and len(mixed) * 2 >= len(cyrillic)


def find_font() -> Path | None:
    """A monospace TrueType font on this system: the known paths, then fontconfig's choice."""
    for candidate in FONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    fc_match = shutil.which("fc-match")
    if fc_match:
        try:
            found = subprocess.run(
                [fc_match, "-f", "%{file}", "monospace:fontformat=TrueType"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if found.lower().endswith(".ttf") and Path(found).is_file():
            return Path(found)
    return None


def text_to_pdf(name: str, source: Path, target: Path, options: TextOptions) -> int:
    """Render a text file as monospace pages; returns the page count."""
    from fpdf import FPDF
    from fpdf.enums import WrapMode, XPos, YPos

    data = source.read_bytes()
    if len(data) > MAX_TEXT_BYTES:
        raise ConversionError(
            f"{name}: {len(data)} bytes of text is more than a fax should carry ({MAX_TEXT_BYTES} at most)",
            action="Send a shorter text, or a PDF.",
        )
    if b"\x00" in data[:8192] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConversionError(f"{name}: named .txt but is binary data, not text")
    text, _ = decode_text(data)
    text = _printable(text)
    if not text.strip():
        raise ConversionError(f"{name}: the text file is empty")
    font = find_font()
    if font is None:
        raise ConversionError(
            f"{name}: no monospace TrueType font is installed to render text"
            f" (install the Debian package {FONT_PACKAGE})"
        )
    pdf = FPDF(orientation="portrait", unit="mm", format="A4" if options.paper is Paper.A4 else "Letter")
    # A fixed date: the same text gives the same bytes, so a resent file is a recognised duplicate.
    pdf.set_creation_date(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
    pdf.set_auto_page_break(True, margin=MARGIN_MM)
    pdf.add_font("mono", "", str(font))
    pdf.set_font("mono", size=FONT_SIZE)
    line_height = FONT_SIZE * 0.3528 * 1.25  # pt → mm, with 25 % leading
    for sheet in text.split("\f"):  # a form feed starts a new page
        pdf.add_page()
        for line in sheet.split("\n"):
            # Characters, not words: a long line breaks where the page ends, as a printer does.
            pdf.multi_cell(0, line_height, line, align="L", wrapmode=WrapMode.CHAR, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            if pdf.page > options.max_pages:
                raise ConversionError(
                    f"{name}: more than {options.max_pages} pages of text (documents.max_pages)",
                    action="Split the text into several files.",
                )
    target.write_bytes(bytes(pdf.output()))
    return pdf.page


def _printable(text: str) -> str:
    """Lines as a printer sees them: CR LF and CR as LF, tabs expanded, other controls dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.expandtabs(TAB) for line in text.split("\n"))
    return _CONTROL.sub("", text).rstrip("\n")
