"""Secured PDFs: one that opens without a password is rewritten without its encryption; one that
needs a password to open is refused, saying so.

Banks and ERP systems "secure" PDFs with an owner password only (printing or copying restricted):
every viewer opens them with the empty user password (ISO 32000-1, 7.6.3.3, algorithm 6), but FAX.de
cannot be counted on to, so faxbridge sends the same pages unencrypted. AES needs the
``cryptography`` package (a dependency of faxbridge); RC4 pypdf reads on its own.

Blocking: call it from a worker thread.
"""

from __future__ import annotations

import io
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
