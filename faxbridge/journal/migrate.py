"""Moving a SQLite journal into PostgreSQL (`faxbridge journal migrate --to postgresql://…`).

Every table of the SQLite file is copied — the journal's own and those the edges registered (mail
spool, outbox, and any added later), with their ids — in one PostgreSQL transaction from one SQLite
read snapshot, so the copy is whole or absent. The tables are created from the SQLite file's own
schema text, translated as the PostgreSQL journal translates every statement. Afterwards each
table's row count and highest id are compared on both sides; a difference is an error.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from faxbridge.errors import JournalError
from faxbridge.journal import Journal
from faxbridge.journal.postgres import Connection, PostgresJournal

_BATCH = 1000


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def migrate_to_postgresql(
    sqlite_path: Path,
    url: str,
    *,
    password: str | None = None,
    state_dir: Path,
    progress: Callable[[Copied], None] = lambda copied: None,
) -> list[Copied]:
    """Copy the SQLite journal at ``sqlite_path`` into the (empty) PostgreSQL journal at ``url``.

    Stop the daemon first: what it journals after the snapshot would stay behind in SQLite.
    """
    if not sqlite_path.is_file():
        raise JournalError(f"no SQLite journal at {sqlite_path}")
    # Bring the source to the current schema first, as the daemon would at its next start.
    Journal.open(sqlite_path.parent, url=sqlite_path).close()
    target = PostgresJournal.connect(url, password=password, state_dir=state_dir)
    try:
        with closing(sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)) as source:
            source.execute("BEGIN")  # one read snapshot for every table
            tables = _tables_in_order(source)
            with target.transaction() as db:
                for name, sql in tables:
                    db.execute(_if_not_exists(sql, "TABLE"))
                for (table, sql) in source.execute(
                    "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                ):
                    if table in dict(tables):
                        db.execute(_if_not_exists(sql, "INDEX"))
                for name, _sql in tables:
                    if name != "meta" and db.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone():
                        raise JournalError(
                            f"the journal {target.location} already holds {name}: migrate only into"
                            " an empty database"
                        )
                copied = []
                for name, _sql in tables:
                    rows = _copy_table(source, db, name)
                    copied.append(Copied(name, rows))
                    progress(copied[-1])
                _restart_identities(db)
                _verify(source, db, [name for name, _sql in tables])
            source.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the SQLite journal {sqlite_path}: {exc}") from exc
    finally:
        target.close()
    return copied


def _tables_in_order(source: sqlite3.Connection) -> list[tuple[str, str]]:
    """(name, CREATE TABLE text) of every table, each after the tables it references."""
    rows = source.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    # SQLite's own index tables (the console's full-text search: a virtual table and its shadow
    # tables) are not copied: they index the jobs, and the console runs on SQLite only for now.
    virtual = [name for name, sql in rows if sql.upper().startswith("CREATE VIRTUAL")]
    found = {
        name: sql for name, sql in rows
        if name not in virtual and not any(name.startswith(f"{v}_") for v in virtual)
    }
    ordered: list[tuple[str, str]] = []

    def visit(name: str, seen: tuple[str, ...] = ()) -> None:
        if any(name == done for done, _sql in ordered) or name in seen:
            return
        for referenced in re.findall(r"REFERENCES\s+\"?(\w+)", found[name], re.I):
            if referenced in found and referenced != name:
                visit(referenced, (*seen, name))
        ordered.append((name, found[name]))

    for name in sorted(found):
        visit(name)
    return ordered


def _if_not_exists(sql: str, kind: str) -> str:
    """SQLite keeps a table's text without "IF NOT EXISTS"; the journal may have made it already."""
    return re.sub(
        rf"^\s*CREATE\s+(UNIQUE\s+)?{kind}\s+(?!IF\s+NOT\s+EXISTS)",
        lambda m: f"CREATE {m.group(1) or ''}{kind} IF NOT EXISTS ",
        sql, count=1, flags=re.I,
    )


def _copy_table(source: sqlite3.Connection, db: Connection, name: str) -> int:
    columns = [row[1] for row in source.execute(f"PRAGMA table_info({name})")]
    listed = ", ".join(columns)
    placeholders = ", ".join("?" * len(columns))
    conflict = " ON CONFLICT DO NOTHING" if name == "meta" else ""  # the target wrote its version
    insert = f"INSERT INTO {name} ({listed}) VALUES ({placeholders}){conflict}"
    cursor = source.execute(f"SELECT {listed} FROM {name} ORDER BY rowid")
    count = 0
    while batch := cursor.fetchmany(_BATCH):
        db.executemany(insert, batch)
        count += len(batch)
    return count


def _restart_identities(db: Connection) -> None:
    """Copied rows kept their ids; new rows must continue after the highest one."""
    identities = db.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in identities:
        db.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX({column}), 0) + 1, false)"
            f" FROM {table}",
            (table, column),
        )


def _verify(source: sqlite3.Connection, db: Connection, tables: list[str]) -> None:
    for name in tables:
        if name == "meta":
            continue
        expected = source.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
        found = db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
        if expected != found:
            raise JournalError(f"{name}: {expected} row(s) in SQLite but {found} copied; nothing was kept")


__all__ = ["Copied", "migrate_to_postgresql"]
