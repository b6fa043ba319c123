"""Turning what offices send (photos, Office files, text, winmail.dat, secured PDFs) into fax-ready PDFs.

One module per kind of input; each converter is blocking and runs in a worker thread, never on the
event loop. Every failure is a ConversionError whose message is a plain sentence for the sender.
"""

from __future__ import annotations

from faxbridge.errors import DocumentError


class ConversionError(DocumentError):
    """A document that could not be turned into a fax-ready PDF; str() says why in plain words."""
