"""The mail tables: mails the SMTP edge accepted (its spool), and the outgoing mail queue (the relay's).

``smtp_mails``: a row is written after the mail's bytes are fsynced in the spool and before the
SMTP client hears 250, so an accepted mail is never lost; it stays 'spooled' until its jobs are
submitted (or it is rejected), which may happen again after a crash — idempotently, since each job
is keyed by ``<mail key>:<part>``.

``mail_outbox``: every mail faxbridge sends (reports, received faxes) waits here until the relay
took it; an optional unique key makes queueing idempotent for callers that may run twice.
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faxbridge.errors import JournalError
from faxbridge.journal.codec import run_script, to_datetime

if TYPE_CHECKING:
    import datetime as dt

    from faxbridge.journal import Journal

_MAILS_SCHEMA = """
CREATE TABLE IF NOT EXISTS smtp_mails (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL UNIQUE,     -- spool name, also the prefix of the jobs' source_ref
    state         TEXT NOT NULL,            -- spooled, processed, rejected
    sender        TEXT NOT NULL,            -- envelope sender (MAIL FROM)
    report_to     TEXT,                     -- where reports go: only a sender that passed authorisation
    auth_user     TEXT,                     -- SMTP AUTH login, if any
    peer          TEXT NOT NULL DEFAULT '',
    recipients    TEXT NOT NULL,            -- JSON [[address, job type, E.164 or ''], …]
    size          INTEGER NOT NULL,
    spool_path    TEXT NOT NULL,
    archive_path  TEXT,
    subject       TEXT NOT NULL DEFAULT '',
    jobs          TEXT NOT NULL DEFAULT '[]',  -- JSON list of job ids
    problems      TEXT NOT NULL DEFAULT '[]',  -- JSON list of [recipient, sentence]
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    received_at   REAL NOT NULL,
    processed_at  REAL,
    finished_at   REAL                      -- every job final, documents cleaned up
);
CREATE INDEX IF NOT EXISTS smtp_mails_by_state ON smtp_mails (state);
"""

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT UNIQUE,             -- caller's idempotency key (NULL: none)
    state           TEXT NOT NULL,           -- queued, sent, failed
    path            TEXT NOT NULL,           -- the message bytes, as sent
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,           -- JSON list
    subject         TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      REAL NOT NULL,
    sent_at         REAL
);
CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (state, next_attempt_at);
"""


class MailState(enum.StrEnum):
    SPOOLED = "spooled"  # durably accepted; jobs not (all) submitted yet
    PROCESSED = "processed"  # jobs submitted (some parts may have been refused)
    REJECTED = "rejected"  # nothing could be sent; the sender got a report


class OutboxState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # refused permanently by the relay, or too old


@dataclass(frozen=True)
class SpooledMail:
    id: int
    key: str
    state: MailState
    sender: str
    report_to: str | None
    auth_user: str | None
    peer: str
    recipients: tuple[tuple[str, str, str], ...]
    size: int
    spool_path: Path
    archive_path: Path | None
    subject: str
    jobs: tuple[int, ...]
    problems: tuple[tuple[str, str], ...]
    attempts: int
    last_error: str
    received_at: dt.datetime | None
    processed_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def path(self) -> Path:
        """Where the mail's bytes are now: the archive once moved there, else the spool."""
        if self.archive_path is not None and (
            self.archive_path.exists() or not self.spool_path.exists()
        ):
            return self.archive_path
        return self.spool_path


@dataclass(frozen=True)
class OutgoingMail:
    id: int
    key: str | None
    state: OutboxState
    path: Path
    mail_from: str
    rcpt_to: tuple[str, ...]
    subject: str
    attempts: int
    next_attempt_at: float
    last_error: str
    created_at: float
    sent_at: float | None = field(default=None)


class MailsTable:
    """The SMTP edge's spool index."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _MAILS_SCHEMA)

    def add(
        self,
        *,
        key: str,
        sender: str,
        report_to: str | None,
        auth_user: str | None,
        peer: str,
        recipients: list[tuple[str, str, str]],
        size: int,
        spool_path: Path,
        durable: bool = True,  # False: the caller awaits sync_async() before its 250
    ) -> SpooledMail:
        now = self._journal.clock()
        with self._journal.transaction(durable=durable) as db:  # 250 / "queued" promise this
            db.execute(
                "INSERT INTO smtp_mails (key, state, sender, report_to, auth_user, peer, recipients,"
                " size, spool_path, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key, MailState.SPOOLED.value, sender, report_to, auth_user, peer,
                    json.dumps(recipients, ensure_ascii=False), size, str(spool_path), now,
                ),
            )
        return self.get(key)

    def get(self, key: str) -> SpooledMail:
        found = self.find(key)
        if found is None:
            raise JournalError(f"no mail {key} in the journal")
        return found

    def find(self, key: str) -> SpooledMail | None:
        rows = self._journal.query("SELECT * FROM smtp_mails WHERE key = ?", (key,))
        return _mail(rows[0]) if rows else None

    def spooled(self, limit: int = 100, *, spool_dir: Path | None = None) -> list[SpooledMail]:
        """Mails still to process; ``spool_dir``: only those stored there (with nodes sharing the
        journal, each node processes the mails in its own spool)."""
        sql, params = "SELECT * FROM smtp_mails WHERE state = ?", (MailState.SPOOLED.value,)
        if spool_dir is not None:
            sql, params = sql + _UNDER.format(column="spool_path"), params + _under(spool_dir)
        rows = self._journal.query(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [_mail(r) for r in rows]

    def unfinished(self) -> list[SpooledMail]:
        """Processed mails whose jobs may still be running (their documents are still kept)."""
        rows = self._journal.query(
            "SELECT * FROM smtp_mails WHERE state != ? AND finished_at IS NULL ORDER BY id",
            (MailState.SPOOLED.value,),
        )
        return [_mail(r) for r in rows]

    def job_ids(self, key: str, source: str) -> list[int]:
        """The jobs already submitted for a mail (their source_ref is "<key>:<part>")."""
        prefix = f"{key}:"
        rows = self._journal.query(
            "SELECT id FROM jobs WHERE source = ? AND substr(source_ref, 1, ?) = ? ORDER BY id",
            (source, len(prefix), prefix),
        )
        return [r["id"] for r in rows]

    def note_failure(self, key: str, error: str) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE smtp_mails SET attempts = attempts + 1, last_error = ? WHERE key = ?",
                (error[:500], key),
            )

    def mark_processed(
        self,
        key: str,
        *,
        state: MailState,
        subject: str,
        jobs: list[int],
        problems: list[tuple[str, str]],
        archive_path: Path | None,
    ) -> SpooledMail:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE smtp_mails SET state = ?, subject = ?, jobs = ?, problems = ?,"
                " archive_path = ?, processed_at = ? WHERE key = ?",
                (
                    state.value, subject, json.dumps(jobs),
                    json.dumps(problems, ensure_ascii=False),
                    str(archive_path) if archive_path else None, self._journal.clock(), key,
                ),
            )
        return self.get(key)

    def mark_finished(self, key: str) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE smtp_mails SET finished_at = ? WHERE key = ? AND finished_at IS NULL",
                (self._journal.clock(), key),
            )

    def purge(self, older_than: float) -> int:
        """Retention: forget finished mails received before ``older_than`` (epoch seconds)."""
        with self._journal.transaction() as db:
            cursor = db.execute(
                "DELETE FROM smtp_mails WHERE finished_at IS NOT NULL AND received_at < ?",
                (older_than,),
            )
            return cursor.rowcount


class OutboxTable:
    """The relay's durable queue of outgoing mail."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _OUTBOX_SCHEMA)

    def add(
        self,
        *,
        key: str | None,
        path: Path,
        mail_from: str,
        rcpt_to: list[str],
        subject: str,
        now: float | None = None,
    ) -> tuple[OutgoingMail, bool]:
        """Queue a message whose bytes are already at ``path``, due at ``now`` (default: the
        journal's clock); returns (row, created). The same ``key`` returns the row queued before."""
        now = self._journal.clock() if now is None else now
        with self._journal.transaction(durable=True) as db:  # 250 / "queued" promise this
            if key is not None:
                row = db.execute("SELECT * FROM mail_outbox WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    return _outgoing(row), False
            cursor = db.execute(
                "INSERT INTO mail_outbox (key, state, path, mail_from, rcpt_to, subject,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    key, OutboxState.QUEUED.value, str(path), mail_from,
                    json.dumps(rcpt_to, ensure_ascii=False), subject[:300], now, now,
                ),
            )
            row = db.execute(
                "SELECT * FROM mail_outbox WHERE id = ?", (cursor.fetchone()[0],)
            ).fetchone()
            return _outgoing(row), True

    def by_key(self, key: str) -> OutgoingMail | None:
        rows = self._journal.query("SELECT * FROM mail_outbox WHERE key = ?", (key,))
        return _outgoing(rows[0]) if rows else None

    def get(self, mail_id: int) -> OutgoingMail:
        rows = self._journal.query("SELECT * FROM mail_outbox WHERE id = ?", (mail_id,))
        if not rows:
            raise JournalError(f"no outgoing mail {mail_id} in the journal")
        return _outgoing(rows[0])

    def due(self, now: float, limit: int = 50, *, folder: Path | None = None) -> list[OutgoingMail]:
        """Mails due for delivery; ``folder``: only those whose bytes are there (this node's)."""
        sql = "SELECT * FROM mail_outbox WHERE state = ? AND next_attempt_at <= ?"
        params: tuple = (OutboxState.QUEUED.value, now)
        if folder is not None:
            sql, params = sql + _UNDER.format(column="path"), params + _under(folder)
        rows = self._journal.query(sql + " ORDER BY next_attempt_at, id LIMIT ?", (*params, limit))
        return [_outgoing(r) for r in rows]

    def in_state(self, state: OutboxState) -> list[OutgoingMail]:
        rows = self._journal.query(
            "SELECT * FROM mail_outbox WHERE state = ? ORDER BY id", (state.value,)
        )
        return [_outgoing(r) for r in rows]

    def claim(self, mail_id: int, now: float, lease: float) -> bool:
        """Take a due mail for one delivery attempt; False if another process took it first.

        The daemon and a `faxbridge` command may both deliver from the same queue; the lease
        (pushing next_attempt_at ahead) keeps them from sending one mail twice, and expires if
        the claimant dies mid-conversation.
        """
        with self._journal.transaction() as db:
            cursor = db.execute(
                "UPDATE mail_outbox SET next_attempt_at = ? WHERE id = ? AND state = ?"
                " AND next_attempt_at <= ?",
                (now + lease, mail_id, OutboxState.QUEUED.value, now),
            )
            return cursor.rowcount == 1

    def mark_sent(self, mail_id: int) -> None:
        self._set(mail_id, state=OutboxState.SENT.value, sent_at=self._journal.clock(), last_error="")

    def mark_retry(self, mail_id: int, error: str, next_attempt_at: float) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE id = ? AND state = ?",
                (error[:500], next_attempt_at, mail_id, OutboxState.QUEUED.value),
            )

    def mark_failed(self, mail_id: int, error: str) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE mail_outbox SET state = ?, attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (OutboxState.FAILED.value, error[:500], mail_id),
            )

    def purge_sent(self, older_than: float) -> list[Path]:
        """Forget mails sent before ``older_than``; returns their files for the caller to delete."""
        with self._journal.transaction() as db:
            rows = db.execute(
                "SELECT path FROM mail_outbox WHERE state = ? AND sent_at < ?",
                (OutboxState.SENT.value, older_than),
            ).fetchall()
            db.execute(
                "DELETE FROM mail_outbox WHERE state = ? AND sent_at < ?",
                (OutboxState.SENT.value, older_than),
            )
        return [Path(r["path"]) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        rows = self._journal.query("SELECT state, COUNT(*) AS n FROM mail_outbox GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def _set(self, mail_id: int, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._journal.transaction() as db:
            db.execute(
                f"UPDATE mail_outbox SET {assignments} WHERE id = ?", (*fields.values(), mail_id)
            )


# A path column under a folder (both backends; no LIKE, whose wildcards a path may contain).
_UNDER = " AND substr({column}, 1, ?) = ?"


def _under(folder: Path) -> tuple[int, str]:
    prefix = f"{folder}{os.sep}"
    return len(prefix), prefix


def _mail(row: sqlite3.Row) -> SpooledMail:
    return SpooledMail(
        id=row["id"],
        key=row["key"],
        state=MailState(row["state"]),
        sender=row["sender"],
        report_to=row["report_to"],
        auth_user=row["auth_user"],
        peer=row["peer"],
        recipients=tuple(tuple(r) for r in json.loads(row["recipients"])),  # type: ignore[misc]
        size=row["size"],
        spool_path=Path(row["spool_path"]),
        archive_path=Path(row["archive_path"]) if row["archive_path"] else None,
        subject=row["subject"],
        jobs=tuple(json.loads(row["jobs"])),
        problems=tuple(tuple(p) for p in json.loads(row["problems"])),  # type: ignore[misc]
        attempts=row["attempts"],
        last_error=row["last_error"],
        received_at=to_datetime(row["received_at"]),
        processed_at=to_datetime(row["processed_at"]),
        finished_at=to_datetime(row["finished_at"]),
    )


def _outgoing(row: sqlite3.Row) -> OutgoingMail:
    return OutgoingMail(
        id=row["id"],
        key=row["key"],
        state=OutboxState(row["state"]),
        path=Path(row["path"]),
        mail_from=row["mail_from"],
        rcpt_to=tuple(json.loads(row["rcpt_to"])),
        subject=row["subject"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def mail_tables(journal: Journal) -> tuple[MailsTable, OutboxTable]:
    """Both tables, created in the journal if they are not there yet."""
    mails, outbox = MailsTable(journal), OutboxTable(journal)
    journal.register_table(mails)
    journal.register_table(outbox)
    return mails, outbox


__all__ = [
    "MailState",
    "MailsTable",
    "OutboxState",
    "OutboxTable",
    "OutgoingMail",
    "SpooledMail",
    "mail_tables",
]
