"""The result-code table against the provider's own description (docs/FAXDE-API.md, a copy of the spec)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faxbridge.faxde import codes as faxde_codes
from faxbridge.faxde.codes import Outcome

SPEC = Path(__file__).resolve().parents[1] / "docs" / "FAXDE-API.md"


def spec_tables() -> dict[str, dict[int, str]]:
    """Every "Results <Operation>:" table: code → sentence, as the spec writes them."""
    tables: dict[str, dict[int, str]] = {}
    current: str | None = None
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^\W*Results (\w+)\W*$", line.strip())
        if heading:
            current = heading.group(1)
            tables[current] = {}
            continue
        if current is None:
            continue
        if line.startswith("#") or line.startswith("---"):
            current = None if tables[current] else current
            continue
        row = re.match(r"^\s*(-?\d+(?:,-?\d+)*)\t(.+?)\s*$", line)
        if row:
            for code in row.group(1).split(","):
                tables[current][int(code)] = row.group(2)
    return tables


def test_the_spec_has_a_result_table_for_each_operation() -> None:
    assert set(spec_tables()) == set(faxde_codes.OPERATIONS)


@pytest.mark.parametrize("operation", faxde_codes.OPERATIONS)
def test_the_table_matches_the_spec_code_for_code(operation: str) -> None:
    spec = spec_tables()[operation]
    ours = {code: entry.sentence for code, entry in faxde_codes.RESULT_CODES[operation].items()}
    assert ours == spec


@pytest.mark.parametrize("operation", faxde_codes.OPERATIONS)
def test_every_error_tells_the_user_what_to_do(operation: str) -> None:
    for entry in faxde_codes.RESULT_CODES[operation].values():
        if entry.outcome not in (Outcome.OK, Outcome.PENDING):
            assert entry.action, f"{operation} {entry.code} has no advice"


def test_exactly_one_success_code_per_operation() -> None:
    for operation, table in faxde_codes.RESULT_CODES.items():
        assert [e.code for e in table.values() if e.outcome is Outcome.OK] == [0], operation


def test_an_undocumented_code_is_never_taken_for_success() -> None:
    entry = faxde_codes.lookup("SendJob", 12345)
    assert entry.outcome is Outcome.PERMANENT and "12345" in entry.sentence
