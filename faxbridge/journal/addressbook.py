"""The address book: names ↔ numbers (E.164) the office knows; the verified-recipient rule reads it."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faxbridge.errors import FaxbridgeError
from faxbridge.journal.codec import run_script

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS address_book (
    number     TEXT PRIMARY KEY,   -- E.164 (or a mail address for e-mail jobs)
    name       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS address_book_by_name ON address_book (name);
"""


@dataclass(frozen=True)
class Contact:
    name: str
    number: str


class AddressBookTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    def put(self, contacts: Iterable[Contact]) -> int:
        """Add or rename contacts, in one transaction; returns how many were written."""
        count = 0
        with self._journal.transaction() as db:
            for contact in contacts:
                db.execute(
                    "INSERT INTO address_book (number, name, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (number) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
                    (contact.number, contact.name, self._journal.clock()),
                )
                count += 1
        return count

    def remove(self, number: str) -> bool:
        with self._journal.transaction() as db:
            return db.execute("DELETE FROM address_book WHERE number = ?", (number,)).rowcount > 0

    def name_for(self, number: str) -> str | None:
        rows = self._journal.query("SELECT name FROM address_book WHERE number = ?", (number,))
        return rows[0]["name"] if rows else None

    def contains(self, number: str) -> bool:
        return self.name_for(number) is not None

    def all(self) -> list[Contact]:
        rows = self._journal.query("SELECT name, number FROM address_book ORDER BY name, number")
        return [Contact(r["name"], r["number"]) for r in rows]


def parse_csv(text: str, normalize: Callable[[str], str]) -> list[Contact]:
    """Rows of ``name,number`` (a header row naming them is skipped; ';' works too, as spreadsheets
    in Germany write it). Every bad row is named in one error, and nothing is imported then."""
    dialect = csv.excel
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")  # type: ignore[assignment]
    except csv.Error:
        pass
    contacts: list[Contact] = []
    problems: list[str] = []
    for line, row in enumerate(csv.reader(io.StringIO(text), dialect), 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line == 1 and [c.lower() for c in cells[:2]] == ["name", "number"]:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            problems.append(f"line {line}: expected name,number")
            continue
        try:
            contacts.append(Contact(cells[0], normalize(cells[1])))
        except FaxbridgeError as exc:
            problems.append(f"line {line}: {cells[1]!r}: {getattr(exc, 'reason', exc)}")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise FaxbridgeError(f"address book not imported: {shown}")
    return contacts
