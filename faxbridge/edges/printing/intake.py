"""A print job → the letters it makes: recipients from the job's option, its title or the codes
in the document; each letter's pages written out with the codes whited out.

Blocking (pdfium, files): call from a worker thread. Everything that can refuse the job runs
before any letter is journaled, so a serial job is refused whole, with the page named.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faxbridge import coded_pdf
from faxbridge.controlcodes import Code, ControlCodeError, Letter, plan_letters, split_numbers
from faxbridge.errors import DocumentError, FaxbridgeError
from faxbridge.model import JobType

# -o fax-number=+4930…  (several: comma or semicolon between them)
NUMBER_OPTIONS = ("fax-number", "fax-numbers", "faxnumber")
# A title "fax:+49 30 1234567" (also "Invoice 7 fax:+4930…, +4940…": Windows puts the program's
# name in front of the document's), or "fax_+4930…" where a colon cannot be typed (Windows file
# names, which become the title).
_TITLE_NUMBERS = re.compile(r"(?i)\bfax[:_]\s*(\+?[0-9][0-9 ()/.\-]*(?:[,;]\s*\+?[0-9][0-9 ()/.\-]*)*)")

Check = Callable[[str, str], str]  # (number, purpose) → E.164, or raises (outbound.number_check)


class PrintRefused(FaxbridgeError):
    """The print job cannot become faxes; the message says why, naming the page where it can."""


@dataclass(frozen=True)
class PlannedLetter:
    letter: Letter
    recipients: tuple[str, ...]  # normalised (E.164)
    job_type: JobType
    text: str = ""  # an SMS letter's message: its pages' text without the codes

    @property
    def pages(self) -> int:
        return len(self.letter.pages)


def option_numbers(options: str) -> list[str]:
    """The numbers of ``-o fax-number=…`` in CUPS's options argument (``name=value`` words)."""
    try:
        words = shlex.split(options)
    except ValueError:
        words = options.split()
    numbers: list[str] = []
    for word in words:
        name, _, value = word.partition("=")
        if name.lower() in NUMBER_OPTIONS:
            numbers.extend(split_numbers(value))
    return numbers


def title_numbers(title: str) -> list[str]:
    match = _TITLE_NUMBERS.search(title)
    # "fax_+4930123456.docx": the dot before the extension is not part of the number.
    return split_numbers(match.group(1).rstrip(" .-/(")) if match else []


def plan_job(source: Path, options: str, title: str, *, control_codes: bool, check: Check) -> list[PlannedLetter]:
    """The letters of one print job, checked; raises PrintRefused (or ControlCodeError, a
    DocumentError) saying why none can go."""
    try:
        texts = coded_pdf.page_texts(source)
    except DocumentError as exc:
        raise PrintRefused(f"the printed document is {exc}") from None
    if not texts:
        raise PrintRefused("the printed document has no pages")
    given = option_numbers(options) or title_numbers(title)
    given_from = "the option fax-number" if option_numbers(options) else "the title"
    if control_codes:
        letters = plan_letters(texts)
    else:
        letters = [Letter(1, len(texts))]
    coded = [l for l in letters if l.numbers]
    if given and coded:
        pages = ", ".join(str(c.page) for l in coded for c in l.codes if c.kind == "number")
        raise PrintRefused(
            f"conflicting recipients: {given_from} names {', '.join(given)}, and the document carries "
            f"@@NUMBER@@ codes (page {pages}); give the numbers one way only")
    if given:
        letters = [dataclasses.replace(letters[0], numbers=tuple(given))]
    elif not coded:
        blank = [str(n) for n, text in enumerate(texts, start=1) if not text.strip()]
        if len(blank) == len(texts):
            raise PrintRefused(
                f"no recipient: the document has no text layer (a scan?) on page {', '.join(blank)}, so no "
                "@@NUMBER …@@ code can be read; print with -o fax-number=+49… or the title fax:+49…")
        raise PrintRefused(
            "no recipient: print with -o fax-number=+49…, a title fax:+49…, or put @@NUMBER +49…@@ "
            "into the document")
    return [_checked(letter, texts, check, from_codes=not given) for letter in letters]


def _checked(letter: Letter, texts: list[str], check: Check, *, from_codes: bool) -> PlannedLetter:
    job_type = JobType(letter.job_type)
    recipients: list[str] = []
    number_codes = [c for c in letter.codes if c.kind == "number"] if from_codes else []
    sources: list[tuple[str, int | None, str]] = (
        [(n, c.page, c.value) for c in number_codes for n in split_numbers(c.value)] if from_codes
        else [(n, None, n) for n in letter.numbers])
    for raw, page, written in sources:
        try:
            number = check(raw, job_type.value)
        except FaxbridgeError as exc:
            problem = f"@@NUMBER {written}@@: {exc}" if page is not None else f"recipient {exc}"
            raise ControlCodeError(page, problem) from None
        if number not in recipients:
            recipients.append(number)
    text = ""
    if job_type is JobType.SMS:
        by_page: dict[int, list[Code]] = {}
        for code in letter.codes:
            by_page.setdefault(code.page, []).append(code)
        text = " ".join(coded_pdf.text_without_codes(texts[p - 1], by_page.get(p, [])) for p in letter.pages).strip()
        if not text:
            raise ControlCodeError(letter.first_page, "@@TYPE sms@@, but the letter has no text to send")
    return PlannedLetter(letter, tuple(recipients), job_type, text)


def write_letter(source: Path, planned: PlannedLetter, target: Path, *, whole_document: bool) -> None:
    """The letter's pages, codes whited out; the printed file itself when it is one letter without
    codes (nothing to hide, and the original is sharper than any rendering)."""
    # Written aside and renamed: when CUPS retries a job whose first letters were journaled, the
    # sender may be reading them right now; it keeps the old file (the bytes are the same).
    temporary = target.with_name(f".{target.name}.tmp")
    if whole_document and not planned.letter.codes:
        temporary.write_bytes(source.read_bytes())
    else:
        coded_pdf.write_pages(source, planned.letter.pages, planned.letter.codes, temporary)
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, target)
