"""The DATA of an SMTP session read into a message: bare-LF lines normalised to CRLF, CRLF "." CRLF
as the only end of data, dot-unstuffing, and the size and line-length limits.

aiosmtpd reads DATA line by line on CRLF only, so a script sending a message with bare LF line
ends (``smtplib.SMTP(…).sendmail(frm, [to], msg.as_bytes())``) was refused with "500 Line too
long". Like Postfix ≥ 3.9 with ``smtpd_forbid_bare_newline = normalize``, a line may end in a bare
LF here and is stored with CRLF. The end of data stays exactly CRLF "." CRLF (RFC 5321 4.1.1.4): a
"." line ending in a bare LF, or following a line that did (LF.LF, LF.CRLF, CRLF.LF), is a line of
the message. Were it an end, a client could hide a second, forged message inside the first where a
mail server in front of faxbridge reads the stream differently ("SMTP smuggling",
CVE-2023-51764/51765/51766).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Final

END_OF_DATA: Final = b".\r\n"  # at the start of a line that follows a CRLF


class Refusal(enum.Enum):
    """Why the data read is not a message (RFC 5321 4.2.5: answered only once the end arrived)."""

    LINE_TOO_LONG = "line too long"
    TOO_BIG = "too big"


class DataAssembler:
    """Pieces of DATA in (each a line up to its LF, or part of a longer one), the message out.

    Pure: no I/O, so its rules are tested as a table (tests/test_smtp_data.py).
    """

    def __init__(self, *, size_limit: int | None, max_line_chars: int) -> None:
        self.size_limit = size_limit  # octets of the message as stored (CRLF, unstuffed); None: any
        self.max_line_chars = max_line_chars  # characters of a line before its line end
        self.refusal: Refusal | None = None
        self.size = 0
        self._content = bytearray()
        self._line_start = True
        # The 354 reply is followed by the client's first line: "." CRLF there is an empty message.
        self._after_crlf = True
        self._line_length = 0
        self._pending_cr = False  # the last piece was part of a line and ended in CR

    def feed(self, piece: bytes) -> bool:
        """Take the next piece as read from the client; True when it was the end of data."""
        if self._line_start and self._after_crlf and piece == END_OF_DATA:
            return True
        if self._line_start and piece.startswith(b"."):
            piece = piece[1:]  # dot-unstuffing (RFC 5321 4.5.2), whatever the line's end
        ends_line = piece.endswith(b"\n")
        crlf = False
        if ends_line:
            crlf = piece.endswith(b"\r\n") or (piece == b"\n" and self._pending_cr)
            if not crlf:
                piece = piece[:-1] + b"\r\n"  # a bare LF: the line is stored with CRLF
            self._pending_cr = False
        else:
            self._pending_cr = piece.endswith(b"\r")
        self._line_length += len(piece)
        self.size += len(piece)
        if self.refusal is None:
            if self._line_length > self.max_line_chars + 2:  # its CRLF not counted
                self._refuse(Refusal.LINE_TOO_LONG)
            elif self.size_limit is not None and self.size > self.size_limit:
                self._refuse(Refusal.TOO_BIG)
            else:
                self._content += piece
        if ends_line:
            self._line_start = True
            self._after_crlf = crlf
            self._line_length = 0
        else:
            self._line_start = False
        return False

    def content(self) -> bytes:
        """The message as stored: every line ending in CRLF, the leading dots of stuffing removed."""
        return bytes(self._content)

    def _refuse(self, refusal: Refusal) -> None:
        self.refusal = refusal
        self._content = bytearray()  # nothing of it is kept: no memory held for a refused mail


async def read_data(reader: asyncio.StreamReader, assembler: DataAssembler) -> bool:
    """Read from ``reader`` up to and including the end of data, and no further (the client may
    already have sent its next command: PIPELINING). False if the client closed the connection
    before the end."""
    while True:
        try:
            piece = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            # Longer than the reader's buffer limit: take what is there; the rest follows.
            piece = await reader.read(exc.consumed)
        except asyncio.IncompleteReadError:
            return False
        if assembler.feed(piece):
            return True
