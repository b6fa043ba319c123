"""Plain-text helpers of the SMTP edge: HTML to text, signatures, quoted replies, flowed text, safe
names and replies.

Pure functions, no I/O; tests/test_smtp_text.py holds their tables.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from typing import Final

from faxbridge import documents

# Elements whose text is never shown to a reader.
_INVISIBLE: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Elements a browser sets apart by an empty line …
_PARAGRAPHS: Final = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl",
     "figure", "hr", "address", "fieldset", "form"}
)
# … and those that only start on a new line.
_LINES: Final = frozenset(
    {"div", "li", "tr", "dt", "dd", "article", "aside", "section", "header", "footer", "main",
     "nav", "figcaption", "caption"}
)


class _TextExtractor(HTMLParser):
    """Text as a browser lays it out, roughly: breaks between blocks are merged, not added up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._pending = 0  # line breaks owed before the next text (2 = an empty line)
        self._hidden = 0
        self._pre = 0
        self._cells = 0  # cells seen in the current table row

    def _block(self, breaks: int) -> None:
        self._pending = max(self._pending, breaks)

    def _emit(self, text: str) -> None:
        if self.out and self._pending:
            self.out.append("\n" * self._pending)
        self._pending = 0
        self.out.append(text)

    def _at_line_start(self) -> bool:
        return not self.out or self._pending > 0 or self.out[-1].endswith("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag == "br":
            self._emit("\n")
        elif tag in _PARAGRAPHS:
            self._block(2)
            if tag == "pre":
                self._pre += 1
        elif tag in _LINES:
            self._block(1)
            if tag == "li":
                self._emit("- ")
            elif tag == "tr":
                self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self._emit("\t")
            self._cells += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._emit("\n")
        elif tag == "hr":
            self._block(2)

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _PARAGRAPHS:
            self._block(2)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag in _LINES:
            self._block(1)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._emit(data.lstrip("\n") if self._at_line_start() else data)
            return
        # Outside <pre>, runs of white space (line breaks included) are one space (CSS 2.1, 16.6).
        text = re.sub(r"[ \t\r\n\f]+", " ", data)
        if self._at_line_start():
            text = text.lstrip(" ")
        if text:
            self._emit(text)


def html_to_text(html: str) -> str:
    """The text a reader sees in an HTML mail, with paragraphs and line breaks kept."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but a text must come out of any mail
        return normalize_text(re.sub(r"<[^>]*>", " ", html))
    return normalize_text("".join(parser.out).replace("\u00a0", " "))


def normalize_text(text: str) -> str:
    """LF line ends, no trailing blanks, at most one empty line in a row, none at either end.

    The signature delimiter keeps its blank: "-- " (RFC 3676, 4.3) is what readers and mail
    clients recognise; "--" is not the same line.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_without_trailing_blanks(line) for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def _without_trailing_blanks(line: str) -> str:
    stripped = line.rstrip()
    return SIGNATURE_DELIMITER if stripped == "--" and line != stripped else stripped


def unflow(text: str, *, delsp: bool = False) -> str:
    """Undo format=flowed (RFC 3676, 4.2): a line ending in a space continues on the next one."""
    out: list[str] = []
    buffer = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(" "):  # space-stuffing (RFC 3676, 4.4)
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            buffer += line[:-1] if delsp else line
            continue
        out.append(buffer + line)
        buffer = ""
    if buffer:
        out.append(buffer)
    return "\n".join(out)


# "-- " on a line of its own starts a signature (RFC 3676, 4.3); "--" is what many clients send
# after trimming the blank.  Mobile footers are signatures too.
SIGNATURE_DELIMITER: Final = "-- "
_SIGNATURE_LINE: Final = re.compile(r"^--\s*$")
_MOBILE_FOOTER: Final = re.compile(
    r"^(sent from my \w+|von meinem \w+ gesendet|gesendet von meinem \w+|"
    r"get outlook for \w+|sent from (mail|outlook) for \w+)",
    re.IGNORECASE,
)


def strip_signature(text: str) -> str:
    """The text above the signature (and above a mobile footer)."""
    lines = normalize_text(text).split("\n")
    for i, line in enumerate(lines):
        if _SIGNATURE_LINE.match(line) or _MOBILE_FOOTER.match(line.strip()):
            return normalize_text("\n".join(lines[:i]))
    return normalize_text("\n".join(lines))


# A reply's quote of the earlier mail: an attribution line ("On … wrote:", "Am … schrieb …:",
# possibly wrapped onto a second line) followed by nothing but ">" lines; or Outlook's separator,
# after which everything is the earlier mail.
_ATTRIBUTION: Final = re.compile(
    r"^(on\s.*\swrote|am\s.*\sschrieb(\s.*)?|le\s.*\sa\s+écrit)\s*:$", re.IGNORECASE
)
_OUTLOOK_SEPARATOR: Final = re.compile(
    r"^-{3,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{3,}$", re.IGNORECASE
)
_OUTLOOK_RULE: Final = re.compile(r"^_{10,}$")  # Outlook's plain-text rule above "From: …"
_OUTLOOK_HEADER: Final = re.compile(r"^(from|von|de)\s*:", re.IGNORECASE)
_MAX_ATTRIBUTION: Final = 400  # characters: longer lines are text (and kept out of the regex)


def strip_quoted_reply(text: str) -> str:
    """The text above a quoted earlier mail at its end; quotes answered in between are kept."""
    lines = normalize_text(text).split("\n")
    quotes_follow = _quotes_from(lines)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _OUTLOOK_SEPARATOR.match(stripped) or (
            _OUTLOOK_RULE.match(stripped) and i + 1 < len(lines) and _OUTLOOK_HEADER.match(lines[i + 1])
        ):
            return normalize_text("\n".join(lines[:i]))
        for width in (1, 2):  # "On Mon, 3 Mar 2025 at 10:00, Alice <alice@example.com>" / "wrote:"
            if i + width > len(lines) or not quotes_follow[i + width]:
                continue
            attribution = " ".join(part.strip() for part in lines[i:i + width])
            if len(attribution) <= _MAX_ATTRIBUTION and _ATTRIBUTION.match(attribution):
                return normalize_text("\n".join(lines[:i]))
    return normalize_text("\n".join(lines))


def _quotes_from(lines: list[str]) -> list[bool]:
    """For each index i: True when lines[i:] are quoted (">") and blank lines, at least one quoted."""
    result = [False] * (len(lines) + 1)
    quoted_seen, all_quoted = False, True
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].lstrip()
        if line:
            quoted_seen = quoted_seen or line.startswith(">")
            all_quoted = all_quoted and line.startswith(">")
        result[i] = quoted_seen and all_quoted
    return result


def note_text(text: str) -> str:
    """What the sender wrote in this mail: above the signature and above a quoted earlier mail."""
    return strip_quoted_reply(strip_signature(text))


def has_real_text(text: str) -> bool:
    """True when the body says something beyond a signature (and beyond a mobile footer)."""
    return bool(strip_signature(text).strip())


# Characters SMTP replies cannot carry (RFC 5321 replies are ASCII) written the ASCII way.
_ASCII_FOLD: Final = str.maketrans(
    {
        "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss",
        "—": "-", "–": "-", "‐": "-", "‑": "-", "…": "...", "‘": "'", "’": "'",
        "“": '"', "”": '"', "„": '"', "→": "->", "×": "x",
    }
)


def ascii_line(text: str, limit: int = 400) -> str:
    """One line of printable ASCII, for an SMTP reply or a header: folded, not dropped."""
    text = text.translate(_ASCII_FOLD)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Shared with the hotfolders: one rule for the names FAX.de sees.
safe_filename = documents.safe_filename
