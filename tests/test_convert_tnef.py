"""winmail.dat: files come out of a TNEF stream built here from [MS-OXTNEF]; empty and damaged ones are refused."""

from __future__ import annotations

import struct

import pytest

from faxbridge.convert import ConversionError
from faxbridge.convert.tnef import unpack

# [MS-OXTNEF] 2.1.3: attribute ids (low word) with their type (high word), and the two levels.
SIGNATURE = 0x223E9F78
LVL_MESSAGE, LVL_ATTACHMENT = 0x01, 0x02
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_BODY = 0x0002800C
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005
PT_STRING8, PR_ATTACH_LONG_FILENAME = 0x001E, 0x3707
PT_OBJECT, PR_ATTACH_DATA_OBJ = 0x000D, 0x3701
IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")  # the IID of an embedded message ([MS-OXTNEF] 2.1.3.3.15)

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def attribute(level: int, attribute_id: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, length, data and the checksum (sum of the data bytes mod 65536)."""
    return struct.pack("<BII", level, attribute_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def long_filename_props(name: str) -> bytes:
    """An attAttachment MAPI property block carrying PR_ATTACH_LONG_FILENAME (the name Outlook shows)."""
    value = name.encode("cp1252") + b"\x00"
    padded = value + b"\x00" * (-len(value) % 4)
    return struct.pack("<IHHII", 1, PT_STRING8, PR_ATTACH_LONG_FILENAME, 1, len(value)) + padded


def embedded_message(inner: bytes) -> bytes:
    """An attachment that is an attached Outlook message: rendering data, title, and the message's own
    TNEF stream in PR_ATTACH_DATA_OBJ behind the IMessage IID."""
    value = IMESSAGE + inner
    props = struct.pack("<IHHII", 1, PT_OBJECT, PR_ATTACH_DATA_OBJ, 1, len(value)) + value + b"\x00" * (-len(value) % 4)
    return (attribute(LVL_ATTACHMENT, ATT_ATTACH_REND_DATA, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0, 0, 0))
            + attribute(LVL_ATTACHMENT, ATT_ATTACH_TITLE, b"Weitergeleitet.msg\x00")
            + attribute(LVL_ATTACHMENT, ATT_ATTACHMENT, props))


def winmail(files: list[tuple[str, str, bytes]], body: bytes = b"") -> bytes:
    """A winmail.dat as Outlook writes one: message attributes, then per file its rendering data,
    8.3 title, data and the MAPI block with the long name. ``files`` holds (8.3 title, long name, data)."""
    out = struct.pack("<IH", SIGNATURE, 0x0001)
    out += attribute(LVL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attribute(LVL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", 1252, 0))
    out += attribute(LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\x00")
    if body:
        out += attribute(LVL_MESSAGE, ATT_BODY, body)
    for title, long_name, data in files:
        # attAttachRendData starts each attachment: type 1 (a file), position unknown (-1), no flags.
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_REND_DATA, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0, 0, 0))
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_TITLE, title.encode("cp1252") + b"\x00")
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_DATA, data)
        if long_name:
            out += attribute(LVL_ATTACHMENT, ATT_ATTACHMENT, long_filename_props(long_name))
    return out


def test_attachments_come_out_in_order_with_their_long_names() -> None:
    docx = b"PK\x03\x04 not really a docx, the bytes only have to survive"
    data = winmail([("ANGEBO~1.PDF", "Angebot März 2026.pdf", PDF), ("REPORT~1.DOC", "", docx)])
    assert unpack(data) == [("Angebot März 2026.pdf", PDF), ("REPORT~1.DOC", docx)]


def test_a_name_cannot_steer_a_path() -> None:
    (name, _), = unpack(winmail([("X.PDF", "..\\..\\evil/\x01name.pdf", PDF)]))
    assert "/" not in name and "\\" not in name and "\x01" not in name
    assert name.endswith("name.pdf")


def test_files_of_an_attached_outlook_message_count_too() -> None:
    # tnefparse strips trailing NUL bytes from object data, so the inner stream must not end in one:
    # a message attribute (its checksum ends in 0x07) closes it
    inner = winmail([("RECHNU~1.PDF", "Rechnung.pdf", PDF)]) + attribute(
        LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\x00")
    outer = winmail([("A.PDF", "Anschreiben.pdf", PDF)]) + embedded_message(inner)
    assert [name for name, _ in unpack(outer)] == ["Anschreiben.pdf", "Rechnung.pdf"]


def test_messages_nested_without_end_are_refused() -> None:
    message = winmail([("A.PDF", "a.pdf", PDF)])
    for _ in range(600):
        message = winmail([]) + embedded_message(message + attribute(
            LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\x00"))
    with pytest.raises(ConversionError, match="damaged"):
        unpack(message)


def test_the_body_alone_is_not_a_file_to_fax() -> None:
    with pytest.raises(ConversionError, match="contains no files"):
        unpack(winmail([], body=b"Hello, the offer is attached.\x00"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a valid Outlook"),
        (b"PK\x03\x04" + b"\x00" * 40, "not a valid Outlook"),
        # cut off in the middle of the attachment's data: its checksum is read from the wrong place
        (winmail([("A.PDF", "a.pdf", PDF * 20)])[:-300], "damaged"),
        # one byte of the attachment changed after the checksum was written
        (winmail([("A.PDF", "a.pdf", PDF)]).replace(b"%PDF-1.4", b"%PDF-1.5"), "damaged"),
        # attachment data before any attAttachRendData began an attachment
        (struct.pack("<IH", SIGNATURE, 1) + attribute(LVL_ATTACHMENT, ATT_ATTACH_DATA, PDF), "damaged"),
        # a string attribute before the codepage that says how to read it
        (struct.pack("<IH", SIGNATURE, 1) + attribute(LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Note\x00"), "damaged"),
    ],
    ids=["empty", "zip", "truncated", "flipped-byte", "data-outside-attachment", "no-codepage"],
)
def test_damaged_winmail_dat_is_refused_in_plain_words(data: bytes, reason: str) -> None:
    with pytest.raises(ConversionError, match=reason) as caught:
        unpack(data)
    assert "winmail.dat" in str(caught.value)


def test_a_good_file_after_a_bad_one_still_unpacks() -> None:
    with pytest.raises(ConversionError):
        unpack(b"\x78\x9f\x3e\x22\x01\x00\xff")
    assert unpack(winmail([("A.PDF", "a.pdf", PDF)])) == [("a.pdf", PDF)]
