"""Unpacking the files Outlook wraps in a winmail.dat (TNEF, [MS-OXTNEF]) so they can be faxed as attachments."""

from __future__ import annotations

import logging
import re
import struct

from tnefparse import TNEF
from tnefparse.tnef import TNEFAttachment

from faxbridge.convert import ConversionError

log = logging.getLogger(__name__)

# An attached Outlook message may carry attachments of its own; three levels is more than Outlook nests
# in practice and keeps a crafted file from recursing without end.
_MAX_DEPTH = 3
# Anything that could steer a path or confuse a log line is replaced in an attachment's name.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:]+")


def unpack(data: bytes) -> list[tuple[str, bytes]]:
    """The files inside a winmail.dat, in the order Outlook stored them, as (name, content) pairs.

    Only attachments are returned, never the message body: Outlook sends the body beside winmail.dat
    as an ordinary text/plain part, which the mail intake already faxes as the note, so the RTF copy of
    it inside the TNEF would print the same words twice. Files of an attached Outlook message count as
    attachments too. A TNEF without any file, or one that is damaged (a wrong signature, a cut-off
    stream, an attachment whose checksum does not match), is a ConversionError in plain words.
    """
    if len(data) < 6 or struct.unpack_from("<I", data)[0] != TNEF.TNEF_SIGNATURE:
        raise ConversionError("the winmail.dat attachment is not a valid Outlook (TNEF) file")
    try:
        tnef = TNEF(data, do_checksum=True)
        files = _files(tnef, depth=0)
    except Exception as exc:  # noqa: BLE001 - see below
        # tnefparse reports a cut-off or malformed stream as whatever its parser hit first: struct.error,
        # ValueError, a TypeError (a string before the codepage), an UnboundLocalError (attachment data
        # before an attachment began), a RecursionError (messages nested without end) — all mean damaged.
        log.info("winmail.dat unreadable: %s: %s", type(exc).__name__, exc)
        raise ConversionError("the winmail.dat attachment is damaged and cannot be read") from None
    if not files:
        raise ConversionError("the winmail.dat attachment contains no files to fax")
    return files


def _files(tnef: TNEF, depth: int) -> list[tuple[str, bytes]]:
    # tnefparse keeps going past a bad checksum (it only logs one); a bad one on the data we would fax
    # means the file is damaged, and faxing a damaged file helps no one.
    if any(not obj.good_checksum for obj in tnef.objects if obj.name == TNEF.ATTATTACHDATA):
        raise ValueError("attachment data checksum mismatch")
    files: list[tuple[str, bytes]] = []
    for number, attachment in enumerate(tnef.attachments, start=1):
        embedded = getattr(attachment, "embed", None)
        if embedded is not None:
            if depth + 1 < _MAX_DEPTH:
                files.extend(_files(embedded, depth + 1))
            continue
        if attachment.data:
            files.append((_name(attachment, number), bytes(attachment.data)))
    return files


def _name(attachment: TNEFAttachment, number: int) -> str:
    """The attachment's long file name (Outlook's 8.3 title only when there is none), made path-safe."""
    name = attachment.long_filename()
    if isinstance(name, bytes):
        name = name.decode("cp1252", errors="replace")
    name = _UNSAFE_NAME.sub("_", name.strip().strip("\x00")).strip(" .")
    return name or f"attachment-{number}"
