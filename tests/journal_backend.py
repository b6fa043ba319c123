"""Which journal backend the tests run against: SQLite, or PostgreSQL with FAXBRIDGE_TEST_JOURNAL=postgresql.

The core suites open their journals through ``open_journal`` and write configs with
``journal_config()``, so one run proves the behaviour on SQLite and another (``make test`` does
both) on PostgreSQL, each test in a fresh database of the session's throwaway cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from faxbridge.journal import Journal

BACKEND = os.environ.get("FAXBRIDGE_TEST_JOURNAL", "sqlite")
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"FAXBRIDGE_TEST_JOURNAL: expected sqlite or postgresql, got {BACKEND!r}")
ON_POSTGRESQL = BACKEND == "postgresql"

# What SQLite alone can show (its files, WAL, fsync counting): skipped on the PostgreSQL run,
# whose own tests are in test_journal_postgres.py.
sqlite_only = pytest.mark.skipif(ON_POSTGRESQL, reason="about the SQLite file itself")

_server: Any = None  # the session's PostgresServer, set by conftest on the PostgreSQL run
_database: str | None = None  # this test's database, made on first use


def begin_test(server: Any) -> None:
    global _server, _database
    _server, _database = server, None


def _url() -> str:
    global _database
    if _database is None:
        _database = _server.create_database()
    return _server.url(_database)


def open_journal(state_dir: Path, **kwargs: Any) -> Journal:
    """The test's journal for ``state_dir`` on the backend of this run (the same one each call)."""
    if not ON_POSTGRESQL:
        return Journal.open(state_dir, **kwargs)
    return Journal.open(state_dir, url=_url(), password=_server.password_file.read_text().strip(), **kwargs)


def journal_config() -> dict[str, Any]:
    """The config file's ``journal:`` keys for this run's backend (none for SQLite)."""
    if not ON_POSTGRESQL:
        return {}
    return {"url": _url(), "password_file": str(_server.password_file)}
