"""The crash points the campaign dies at: the table in crashpoints.py is the code's, no more, no less."""

from __future__ import annotations

import re
from pathlib import Path

from faxbridge.crashpoints import POINTS

PACKAGE = Path(__file__).resolve().parents[2] / "faxbridge"


def test_every_crash_point_in_the_code_is_in_the_table_and_the_other_way_round() -> None:
    used: dict[str, list[str]] = {}
    for source in PACKAGE.rglob("*.py"):
        if source.name == "crashpoints.py":  # its docstring shows examples
            continue
        for name in re.findall(r"""crash_point\(\s*["']([\w.]+)["']\s*\)""", source.read_text()):
            used.setdefault(name, []).append(source.name)
    assert set(used) == set(POINTS)
    assert all(len(places) == 1 for places in used.values()), used
    assert all(description for description in POINTS.values())
