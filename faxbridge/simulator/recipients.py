"""Reading SendJob's recipients the way FAX.de does: the Recipient string, the RecipientFile CSV, and
which numbers or addresses are plausible, which are premium-rate, which are simply invalid.

Pure functions of their inputs; the service decides what result code a verdict becomes.
"""

from __future__ import annotations

import csv
import enum
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One recipient as given: the address text and the optional reference id."""

    address: str
    reference: str = ""


class Verdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # not a number / address at all: dropped, and "no valid recipient" if none is left
    PREMIUM = "premium"  # a number FAX.de refuses to dial (premium-rate, special service, too short)


# "A reference id may be appended embedded in []" (FAXDE-API.md, Parameters SendJob, Recipient).
_WITH_REFERENCE = re.compile(r"^(?P<address>.*?)\s*\[(?P<reference>[^\]]*)\]\s*$", re.S)


def parse_recipient_param(value: str) -> list[Entry]:
    """The Recipient parameter: one recipient, or several divided by comma, each with an optional [ref]."""
    entries = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        match = _WITH_REFERENCE.match(item)
        if match:
            entries.append(Entry(match["address"].strip(), match["reference"].strip()))
        else:
            entries.append(Entry(item))
    return entries


class RecipientFileError(ValueError):
    """The RecipientFile is not a text CSV (FAX.de answers -65)."""


def parse_recipient_file(data: bytes) -> list[Entry]:
    """The RecipientFile: CSV, comma, CRLF or LF; column 1 the recipient, optional column 2 a reference."""
    if b"\x00" in data:
        raise RecipientFileError("RecipientFile is binary, not CSV text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Windows office tools write ANSI CSV
    entries = []
    for row in csv.reader(text.splitlines()):
        if not row or not row[0].strip():
            continue
        reference = row[1].strip() if len(row) > 1 else ""
        entries.append(Entry(row[0].strip(), reference))
    return entries


# What people type between the digits of a phone number.
_NUMBER_PUNCTUATION = re.compile(r"[\s\-/().]")
# German premium-rate and special-service ranges (Bundesnetzagentur numbering plan): 0900 premium,
# 0137 mass-call, 0180 shared-cost, 019x online/service, 0118 directory enquiries.
PREMIUM_PREFIXES = ("+49900", "+49137", "+49180", "+4919", "+49118")
# An international number shorter than this is a short code or emergency number, never a fax line.
_MIN_DIGITS = 7
_MAX_DIGITS = 15  # ITU-T E.164, section 6.1


def normalize_number(text: str) -> str | None:
    """'+49 40 123-456' or '004940123456' → '+4940123456'; None if it is not an international number."""
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+[1-9][0-9]*", compact):
        return None
    return compact


def judge_number(text: str) -> Verdict:
    """A fax or SMS recipient: plausible international number, premium/special, or invalid."""
    number = normalize_number(text)
    if number is None:
        return Verdict.INVALID
    digits = len(number) - 1
    if digits > _MAX_DIGITS:
        return Verdict.INVALID
    if digits < _MIN_DIGITS or number.startswith(PREMIUM_PREFIXES):
        return Verdict.PREMIUM
    return Verdict.VALID


_ADDRESS = re.compile(r"[^@\s,;<>\[\]]+@[^@\s,;<>\[\]]+\.[^@\s,;<>\[\].]+")


def judge_address(text: str) -> Verdict:
    """An e-mail recipient: something@domain.tld, nothing more."""
    return Verdict.VALID if _ADDRESS.fullmatch(text.strip()) else Verdict.INVALID


def canonical(address: str) -> str:
    """The form used as a key (results per number, refusals, duplicates): normalized number or lower-case mail."""
    number = normalize_number(address)
    if number is not None:
        return number
    return address.strip().lower()
