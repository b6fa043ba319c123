"""What a name in a hotfolder means: ignored or not, document or sidecar, a recipient at its start.

Pure functions of the name (no file system), so each rule has a table-driven test.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from typing import Final

# Sidecars: instructions for the document of the same name (NAME.yaml), or its recipient list
# (NAME.csv). Everything else that is not ignored is a document.
YAML_SUFFIXES: Final = (".yaml", ".yml")
CSV_SUFFIX: Final = ".csv"

# faxbridge's own files; written into sent/ and failed/, never into the folder, but a user may
# copy one back. The notice is written into the folder while sending is paused.
PAUSE_NOTICE: Final = "FAXBRIDGE-PAUSED.txt"
REPORT_SUFFIX: Final = ".status.csv"
ERROR_SUFFIX: Final = ".error.txt"
SEND_REPORT_SUFFIX: Final = ".report.pdf"  # the send report PDF (hotfolders[].report_pdf)

# Names writers use while a file is incomplete: browsers (.crdownload, .part, .download), WinSCP
# (.filepart), rsync/curl/wget (.part, .tmp), editors (.swp, name~), office lock files.
_TEMP_SUFFIXES: Final = (
    ".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".swp",
    ".swx", ".lock", ".lck", ".!ut", ".!qb",
)  # fmt: skip
_SYSTEM_NAMES: Final = frozenset({"thumbs.db", "desktop.ini", "icon\r"})


def ignored(name: str) -> bool:
    """True for names faxbridge must never take: hidden, temporary, lock, system and own files.

    Hidden covers dotfiles, which is also how ``.~lock.NAME#`` (LibreOffice), ``.DS_Store``, rsync's
    ``.NAME.XXXXXX`` and faxbridge's own ``.faxbridge/`` look. ``~$NAME`` is an MS Office owner file.
    """
    lower = name.lower()
    return (
        not name
        or name.startswith((".", "~"))
        or name.endswith("~")
        or lower.endswith(_TEMP_SUFFIXES)
        or lower.endswith((REPORT_SUFFIX, ERROR_SUFFIX, SEND_REPORT_SUFFIX))
        or lower in _SYSTEM_NAMES
        or name == PAUSE_NOTICE
    )


def is_yaml(name: str) -> bool:
    return name.lower().endswith(YAML_SUFFIXES)


def is_csv(name: str) -> bool:
    return name.lower().endswith(CSV_SUFFIX)


def is_sidecar(name: str) -> bool:
    return is_yaml(name) or is_csv(name)


def split_name(name: str) -> tuple[str, str]:
    """``("Invoice 42", ".pdf")``; a name without a dot has no extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def stem(name: str) -> str:
    return split_name(name)[0]


def with_suffix(name: str, suffix: str) -> str:
    """``Invoice.pdf`` with `` (2)`` → ``Invoice (2).pdf``: the same suffix for a whole unit."""
    base, ext = split_name(name)
    return f"{base}{suffix}{ext}"


def display_name(name: str) -> str:
    """The name as text that is safe in the journal, a log line and FAX.de's SendFilename.

    Names that are not UTF-8 (os.fsdecode left surrogates in them) are read as Windows-1252,
    the usual cause (an old Windows share); control characters become ``_``.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(name).decode("cp1252", errors="replace")
    return "".join("_" if (ord(ch) < 32 or ord(ch) == 127) else ch for ch in name)


def encode_name(name: str) -> str:
    """A file name as journal-safe text, reversibly: non-UTF-8 names as ``b64:…`` of their bytes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "b64:" + base64.b64encode(os.fsencode(name)).decode("ascii")
    return name


def decode_name(text: str) -> str:
    if text.startswith("b64:"):
        return os.fsdecode(base64.b64decode(text[4:]))
    return text


# A recipient at the start of a file name: "+494012345678_Invoice.pdf",
# "0049 40 12345678 - Invoice.pdf", "040 1234567 [INV-42] Invoice.pdf". The number starts with
# "+" or "0" (international, or national with its trunk prefix) and holds digits and the
# separators people type; a reference id may follow in []. Anything else ("2024-01-15 Invoice")
# is not a recipient, and the next source (the folder's recipient) decides.
_NAME_RECIPIENT: Final = re.compile(
    r"""^\s*
    (?P<number>[+0][0-9 ()/\-\u2013]*[0-9)])
    \s*(?:\[(?P<reference>[^\]\[]*)\])?""",
    re.VERBOSE | re.DOTALL,
)
_MIN_DIGITS: Final = 5


@dataclass(frozen=True)
class NameRecipient:
    """The recipient part of a file name, as written (numbers.py decides whether it is valid)."""

    number: str
    reference: str = ""
    # The number without its last space-separated group, when only a space parts the number
    # from the rest of the name (a word or a [reference]): "040 1234567 4711 Mueller" may mean
    # 040 1234567 (instructions refuses the name if that is a valid number too, not guess).
    shorter: str = ""


def recipient_from_name(name_stem: str) -> NameRecipient | None:
    """The number (and [reference]) a file name starts with, or None when it names none.

    Only the form is judged here: "0049 40 12345678 2024 Invoice" is returned as written, with
    the shorter reading "0049 40 12345678" beside it; the instructions refuse the name when both
    are numbers, rather than guess.
    """
    match = _NAME_RECIPIENT.match(name_stem)
    if match is None:
        return None
    number = match["number"].strip()
    reference = match["reference"]
    after = name_stem[match.end("number") :]
    # " - " ends the number, whatever follows ("040 1234567 - 4711 Mueller"): the class above
    # takes spaces and dashes for "040-1234567" and "+49 (0)40 123 45-67".
    cut = re.search(r"\s+[\-\u2013]\s", match["number"])
    if cut is not None:
        number = match["number"][: cut.start()].strip()
        reference = None
        after = name_stem[match.start("number") + cut.start() :]
    if sum(ch.isdigit() for ch in number) < _MIN_DIGITS:
        return None
    # The number must end where a word begins: "01.02.2024_x" is a date, not a number "01".
    if after and not re.match(r"[\s_\-\u2013\[]", after):
        return None
    shorter = ""
    if re.search(r"\s", number) and re.match(r"\s+[^\s_\-\u2013]", after):
        shorter = number.rsplit(None, 1)[0]
    return NameRecipient(number, (reference or "").strip(), shorter)
