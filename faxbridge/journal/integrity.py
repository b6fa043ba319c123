"""Checking a journal file (`faxbridge journal check`) and copying it while the daemon runs (`backup`).

``check`` runs SQLite's own checks (``PRAGMA integrity_check``, ``foreign_key_check``) and then the
journal's invariants — states that cannot be combined, files a pending job or fax still needs — and
returns each finding as one plain sentence. ``backup`` uses SQLite's online backup API: one step, so
the copy is a single consistent snapshot while the daemon keeps writing (WAL readers do not block
the writer); the copy is made self-contained (no -wal file), verified, fsynced, then renamed into
place, so a backup file is either whole and checked or not there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from faxbridge.errors import JournalError, disk_full
from faxbridge.journal import JOURNAL_NAME, SCHEMA_VERSION
from faxbridge.model import FINAL_STATES, JobState

_FINAL = frozenset(s.value for s in FINAL_STATES)
# States a job reaches only after FAX.de gave it a JobId.
_NEEDS_JOB_ID = frozenset({JobState.SUBMITTED, JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED})
# States whose SendJob (first or reconciling) is still to come: their documents must be there.
_NEEDS_DOCUMENTS = frozenset({JobState.HELD, JobState.QUEUED, JobState.SUBMITTING, JobState.UNKNOWN})
# States that are only reached through 'submitting', so at least one attempt was counted.
_ATTEMPTED = frozenset({JobState.SUBMITTING, JobState.SUBMITTED, JobState.UNKNOWN, JobState.CONFIRMED,
                        JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED})
_MAX_FINDINGS_PER_KIND = 20  # a journal broken everywhere is reported readably, not row by row


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    jobs: int


def journal_path(state_dir: Path) -> Path:
    return Path(state_dir) / JOURNAL_NAME


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection: no migration, no writes of ours (Journal.open would create and migrate)."""
    if not path.is_file():
        raise JournalError(f"there is no journal at {path}")
    try:
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from exc
    db.row_factory = sqlite3.Row
    with closing(db):
        yield db


def check(path: Path) -> list[str]:
    """Everything wrong with the journal file at ``path``, one sentence each; [] when it is sound."""
    with _connect(path) as db:
        try:
            findings = _sqlite_checks(db)
            if findings:  # a damaged file: its rows cannot be trusted enough to judge them
                return findings
            return _schema(db) or _invariants(db)
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed" …
            return [f"SQLite cannot read {path}: {exc}"]


def _sqlite_checks(db: sqlite3.Connection) -> list[str]:
    findings = [f"SQLite integrity check: {row[0]}" for row in db.execute("PRAGMA integrity_check")
                if row[0] != "ok"]
    for row in db.execute("PRAGMA foreign_key_check"):
        findings.append(f"{row[0]} row {row[1]} refers to a row of {row[2]} that does not exist")
    return findings


def _schema(db: sqlite3.Connection) -> list[str]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"meta", "jobs", "job_events", "inbound"} - tables
    if missing:
        return [f"not a faxbridge journal, or an incomplete one: no table {', '.join(sorted(missing))}"]
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return ["the journal does not say which schema version it has (meta.schema_version)"]
    if int(row[0]) > SCHEMA_VERSION:
        return [f"the journal has schema {row[0]}, newer than this faxbridge knows ({SCHEMA_VERSION})"]
    return []


def _invariants(db: sqlite3.Connection) -> list[str]:
    findings: list[str] = []
    findings += _limited(_job_findings(db))
    findings += _limited(_inbound_findings(db))
    findings += _limited(_mail_findings(db))
    return findings


def _limited(found: Iterator[str]) -> list[str]:
    result = []
    for n, finding in enumerate(found):
        if n == _MAX_FINDINGS_PER_KIND:
            result.append("… and more of the same kind (showing the first "
                          f"{_MAX_FINDINGS_PER_KIND})")
            break
        result.append(finding)
    return result


def _job_findings(db: sqlite3.Connection) -> Iterator[str]:
    last_events = {
        r["job_id"]: r["to_state"]
        for r in db.execute(
            "SELECT job_id, to_state FROM job_events WHERE id IN"
            " (SELECT MAX(id) FROM job_events GROUP BY job_id)"
        )
    }
    for row in db.execute("SELECT * FROM jobs ORDER BY id"):
        job = f"job {row['id']}"
        try:
            state = JobState(row["state"])
        except ValueError:
            yield f"{job} is in state {row['state']!r}, which faxbridge does not know"
            continue
        final = state.value in _FINAL
        if final and row["finished_at"] is None:
            yield f"{job} is {state} (final) but has no finish time"
        if not final and row["finished_at"] is not None:
            yield f"{job} is {state} (not final) but has a finish time"
        if row["reported_at"] is not None and not final:
            yield f"{job} is {state} (not final) but is marked as reported"
        if state in _NEEDS_JOB_ID and row["faxde_job_id"] is None:
            yield f"{job} is {state} but has no FAX.de JobId"
        if state in _ATTEMPTED and row["attempts"] < 1:
            yield f"{job} is {state} but no SendJob attempt is counted"
        last = last_events.get(row["id"])
        if last is None:
            yield f"{job} has no history (job_events)"
        elif last != state.value:
            yield f"{job} is {state}, but its last recorded transition went to {last}"
        try:
            request = json.loads(row["request"])
            documents = [Path(entry[1]) for entry in request["documents"]]
        except (ValueError, KeyError, TypeError):
            yield f"{job}: its request cannot be read"
            continue
        if state in _NEEDS_DOCUMENTS:
            for document in documents:
                if not document.is_file():
                    yield f"{job} is {state} and still needs {document}, which is missing"


def _inbound_findings(db: sqlite3.Connection) -> Iterator[str]:
    known = {"writing", "stored", "deleted", "quarantined"}
    for row in db.execute("SELECT fax_id, state, path, deleted_at FROM inbound ORDER BY fax_id"):
        fax = f"received fax {row['fax_id']}"
        if row["state"] not in known:
            yield f"{fax} is in state {row['state']!r}, which faxbridge does not know"
        elif row["state"] == "deleted" and row["deleted_at"] is None:
            yield f"{fax} is deleted on FAX.de but has no deletion time"
        elif row["state"] in ("stored", "quarantined") and not Path(row["path"]).is_file():
            # stored: DeleteReceived is still to come and would delete the only other copy;
            # quarantined: the operator is asked to look at this very file.
            yield f"{fax} is {row['state']}, but its file {row['path']} is missing"


def _mail_findings(db: sqlite3.Connection) -> Iterator[str]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "smtp_mails" in tables:
        for row in db.execute("SELECT key, spool_path, archive_path FROM smtp_mails WHERE state = 'spooled'"):
            places = [Path(p) for p in (row["spool_path"], row["archive_path"]) if p]
            if not any(p.is_file() for p in places):
                yield f"mail {row['key']} was accepted (250) and is not processed yet, but its stored copy {row['spool_path']} is missing"
    if "mail_outbox" in tables:
        for row in db.execute("SELECT id, path FROM mail_outbox WHERE state = 'queued'"):
            if not Path(row["path"]).is_file():
                yield f"outgoing mail {row['id']} waits to be sent, but its file {row['path']} is missing"


# -- backup ----------------------------------------------------------------------------------


def backup_target(dest: Path, now: dt.datetime | None = None) -> Path:
    """DEST itself, or inside an existing folder DEST a name with the time: journal-20261204-1530.sqlite3."""
    if dest.is_dir():
        stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        return dest / f"journal-{stamp}.sqlite3"
    return dest


def backup(source: Path, dest: Path) -> BackupResult:
    """Copy the journal at ``source`` to ``dest`` while it is in use; verified and durable.

    An older file at ``dest`` is replaced only by a copy that passed the checks.
    """
    target = backup_target(Path(dest))
    if not target.parent.is_dir():
        raise JournalError(f"cannot write the backup: the folder {target.parent} does not exist")
    if target.resolve() == source.resolve():
        raise JournalError("the backup would overwrite the journal itself; choose another place")
    partial = target.with_name(f".{target.name}.faxbridge-tmp")
    try:
        with _connect(source) as db:
            partial.unlink(missing_ok=True)
            with closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                # pages=-1: all pages in one step, under one read transaction: a consistent
                # snapshot however much the daemon writes meanwhile (a stepwise copy would start
                # over after every write by another connection).
                db.backup(copy, pages=-1)
                # Self-contained: the copy is one file, with no -wal beside it to lose.
                copy.execute("PRAGMA journal_mode=DELETE")
                problems = _sqlite_checks(copy)
                if problems:
                    raise JournalError(f"the backup copy failed its check: {'; '.join(problems)}")
                jobs = copy.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        _fsync(partial)
        os.replace(partial, target)
        _fsync(target.parent, directory=True)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        reason = f"the disk holding {target.parent} is full" if disk_full(exc) else str(exc)
        raise JournalError(f"cannot write the backup {target}: {reason}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(target, target.stat().st_size, int(jobs))


def _fsync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["BackupResult", "backup", "backup_target", "check", "journal_path"]
