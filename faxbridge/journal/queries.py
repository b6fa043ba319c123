"""Read queries of the operator console: filtered job lists with keyset pagination, counts, timelines.

Only reads (and the indexes they need); the tables and their writes stay in jobs.py and inbound.py.
Keyset pagination (``before=<id>``) costs the same on page 1 and page 1000, where OFFSET would
read and drop every row before the page.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faxbridge.journal.codec import run_script
from faxbridge.journal.inbound import InboundRecord, _record
from faxbridge.journal.jobs import _job
from faxbridge.model import Job, JobState

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_by_source_id ON jobs (source, id);
CREATE INDEX IF NOT EXISTS jobs_by_state_id ON jobs (state, id);
CREATE INDEX IF NOT EXISTS inbound_by_stored ON inbound (stored_at);
CREATE TABLE IF NOT EXISTS console_login_failures (
    at    REAL NOT NULL,
    name  TEXT NOT NULL,
    peer  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_by_at ON console_login_failures (at);
CREATE TABLE IF NOT EXISTS console_faxes_read (
    user    TEXT NOT NULL,
    fax_id  INTEGER NOT NULL,
    at      REAL NOT NULL,
    PRIMARY KEY (user, fax_id)
);
"""

# Who submitted a job, whatever the edge: the console user, the mail sender, the hotfolder file's label.
_SENDER = "COALESCE(json_extract(meta, '$.user'), json_extract(meta, '$.sender'), '')"


# Search by number or file name anywhere in a job: a trigram full-text index (SQLite's FTS5), so
# that LIKE '%4012345%' is an index lookup, not a scan of every job's JSON. Kept by triggers, so
# every writer of the jobs table (CLI, other edges) keeps it current without knowing of it.
_SEARCH_TEXT = ("{row}.request || ' ' || COALESCE(json_extract({row}.meta, '$.label'), '') || ' '"
                " || COALESCE(json_extract({row}.meta, '$.user'), json_extract({row}.meta, '$.sender'), '')")
_SEARCH = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS jobs_search USING fts5(text, tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS jobs_search_insert AFTER INSERT ON jobs BEGIN"
    f" INSERT INTO jobs_search (rowid, text) VALUES (new.id, {_SEARCH_TEXT.format(row='new')}); END",
    "CREATE TRIGGER IF NOT EXISTS jobs_search_update AFTER UPDATE OF request, meta ON jobs BEGIN"
    f" UPDATE jobs_search SET text = {_SEARCH_TEXT.format(row='new')} WHERE rowid = new.id; END",
    "CREATE TRIGGER IF NOT EXISTS jobs_search_delete AFTER DELETE ON jobs BEGIN"
    " DELETE FROM jobs_search WHERE rowid = old.id; END",
    # Jobs journaled before the index existed (or while it was dropped).
    f"INSERT INTO jobs_search (rowid, text) SELECT id, {_SEARCH_TEXT.format(row='jobs')} FROM jobs"
    " WHERE id > COALESCE((SELECT MAX(rowid) FROM jobs_search), 0)",
)
_MIN_TRIGRAM = 3  # a trigram index finds only strings of three characters or more


class ConsoleIndexes:
    """The indexes, the search index and the login-failure table, created with ``journal.register_table``."""

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _INDEXES)
        if not _fts5(db):
            return  # searches scan instead (an SQLite built without FTS5)
        for statement in _SEARCH:
            db.execute(statement)


def _fts5(db: sqlite3.Connection) -> bool:
    return bool(db.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')").fetchone()[0])


def _has_search_index(journal: Journal) -> bool:
    return bool(journal.query("SELECT 1 FROM sqlite_master WHERE name = 'jobs_search'"))


@dataclass(frozen=True)
class JobFilter:
    """What the job list shows; empty fields do not filter."""

    state: str = ""
    source: str = ""
    sender: str = ""
    recipient: str = ""
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive
    search: str = ""  # a number or a file name, anywhere in the request or the label
    owner: str | None = None  # only the jobs this console user submitted (role sender)


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    what: str
    detail: str
    user: str = ""


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _epoch(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp()


def list_jobs(journal: Journal, where: JobFilter, *, before: int | None = None, limit: int = 50) -> list[Job]:
    """At most ``limit`` jobs matching ``where``, newest first, with ids below ``before``."""
    clauses: list[str] = []
    params: list[object] = []
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    if where.state:
        clauses.append("state = ?")
        params.append(where.state)
    if where.source:
        clauses.append("source = ?")
        params.append(where.source)
    if where.owner is not None:
        clauses.append("json_extract(meta, '$.user') = ?")
        params.append(where.owner)
    indexed = _has_search_index(journal)
    for term, exact in ((where.sender, f"{_SENDER} LIKE ? ESCAPE '\\'"),
                        (where.recipient, "json_extract(request, '$.recipients') LIKE ? ESCAPE '\\'")):
        if term:
            if indexed and len(term.replace("%", "")) >= _MIN_TRIGRAM:
                # The index finds the few candidates; the exact test keeps those where the term
                # is in the right field.
                clauses.append("id IN (SELECT rowid FROM jobs_search WHERE text LIKE ?)")
                params.append(f"%{term.replace('%', '')}%")
            clauses.append(exact)
            params.append(_like(term))
    if where.since is not None:
        clauses.append("created_at >= ?")
        params.append(_epoch(where.since))
    if where.until is not None:
        clauses.append("created_at < ?")
        params.append(_epoch(where.until + dt.timedelta(days=1)))
    if where.search:
        words = where.search.replace("%", "")
        if len(words) >= _MIN_TRIGRAM and indexed:
            clauses.append("id IN (SELECT rowid FROM jobs_search WHERE text LIKE ?)")
            params.append(f"%{words}%")  # '_' stays a one-character wildcard: it matches itself too
        else:
            clauses.append("(request LIKE ? ESCAPE '\\' OR json_extract(meta, '$.label') LIKE ? ESCAPE '\\')")
            params += [_like(where.search)] * 2
    sql = "SELECT * FROM jobs"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = journal.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
    return [_job(row) for row in rows]


def counts_since(journal: Journal, since: float) -> dict[str, int]:
    """Jobs created since ``since`` (epoch seconds) by state."""
    rows = journal.query(
        "SELECT state, COUNT(*) AS n FROM jobs WHERE created_at >= ? GROUP BY state", (since,))
    return {row["state"]: row["n"] for row in rows}


def recent_errors(journal: Journal, limit: int = 8) -> list[tuple[int, float, str]]:
    """The latest jobs with an error in words: (job id, when, the error)."""
    rows = journal.query(
        "SELECT id, updated_at, last_error FROM jobs WHERE last_error != '' ORDER BY updated_at DESC LIMIT ?",
        (limit,))
    return [(row["id"], row["updated_at"], row["last_error"]) for row in rows]


def sources(journal: Journal) -> list[str]:
    return [row["source"] for row in journal.query("SELECT DISTINCT source FROM jobs ORDER BY source")]


def timeline(journal: Journal, job_id: int) -> list[Event]:
    """The job's state changes and (when the audit table is there) the operators' actions, in order."""
    events = [
        Event(dt.datetime.fromtimestamp(row["at"], dt.timezone.utc),
              f"{row['from_state'] or '—'} → {row['to_state']}", row["detail"])
        for row in journal.query(
            "SELECT at, from_state, to_state, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,))
    ]
    audit = getattr(journal, "audit", None)
    if audit is not None:
        for entry in audit.for_job(job_id):
            events.append(Event(dt.datetime.fromtimestamp(entry.at, dt.timezone.utc), entry.action,
                                entry.detail, entry.user))
    return sorted(events, key=lambda event: event.at)


def list_inbound(journal: Journal, *, before: int | None = None, limit: int = 50) -> list[InboundRecord]:
    """Received faxes on disk (stored or deleted at FAX.de), newest first, keyset by FaxId."""
    sql = "SELECT * FROM inbound WHERE state IN ('stored', 'deleted')"
    params: tuple[object, ...] = ()
    if before is not None:
        sql += " AND fax_id < ?"
        params = (before,)
    return [_record(row) for row in journal.query(sql + " ORDER BY fax_id DESC LIMIT ?", (*params, limit))]


def inbound_fax(journal: Journal, fax_id: int) -> InboundRecord | None:
    rows = journal.query("SELECT * FROM inbound WHERE fax_id = ? AND state IN ('stored', 'deleted')", (fax_id,))
    return _record(rows[0]) if rows else None


def inbound_waiting(journal: Journal, since: float) -> int:
    """Faxes received since ``since``."""
    rows = journal.query(
        "SELECT COUNT(*) AS n FROM inbound WHERE state IN ('stored', 'deleted') AND stored_at >= ?", (since,))
    return int(rows[0]["n"])


def mark_read(journal: Journal, user: str, fax_id: int) -> None:
    """``user`` has opened the fax (read/unread is per console user)."""
    with journal.transaction(durable=False) as db:  # lost in a crash: the fax shows as unread again
        db.execute("INSERT OR IGNORE INTO console_faxes_read (user, fax_id, at) VALUES (?, ?, ?)",
                   (user, fax_id, journal.clock()))


def read_by(journal: Journal, user: str, fax_ids: list[int]) -> set[int]:
    """Which of ``fax_ids`` ``user`` has opened."""
    if not fax_ids:
        return set()
    rows = journal.query(
        f"SELECT fax_id FROM console_faxes_read WHERE user = ? AND fax_id IN ({','.join('?' * len(fax_ids))})",
        (user, *fax_ids))
    return {row["fax_id"] for row in rows}


def unread_count(journal: Journal, user: str) -> int:
    """Received faxes on disk that ``user`` has not opened yet."""
    rows = journal.query(
        "SELECT COUNT(*) AS n FROM inbound WHERE state IN ('stored', 'deleted') AND fax_id NOT IN"
        " (SELECT fax_id FROM console_faxes_read WHERE user = ?)", (user,))
    return int(rows[0]["n"])


def upload_folders(journal: Journal, source: str) -> set[str]:
    """The upload folders (meta ``uploads``) of ``source``'s jobs still in the journal."""
    rows = journal.query(
        "SELECT json_extract(meta, '$.uploads') AS folder FROM jobs WHERE source = ?"
        " AND json_extract(meta, '$.uploads') IS NOT NULL", (source,))
    return {row["folder"] for row in rows}


def held_jobs(journal: Journal, owner: str | None = None) -> list[Job]:
    """Jobs waiting for an approver, oldest first (none while the hold stage is not built in)."""
    held = getattr(JobState, "HELD", None)
    if held is None:
        return []
    sql = "SELECT * FROM jobs WHERE state = ?"
    params: tuple[object, ...] = (held.value,)
    if owner is not None:
        sql += " AND json_extract(meta, '$.user') = ?"
        params += (owner,)
    return [_job(row) for row in journal.query(sql + " ORDER BY id", params)]


# -- login failures (the console's rate limit; kept in the journal so a restart does not reset it) --

def record_login_failure(journal: Journal, name: str, peer: str) -> None:
    with journal.transaction(durable=False) as db:
        now = journal.clock()
        db.execute("INSERT INTO console_login_failures (at, name, peer) VALUES (?, ?, ?)", (now, name[:200], peer))
        # Old failures no longer count: keep the table small.
        db.execute("DELETE FROM console_login_failures WHERE at < ?", (now - 86400,))


def login_failures(journal: Journal, name: str, peer: str, since: float) -> tuple[int, int]:
    """Failures since ``since``: (for this user name, from this peer)."""
    rows = journal.query(
        "SELECT SUM(name = ?) AS by_name, SUM(peer = ?) AS by_peer FROM console_login_failures WHERE at >= ?",
        (name, peer, since))
    return int(rows[0]["by_name"] or 0), int(rows[0]["by_peer"] or 0)


def clear_login_failures(journal: Journal, name: str) -> None:
    with journal.transaction(durable=False) as db:
        db.execute("DELETE FROM console_login_failures WHERE name = ?", (name,))
