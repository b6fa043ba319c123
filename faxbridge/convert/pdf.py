"""Secured PDFs: one that opens without a password is rewritten without its encryption; one that
needs a password to open is refused, saying so.

Banks and ERP systems "secure" PDFs with an owner password only (printing or copying restricted):
every viewer opens them with the empty user password (ISO 32000-1, 7.6.3.3, algorithm 6), but FAX.de
cannot be counted on to, so faxbridge sends the same pages unencrypted. AES needs the
``cryptography`` package (a dependency of faxbridge); RC4 pypdf reads on its own.

Blocking: call it from a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

from faxbridge.convert import ConversionError

NEEDS_PASSWORD = "the PDF needs a password to open; FAX.de cannot open it"
NEEDS_PASSWORD_ACTION = (
    "Send the document without its password: open it and print it to a new PDF, or save it"
    " without security in the program that made it."
)


def is_encrypted(path: Path) -> bool:
    """True for a PDF with an /Encrypt dictionary (pypdf reads only the trailer for this)."""
    import pypdf

    try:
        return bool(pypdf.PdfReader(path).is_encrypted)
    except Exception:  # a damaged PDF: documents.inspect says what is wrong with it
        return False


def unlock(name: str, source: Path, target: Path) -> int:
    """Write ``source`` decrypted to ``target``; returns its page count.

    Raises ConversionError when the PDF needs a user password, or cannot be read.
    """
    import pypdf
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(source)
        opened = reader.decrypt("")  # the empty user password: what a viewer tries first
    except DependencyError:
        raise ConversionError(
            f"{name}: the PDF is AES-encrypted and the Python package cryptography is missing"
            " (reinstall faxbridge)"
        ) from None
    except Exception as exc:  # pypdf raises many types for broken files
        raise ConversionError(f"{name}: the secured PDF cannot be read ({type(exc).__name__})") from None
    if not opened:
        raise ConversionError(f"{name}: {NEEDS_PASSWORD}", action=NEEDS_PASSWORD_ACTION)
    try:
        # Cloned without /Encrypt; the same PDF gives the same bytes (no date, no random /ID), so
        # a resent file is still a recognised duplicate.
        writer = pypdf.PdfWriter(clone_from=reader)
        buffer = io.BytesIO()
        writer.write(buffer)
        pages = len(writer.pages)
    except Exception as exc:
        raise ConversionError(f"{name}: the secured PDF cannot be rewritten ({type(exc).__name__})") from None
    target.write_bytes(buffer.getvalue())
    return pages


# What differs between two conversions of the same file by LibreOffice: the creation date in the
# document information, the file identifier (ISO 32000-1, 14.3.3 and 14.4), and LibreOffice's own
# /DocChecksum in the trailer.
_DATE = re.compile(rb"(/(?:CreationDate|ModDate)\s*\(D(?::|\\072))(\d{14})")  # ":" may be escaped
_HEX_IDS = re.compile(rb"(/ID\s*\[\s*<)([0-9A-Fa-f]+)(>\s*<)([0-9A-Fa-f]+)(>)|(/DocChecksum\s*/)([0-9A-Fa-f]+)")


def make_reproducible(path: Path) -> None:
    """Give a PDF a fixed date and identifiers derived from its content, in place.

    The same document then converts to the same bytes, so that a resent Office file is still a
    recognised duplicate. Each replacement has the length of what it replaces: every offset in the
    cross-reference table stays right, and the file needs no rewriting.
    """
    data = path.read_bytes()
    dated = _DATE.sub(lambda m: m.group(1) + b"20000101000000", data)
    digest = hashlib.sha256(_HEX_IDS.sub(lambda m: _fill(m, b"0" * 64), dated)).hexdigest().upper().encode()
    stable = _HEX_IDS.sub(lambda m: _fill(m, digest), dated)
    if stable != data:
        path.write_bytes(stable)


def _fill(match: re.Match[bytes], hex_digits: bytes) -> bytes:
    """The /ID pair or /DocChecksum matched, its hex digits replaced by as many of ``hex_digits``."""
    if match.group(6) is not None:
        return match.group(6) + (hex_digits * 2)[: len(match.group(7))]
    first, second = match.group(2), match.group(4)
    return (match.group(1) + (hex_digits * 2)[: len(first)] + match.group(3)
            + (hex_digits * 2)[: len(second)] + match.group(5))
