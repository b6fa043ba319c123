"""The inbound rules as plain functions: payload checks, file names from the sender's values, routing,
received.csv rows, crash-point specs — table-driven, no I/O."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from faxbridge import crashpoints
from faxbridge.edges.inbox.files import index_row, render_name, sanitise_field, sanitise_name
from faxbridge.config import InboundConfig, InboundRoute
from faxbridge.inbound import canonical_number, check_payload, destination
from faxbridge.model import InboundFax
from faxbridge.simulator.samples import make_pdf, make_tiff

UTC = dt.timezone.utc
WHEN = dt.datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC)


def fax(image: bytes = b"", *, pages: int = 1, originator: str = "+4940123456", remote_id: str = "ACME",
        called: str = "+4930555000", fax_id: int = 7, received: dt.datetime | None = WHEN) -> InboundFax:
    return InboundFax(fax_id, called, received, originator, remote_id, pages, image)


THREE_PAGES = make_tiff(3)
BIG_ENDIAN_HEADER = b"MM\x00*\x00\x00\x00\x08"


@pytest.mark.parametrize(
    ("image", "pages", "max_size", "ok", "expected"),
    [
        (THREE_PAGES, 3, 10_000, True, ""),
        (THREE_PAGES, 5, 10_000, True, "FAX.de says 5 page(s), the TIFF has 3"),
        (THREE_PAGES, 3, 100, False, "larger than the limit of 0.0 MB (inbound.max_size)"),
        (b"", 1, 10_000, False, "FAX.de sent an empty fax image"),
        (make_pdf(1), 1, 10_000, False, "not a TIFF but a PDF file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, 1, 10_000, False, "not a TIFF but a PNG image"),
        (THREE_PAGES[:200], 3, 10_000, False, "the TIFF is damaged"),
        (BIG_ENDIAN_HEADER, 1, 10_000, False, "the TIFF is damaged"),
        (b"II*\x00\x00\x00\x00\x00", 1, 10_000, False, "the TIFF is damaged: TIFF has no image"),
    ],
    ids=["fine", "page-mismatch", "too-large", "empty", "pdf", "png", "truncated", "bad-ifd", "no-ifd"],
)
def test_payload_checks(image: bytes, pages: int, max_size: int, ok: bool, expected: str) -> None:
    check = check_payload(fax(image, pages=pages), max_size)
    assert check.ok is ok
    assert expected in (check.note if ok else check.reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+4940123456", "+4940123456"),
        ("ACME GmbH", "ACME GmbH"),
        ("", "unknown"),
        ("   ", "unknown"),
        ("../../etc/passwd", "etc_passwd"),
        ("a/b\\c", "a_b_c"),
        ("ACME\x07\x1b[31mRED", "ACME_[31mRED"),
        ("tab\tand\nnewline", "tab_and_newline"),
        ("fax\u202efdp.exe", "fax_fdp.exe"),  # right-to-left override
        ('what:*?"<>|', "what"),
        ("..hidden", "hidden"),
        ("Müller & Söhne", "Müller & Söhne"),
        ("x" * 100, "x" * 64),
        ("\x00\x00", "unknown"),
    ],
)
def test_sender_values_are_sanitised_for_file_names(value: str, expected: str) -> None:
    assert sanitise_field(value) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20240131_123.tif", "20240131_123.tif"),
        ("a.TIFF", "a.TIFF"),
        ("no-extension", "no-extension.tif"),
        ("report.pdf", "report.pdf.tif"),
        (".hidden.tif", "hidden.tif"),
        ("12:30:00.tif", "12_30_00.tif"),
        ("CON.tif", "_CON.tif"),
        ("nul.x.tif", "_nul.x.tif"),
        ("trailing. .tif", "trailing.tif"),
        (".tif", "tif.tif"),
        ("ü" * 150 + ".tif", "ü" * 98 + ".tif"),  # 200 bytes of UTF-8 at most
    ],
)
def test_whole_names_are_made_safe(name: str, expected: str) -> None:
    assert sanitise_name(name) == expected


@pytest.mark.parametrize(
    ("template", "received", "expected"),
    [
        ("{received:%Y%m%d-%H%M%S}_{originator}_{fax_id}.tif", WHEN, "20240131-235958_+4940123456_7.tif"),
        ("{fax_id:08d}_{pages}p.tif", WHEN, "00000007_3p.tif"),
        ("{remote_id}_{called_number}.tiff", WHEN, "Evil_.._etc_x_+4930555000.tiff"),
        ("{received:%H:%M}_{fax_id}.tif", WHEN, "23_59_7.tif"),
        ("{received.year}/{fax_id}", WHEN, "2024_7.tif"),
        ("{received:%Y}_{fax_id}.tif", None, f"{dt.datetime.now(UTC).year}_7.tif"),
        ("{received:%Y%m%d-%H%M%S}.tif", WHEN.replace(tzinfo=None), "20240131-235958.tif"),
    ],
)
def test_template_fields(template: str, received: dt.datetime | None, expected: str) -> None:
    one = fax(THREE_PAGES, pages=3, remote_id="Evil/../etc/x", received=received)
    assert render_name(template, one, tz=UTC) == expected


def test_received_is_local_time_in_names() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert render_name("{received:%H%M}.tif", fax(), tz=berlin) == "0059.tif"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+4930555000", "+4930555000"),
        ("030 555000", "+4930555000"),
        ("004930555000", "+4930555000"),
        ("+49 (30) 555-000", "+4930555000"),
        ("", ""),
        ("unknown", "unknown"),
    ],
)
def test_called_numbers_are_read_as_e164(raw: str, expected: str) -> None:
    assert canonical_number(raw, "DE") == expected


def test_routes_by_called_number_fall_back_to_output() -> None:
    config = InboundConfig(
        output=Path("/in"),
        pdf=False,
        routes=(
            InboundRoute("+494012345", Path("/in/sales"), True, ("sales@example.com",)),
            InboundRoute("+4930555000", Path("/in/berlin"), False),
        ),
    )
    sales = destination(config, "040 12345", "DE")
    assert (sales.folder, sales.pdf, sales.mail_to, sales.route) == (
        Path("/in/sales"), True, ("sales@example.com",), "+494012345")
    assert destination(config, "+4930555000", "DE").folder == Path("/in/berlin")
    other = destination(config, "+4989111", "DE")
    assert (other.folder, other.pdf, other.route) == (Path("/in"), False, None)


def test_index_rows_defuse_spreadsheet_formulas() -> None:
    row = index_row(fax(remote_id="=HYPERLINK(\"x\")", originator="+4940123456"), "a.tif")
    assert row == ["7", "+4930555000", "2024-01-31 23:59:58", "+4940123456", "'=HYPERLINK(\"x\")",
                   "1", "a.tif"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a", {"a": 1}),
        ("a,b:3", {"a": 1, "b": 3}),
        (" a , b:2 ,", {"a": 1, "b": 2}),
        ("", {}),
    ],
)
def test_crash_point_specs(spec: str, expected: dict[str, int]) -> None:
    assert crashpoints.parse(spec) == expected


@pytest.mark.parametrize("spec", ["a:x", "a:0"])
def test_bad_crash_point_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="FAXBRIDGE_CRASH_AT"):
        crashpoints.parse(spec)


def test_crash_points_do_nothing_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crashpoints.ENVIRONMENT_VARIABLE, raising=False)
    crashpoints.crash_point("inbound.after_rename")
    monkeypatch.setenv(crashpoints.ENVIRONMENT_VARIABLE, "other.point,inbound.after_rename:1000")
    crashpoints.crash_point("inbound.after_rename")  # the first of 1000 hits: alive
    crashpoints.reset()
