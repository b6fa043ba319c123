"""Control codes: the grammar and the cutting into letters, as tables; and the PDF side for real
(pdfium reads text written by hand, white and tiny text included)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from faxbridge import coded_pdf
from faxbridge.controlcodes import ControlCodeError, find_codes, parse_send_at, plan_letters, split_numbers
from faxbridge.errors import NumberError
from faxbridge.numbers import NumberPolicy
from textpdf import write_text_pdf

UTC = dt.timezone.utc
BERLIN_WINTER = dt.timezone(dt.timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@@NUMBER +49 30 1234567@@", [("number", "+49 30 1234567")]),
        ("@@number +49 30 1234567@@", [("number", "+49 30 1234567")]),
        ("@@ NMB: 030 1234567 @@", [("number", "030 1234567")]),
        ("@@TO=+4930123@@", [("number", "+4930123")]),
        ("@@NUMMER +49\u00a030\u00a01234567@@", [("number", "+49 30 1234567")]),
        ("@@AN +49 30\r\n1234567@@", [("number", "+49 30 1234567")]),
        ("@@NUMBER+4930123@@", [("number", "+4930123")]),
        ("@@NAME Müller  GmbH@@ @@SUBJECT Rechnung\r\n4711@@",
         [("name", "Müller GmbH"), ("subject", "Rechnung 4711")]),
        ("@@SENDAT 2026-12-24 08:00@@", [("sendat", "2026-12-24 08:00")]),
        ("@@TYPE sms@@", [("type", "sms")]),
        ("@@SPLIT@@", [("split", "")]),
        ("@@newletter@@", [("split", "")]),
        ("mail me at a@@b.example, @@FOO bar@@", []),  # unknown keyword: not a code
        ("no codes here", []),
        ("@@NUMBER 1@@ text @@NUMBER 2@@", [("number", "1"), ("number", "2")]),
    ],
)
def test_find_codes(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(c.kind, c.value) for c in find_codes(text, 1)] == expected


def test_code_span_covers_exactly_the_code() -> None:
    text = "Dear @@NUMBER +4930123@@ customer"
    (code,) = find_codes(text, 4)
    assert text[code.start:code.end] == "@@NUMBER +4930123@@"
    assert code.page == 4


@pytest.mark.parametrize(
    ("value", "numbers"),
    [
        ("+49 30 1234567", ["+49301234567"]),
        ("+49 30 123, +49 40 456", ["+4930123", "+4940456"]),
        ("030 123;040 456", ["030123", "040456"]),
        ("+49\u00a030 12\u00ad34", ["+49301234"]),  # soft hyphen from a broken line
        (" , ", []),
    ],
)
def test_split_numbers(value: str, numbers: list[str]) -> None:
    assert split_numbers(value) == numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-24 08:00", dt.datetime(2026, 12, 24, 7, 0, tzinfo=UTC)),
        ("24.12.2026 08:00", dt.datetime(2026, 12, 24, 7, 0, tzinfo=UTC)),
        ("2026-12-24T08:00+00:00", dt.datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
    ],
)
def test_send_at(value: str, expected: dt.datetime) -> None:
    assert parse_send_at(value, 1, tz=BERLIN_WINTER) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2026-12-24", "24.12.2026 25:00"])
def test_send_at_refused_with_page(value: str) -> None:
    with pytest.raises(ControlCodeError, match="^page 7: @@SENDAT"):
        parse_send_at(value, 7)


def _plan(pages: list[str]) -> list[tuple[int, int, tuple[str, ...]]]:
    return [(l.first_page, l.last_page, l.numbers) for l in plan_letters(pages)]


@pytest.mark.parametrize(
    ("pages", "letters"),
    [
        # no code at all: one letter without a number (the job's option or title must give it)
        (["a", "b"], [(1, 2, ())]),
        # one letter, code on page 1
        (["@@NUMBER 1@@", "b", "c"], [(1, 3, ("1",))]),
        # serial: every page with its own number starts a letter
        (["@@NUMBER 1@@", "@@NUMBER 2@@", "@@NUMBER 3@@"], [(1, 1, ("1",)), (2, 2, ("2",)), (3, 3, ("3",))]),
        (["@@NUMBER 1@@", "p2", "@@NUMBER 2@@", "p4", "p5"], [(1, 2, ("1",)), (3, 5, ("2",))]),
        # several numbers on one page: one letter to all of them
        (["@@NUMBER 1@@ @@TO 2@@", "x"], [(1, 2, ("1", "2"))]),
        (["@@NUMBER 1, 2@@"], [(1, 1, ("1", "2"))]),
        # the code in the footer of the letter's last page completes the letter
        (["page 1", "page 2 @@NUMBER 1@@"], [(1, 2, ("1",))]),
        # a split code starts a letter whose number comes later
        (["@@NUMBER 1@@", "@@SPLIT@@ cover", "@@NUMBER 2@@"], [(1, 1, ("1",)), (2, 3, ("2",))]),
        # split and number on one page: one new letter, not two
        (["@@NUMBER 1@@", "@@SPLIT@@ @@NUMBER 2@@"], [(1, 1, ("1",)), (2, 2, ("2",))]),
    ],
)
def test_plan_letters(pages: list[str], letters: list[tuple[int, int, tuple[str, ...]]]) -> None:
    assert _plan(pages) == letters


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        (["@@NUMBER 1@@", "@@SPLIT@@ no number follows"], "page 2: the letter on page 2 has no @@NUMBER"),
        (["@@NUMBER 1@@", "@@SPLIT@@", "x", "@@SPLIT@@ @@NUMBER 3@@"], "page 2: the letter on pages 2-3 has no"),
        (["@@NUMBER 1@@ @@SUBJECT A@@", "@@SUBJECT B@@"], "page 2: conflicting codes: @@SUBJECT B@@, but page 1"),
        (["@@NUMBER 1@@ @@TYPE letter@@"], "page 1: @@TYPE letter@@: expected one of fax, sms"),
        (["@@NUMBER @@"], "page 1: @@NUMBER@@ without a number"),
        (["@@NUMBER 1@@ @@SENDAT soon@@"], "page 1: @@SENDAT soon@@ is not a date"),
        (["@@NUMBER 1@@ @@SENDAT 2026-12-24 08:00@@ @@SENDAT 2026-12-25 08:00@@"], "page 1: conflicting codes"),
    ],
)
def test_plan_letters_refuses_naming_the_page(pages: list[str], message: str) -> None:
    with pytest.raises(ControlCodeError) as caught:
        plan_letters(pages)
    assert str(caught.value).startswith(message)


def test_numbers_are_checked_with_the_page() -> None:
    policy = NumberPolicy("DE")

    def check(raw: str) -> str:
        normalised = policy.normalize(raw)
        reason = policy.refusal(normalised)
        if reason:
            raise NumberError(raw, reason, refused=True)
        return normalised

    letters = plan_letters(["@@NUMBER 030 1234567@@", "@@NUMBER +49 40 5551234@@"], check_number=check)
    assert [l.numbers for l in letters] == [("+49301234567",), ("+49405551234",)]
    with pytest.raises(ControlCodeError, match=r"^page 2: @@NUMBER 0900 1234567@@: '09001234567': .*premium"):
        plan_letters(["@@NUMBER 030 1234567@@", "@@NUMBER 0900 1234567@@"], check_number=check)
    with pytest.raises(ControlCodeError, match=r"^page 1: @@NUMBER abc@@"):
        plan_letters(["@@NUMBER abc@@"], check_number=check)


def test_letter_values() -> None:
    (letter,) = plan_letters(
        ["@@NUMBER 1@@ @@NAME Müller GmbH@@ @@SUBJECT Invoice 7@@ @@SENDAT 2026-12-24T08:00+00:00@@ @@TYPE SMS@@"])
    assert (letter.name, letter.subject, letter.job_type) == ("Müller GmbH", "Invoice 7", "sms")
    assert letter.send_at == dt.datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    assert letter.page_label == "page 1"


def test_codes_in_white_and_tiny_text_are_found_and_whited_out(tmp_path: Path) -> None:
    source = write_text_pdf(tmp_path / "in.pdf", [
        ["Invoice 1", ("@@NUMBER +49 30 1234 567@@", 2.0, 1.0), "Dear customer"],
        ["second page of invoice 1"],
        ["Invoice 2", "@@NUMMER: +49 40\u00a0555 1234@@ @@SUBJECT Rechnung 2@@ kept text"],
    ])
    texts = coded_pdf.page_texts(source)
    letters = plan_letters(texts)
    assert [(l.page_label, l.numbers) for l in letters] == [
        ("pages 1-2", ("+49301234567",)), ("page 3", ("+49405551234",))]
    for n, letter in enumerate(letters):
        target = tmp_path / f"letter{n}.pdf"
        coded_pdf.write_pages(source, letter.pages, letter.codes, target)
        sent = coded_pdf.page_texts(target)
        assert len(sent) == len(letter.pages)
        assert not any("@@" in page or "NUM" in page for page in sent)
    # the page without a code is copied as it is, its text intact
    assert coded_pdf.page_texts(tmp_path / "letter0.pdf")[1] == "second page of invoice 1"


def test_text_without_codes() -> None:
    text = "Hello @@NUMBER 1@@ world\r\n@@TYPE sms@@ bye"
    assert coded_pdf.text_without_codes(text, find_codes(text, 1)) == "Hello world bye"
