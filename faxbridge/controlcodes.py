"""Control codes inside documents (``@@NUMBER +49 30 1234567@@``): finding them in a page's text,
and cutting a document into letters by them. Pure: text in, plain values out.

The grammar, as Tobit David and SwyxFax printer drivers write it (README, "Control codes"):

* a code is ``@@`` KEYWORD [``:`` or ``=`` or spaces] VALUE ``@@``; keywords are case-insensitive;
* NUMBER (synonyms NMB, TO, NUMMER, AN, FAX, FAXNUMBER) names a recipient; one code may list
  several numbers separated by ``,`` or ``;``, and spaces, non-breaking spaces and line breaks
  inside a number are ignored (text extraction breaks long codes over lines);
* NAME, SUBJECT (BETREFF) and SENDAT (``2026-12-24 08:00``, ``24.12.2026 08:00``, ISO with a zone)
  describe the letter; TYPE is ``fax`` or ``sms``;
* SPLIT (NEWLETTER) starts a new letter on its page;
* a page carrying its own NUMBER starts a new letter when the current one already has its
  number (serial fax: 200 invoices, each with its code, become 200 faxes); a NUMBER on a later
  page of a letter that has none yet (a split letter, the code in a footer) completes it;
* unknown keywords are not codes (the text stays as it is).

Errors name the page (``page 3: …``), so that whoever printed a 200-page run knows where to look.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from faxbridge.errors import FaxbridgeError

NUMBER_KEYWORDS = frozenset({"NUMBER", "NMB", "TO", "NUMMER", "AN", "FAX", "FAXNUMBER", "FAXNR"})
NAME_KEYWORDS = frozenset({"NAME"})
SUBJECT_KEYWORDS = frozenset({"SUBJECT", "BETREFF"})
SENDAT_KEYWORDS = frozenset({"SENDAT"})
TYPE_KEYWORDS = frozenset({"TYPE"})
SPLIT_KEYWORDS = frozenset({"SPLIT", "NEWLETTER"})
KEYWORDS: dict[str, str] = {
    **{k: "number" for k in NUMBER_KEYWORDS},
    **{k: "name" for k in NAME_KEYWORDS},
    **{k: "subject" for k in SUBJECT_KEYWORDS},
    **{k: "sendat" for k in SENDAT_KEYWORDS},
    **{k: "type" for k in TYPE_KEYWORDS},
    **{k: "split" for k in SPLIT_KEYWORDS},
}

# The longest value a code may have: "@@" further away than this is someone's text, not a code.
_MAX_VALUE = 400
# Between the keyword and its value: a colon, an equals sign or blanks (any Unicode space,
# line breaks included). pdfium reports line ends as CR LF.
_CODE = re.compile(
    r"@@[\s\u00a0]*(?P<keyword>[A-Za-z]+)(?P<value>(?:[^A-Za-z@][^@]{0,%d}?)?)@@" % _MAX_VALUE,
    re.DOTALL,
)
_SEPARATORS = re.compile(r"[,;]")
JOB_TYPES = ("fax", "sms")


class ControlCodeError(FaxbridgeError):
    """A document whose codes cannot make letters; the message names the page."""

    def __init__(self, page: int | None, problem: str) -> None:
        self.page = page
        self.problem = problem
        super().__init__(f"page {page}: {problem}" if page is not None else problem)


@dataclass(frozen=True)
class Code:
    """One code as found: its kind (number, name, …), its value, and where its text is."""

    kind: str
    value: str
    page: int  # 1-based
    start: int  # index of the first character of "@@…@@" in the page's text
    end: int  # index after the last "@"

    @property
    def text_span(self) -> range:
        return range(self.start, self.end)


@dataclass(frozen=True)
class Letter:
    """One fax (or SMS) cut from a document: pages first..last (1-based, inclusive)."""

    first_page: int
    last_page: int
    numbers: tuple[str, ...] = ()
    name: str = ""
    subject: str = ""
    send_at: dt.datetime | None = None
    job_type: str = "fax"
    codes: tuple[Code, ...] = field(default=(), repr=False)

    @property
    def pages(self) -> range:
        return range(self.first_page, self.last_page + 1)

    @property
    def page_label(self) -> str:
        return (f"page {self.first_page}" if self.first_page == self.last_page
                else f"pages {self.first_page}-{self.last_page}")


def find_codes(text: str, page: int) -> list[Code]:
    """Every known code in one page's text, in reading order."""
    found = []
    for match in _CODE.finditer(text):
        kind = KEYWORDS.get(match.group("keyword").upper())
        if kind is None:
            continue
        value = _clean(match.group("value").lstrip(" \t\r\n\u00a0:="))
        found.append(Code(kind, value, page, match.start(), match.end()))
    return found


def split_numbers(value: str) -> list[str]:
    """The numbers of one NUMBER code: separated by , or ; with every blank inside removed."""
    numbers = []
    for part in _SEPARATORS.split(value):
        compact = "".join(ch for ch in part if not _is_blank(ch))
        if compact:
            numbers.append(compact)
    return numbers


def parse_send_at(value: str, page: int, *, tz: dt.tzinfo | None = None) -> dt.datetime:
    """SENDAT: ``2026-12-24 08:00``, ``24.12.2026 08:00`` or ISO with a zone; local time when
    no zone is given (``tz``, by default the host's). Returns aware UTC."""
    text = " ".join(value.split())
    when: dt.datetime | None = None
    for form in ("%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%y %H:%M"):
        try:
            when = dt.datetime.strptime(text, form)
            break
        except ValueError:
            pass
    if when is None:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ControlCodeError(
                page, f"@@SENDAT {value}@@ is not a date and time (write 2026-12-24 08:00)") from None
        if len(text) <= 10:
            raise ControlCodeError(page, f"@@SENDAT {value}@@ has no time of day (write 2026-12-24 08:00)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz is not None else when.astimezone()
    return when.astimezone(dt.timezone.utc)


def plan_letters(
    pages: Sequence[str],
    *,
    check_number: Callable[[str], str] | None = None,
    tz: dt.tzinfo | None = None,
) -> list[Letter]:
    """Cut a document (the text of each page, in order) into letters by its codes.

    ``check_number`` normalises a number or raises (NumberError, any FaxbridgeError): its message
    is reported with the page. Raises ControlCodeError naming the page for anything that would
    make the wrong fax. A document without any code is one letter without numbers.
    """
    letters: list[_Draft] = []
    current = _Draft(first_page=1)
    for page_number, text in enumerate(pages, start=1):
        codes = find_codes(text, page_number)
        numbers = [c for c in codes if c.kind == "number"]
        splits = any(c.kind == "split" for c in codes)
        starts_new = page_number > 1 and (splits or (numbers and current.has_number))
        if starts_new:
            letters.append(current)
            current = _Draft(first_page=page_number)
        current.last_page = page_number
        for code in codes:
            current.take(code, check_number, tz)
    letters.append(current)
    if len(letters) > 1 or letters[0].has_number:
        for draft in letters:
            if not draft.has_number:
                raise ControlCodeError(
                    draft.first_page,
                    f"the letter on {_pages(draft.first_page, draft.last_page)} has no @@NUMBER …@@ code "
                    f"(every letter of a serial document needs its own)",
                )
    return [draft.letter() for draft in letters]


@dataclass
class _Draft:
    first_page: int
    last_page: int = 0
    numbers: list[str] = field(default_factory=list)
    values: dict[str, tuple[str, int]] = field(default_factory=dict)  # kind → (value, page)
    send_at: dt.datetime | None = None
    codes: list[Code] = field(default_factory=list)

    @property
    def has_number(self) -> bool:
        return bool(self.numbers)

    def take(self, code: Code, check_number: Callable[[str], str] | None, tz: dt.tzinfo | None) -> None:
        self.codes.append(code)
        if code.kind == "split":
            return
        if code.kind == "number":
            raw = split_numbers(code.value)
            if not raw:
                raise ControlCodeError(code.page, "@@NUMBER@@ without a number")
            for number in raw:
                if check_number is not None:
                    try:
                        number = check_number(number)
                    except FaxbridgeError as exc:
                        raise ControlCodeError(code.page, f"@@NUMBER {code.value}@@: {exc}") from None
                if number not in self.numbers:
                    self.numbers.append(number)
            return
        value = code.value
        if not value:
            raise ControlCodeError(code.page, f"@@{code.kind.upper()}@@ without a value")
        if code.kind == "type":
            value = value.lower()
            if value not in JOB_TYPES:
                raise ControlCodeError(code.page, f"@@TYPE {code.value}@@: expected one of {', '.join(JOB_TYPES)}")
        if code.kind == "sendat":
            when = parse_send_at(value, code.page, tz=tz)
            if self.send_at is not None and when != self.send_at:
                raise ControlCodeError(
                    code.page, f"conflicting codes: @@SENDAT {code.value}@@ after another SENDAT "
                    f"on page {self.values['sendat'][1]} for the same letter")
            self.send_at = when
        earlier = self.values.get(code.kind)
        if earlier is not None and earlier[0] != value:
            raise ControlCodeError(
                code.page, f"conflicting codes: @@{code.kind.upper()} {code.value}@@, but page {earlier[1]} "
                f"says @@{code.kind.upper()} {earlier[0]}@@ for the same letter")
        self.values.setdefault(code.kind, (value, code.page))

    def letter(self) -> Letter:
        return Letter(
            first_page=self.first_page,
            last_page=self.last_page,
            numbers=tuple(self.numbers),
            name=self.values.get("name", ("", 0))[0],
            subject=self.values.get("subject", ("", 0))[0],
            send_at=self.send_at,
            job_type=self.values.get("type", ("fax", 0))[0],
            codes=tuple(self.codes),
        )


def _pages(first: int, last: int) -> str:
    return f"page {first}" if first == last else f"pages {first}-{last}"


def _is_blank(ch: str) -> bool:
    # Z*: spaces (incl. U+00A0); Cc: CR, LF, tab; Cf: soft hyphen, zero-width joiners;
    # U+FFFE/U+FFFF: what pdfium puts where a word was hyphenated at the end of a line.
    return ch in "\ufffe\uffff" or unicodedata.category(ch)[0] == "Z" or unicodedata.category(ch) in ("Cc", "Cf")


def _clean(value: str) -> str:
    """A value as text: every run of blanks (line breaks, non-breaking spaces) one space."""
    return " ".join("".join(" " if _is_blank(ch) else ch for ch in value).split())
