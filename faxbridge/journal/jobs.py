"""The jobs table: every outbound job from the moment it is accepted from an edge until it is reported."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faxbridge.errors import DuplicateJobError, JournalError
from faxbridge.journal.codec import NO_LIMIT, run_script, request_from_json, request_to_json, to_datetime
from faxbridge.model import (
    ALLOWED_TRANSITIONS,
    Accepted,
    Job,
    JobState,
    JobStatusReport,
    SendRequest,
)

if TYPE_CHECKING:
    from faxbridge.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    state            TEXT NOT NULL,
    source           TEXT NOT NULL,          -- hotfolder, smtp, cli
    source_ref       TEXT NOT NULL,          -- the edge's own id for the input (unique per source)
    content_key      TEXT NOT NULL,          -- hash of documents, recipients, type, text
    request          TEXT NOT NULL,          -- the SendRequest as JSON
    meta             TEXT NOT NULL DEFAULT '{}',   -- the edge's own notes (original path, sender …)
    faxde_job_id     INTEGER,
    recipients_count INTEGER,
    page_count       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    polls            INTEGER NOT NULL DEFAULT 0,
    next_poll_at     REAL,
    last_error_code  INTEGER,
    last_error       TEXT NOT NULL DEFAULT '',
    send_result      TEXT NOT NULL DEFAULT '',
    status_file      BLOB,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    finished_at      REAL,
    reported_at      REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_source ON jobs (source, source_ref);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt_at, id);   -- due_for_submit, in order
CREATE INDEX IF NOT EXISTS jobs_by_content ON jobs (content_key, created_at);
CREATE TABLE IF NOT EXISTS job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at         REAL NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id);
"""

# A new job's columns that add() does not set, as _SCHEMA defaults them.
_NEW_ROW: dict[str, Any] = {
    "faxde_job_id": None, "recipients_count": None, "page_count": None, "attempts": 0, "polls": 0,
    "next_poll_at": None, "last_error_code": None, "last_error": "", "send_result": "",
    "status_file": None, "finished_at": None, "reported_at": None, "claimed_by": None,
}

# Jobs that do not count as "already sent" when the same content comes again.
_NOT_DUPLICATES = (JobState.REJECTED.value, JobState.CANCELLED.value)


@dataclass(frozen=True)
class Ambiguity:
    """A job whose SendJob outcome became unknown: the times that bound its reconciliation."""

    since: float  # the first request whose outcome is unknown left then (epoch seconds)
    last_sent: float  # the latest request (that one, or a reconciling re-send) left then
    resends: int  # reconciling re-sends begun since


class TransitionError(JournalError):
    """A state change the job's current state does not allow (a bug, or a race lost)."""


class JobsTable:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        run_script(db, _SCHEMA)

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        request: SendRequest,
        *,
        source: str,
        source_ref: str,
        content_key: str,
        meta: dict[str, Any] | None = None,
        duplicate_window: float = 0.0,
        durable: bool = True,
        hold: str | None = None,
    ) -> tuple[Job, bool]:
        """Journal a new job in state queued (held, with ``hold`` as the reason, when an approval
        rule holds it); returns (job, created).

        The same (source, source_ref) returns the existing job with created=False, so an edge that
        sees the same input twice (rescan, restart) never makes a second job. The same content
        within ``duplicate_window`` seconds raises DuplicateJobError.
        """
        now = self._journal.clock()
        with self._journal.transaction(durable=durable) as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE source = ? AND source_ref = ?", (source, source_ref)
            ).fetchone()
            if row is not None:
                return _job(row), False
            if duplicate_window > 0:
                twin = db.execute(
                    "SELECT id, created_at FROM jobs WHERE content_key = ? AND created_at >= ?"
                    f" AND state NOT IN {_NOT_DUPLICATES} ORDER BY id DESC LIMIT 1",
                    (content_key, now - duplicate_window),
                ).fetchone()
                if twin is not None:
                    raise DuplicateJobError(
                        twin["id"],
                        f"the same documents to the same recipients were submitted as job "
                        f"{twin['id']} recently; not sending them twice",
                    )
            state = JobState.QUEUED if hold is None else JobState.HELD
            written: dict[str, Any] = {
                "state": state.value, "source": source, "source_ref": source_ref,
                "content_key": content_key, "request": request_to_json(request),
                "meta": json.dumps(meta or {}, ensure_ascii=False),
                "next_attempt_at": now, "created_at": now, "updated_at": now,
            }
            cursor = db.execute(
                f"INSERT INTO jobs ({', '.join(written)}) VALUES ({', '.join('?' * len(written))})"
                " RETURNING id",
                tuple(written.values()),
            )
            job_id = int(cursor.fetchone()[0])
            _event(db, job_id, now, None, state, f"from {source}" if hold is None else f"from {source}, held: {hold}")
            self._journal.notify_jobs(db)
            # The row as written, the other columns at their defaults (_SCHEMA), without reading
            # it back.
            return _job({**_NEW_ROW, **written, "id": job_id}), True

    def release(self, job_id: int, detail: str) -> Job:
        """held → queued, due at once (an approver said yes)."""
        return self._move(job_id, JobState.QUEUED, detail, next_attempt_at=self._journal.clock())

    def held_reason(self, job_id: int) -> str:
        """Why a held job waits: the detail of the event that held it."""
        rows = self._journal.query(
            "SELECT detail FROM job_events WHERE job_id = ? AND to_state = ? ORDER BY id DESC LIMIT 1",
            (job_id, JobState.HELD.value),
        )
        detail = rows[0]["detail"] if rows else ""
        return detail.partition("held: ")[2] or detail

    def has_sent_to(self, address: str) -> bool:
        """Whether a job to ``address`` ever reached FAX.de (for the first-time approval rule)."""
        reached = tuple(s.value for s in (
            JobState.SUBMITTED, JobState.DELIVERED, JobState.PARTIAL, JobState.FAILED,
            JobState.CONFIRMED, JobState.UNKNOWN))
        # Each recipient of the request's JSON, as [address, reference]; spelled per backend.
        each, first = (
            ("jsonb_array_elements(CAST(jobs.request AS jsonb) -> 'recipients')", "r.value ->> 0")
            if self._journal.dialect == "postgresql" else
            ("json_each(jobs.request, '$.recipients')", "json_extract(r.value, '$[0]')")
        )
        rows = self._journal.query(
            f"SELECT 1 FROM jobs, {each} AS r"
            f" WHERE jobs.state IN ({','.join('?' * len(reached))})"
            f" AND {first} = ? LIMIT 1",
            (*reached, address),
        )
        return bool(rows)

    def begin_submit(
        self, job_id: int, *, durable: bool = True, request: SendRequest | None = None
    ) -> Job:
        """queued/unknown → submitting, before the SendJob request leaves (durable unless the
        caller syncs itself before sending). ``request``: what is sent from now on, journaled in
        the same transaction (a first attempt that adds our STATURL), so that every re-send is
        byte for byte the request that left first. The job is claimed by this node (``claimed_by``)
        while the request is in flight."""
        fields: dict[str, Any] = {} if request is None else {"request": request_to_json(request)}
        return self._move(job_id, JobState.SUBMITTING, "SendJob", attempts_plus=1, durable=durable,
                          claimed_by=self._journal.node_name, **fields)

    def mark_submitted(self, job_id: int, accepted: Accepted, next_poll_at: float) -> Job:
        """submitting → submitted; the FAX.de JobId lands in the same transaction."""
        return self._move(
            job_id, JobState.SUBMITTED, f"FAX.de JobId {accepted.faxde_job_id}",
            faxde_job_id=accepted.faxde_job_id, recipients_count=accepted.recipients_count,
            page_count=accepted.page_count, next_poll_at=next_poll_at, last_error="",
            last_error_code=None, durable=False,  # lost to a power cut: reconciled via -77
        )

    def mark_retry(self, job_id: int, error: str, code: int | None, next_attempt_at: float) -> Job:
        return self._move(
            job_id, JobState.QUEUED, error, last_error=error, last_error_code=code,
            next_attempt_at=next_attempt_at,
        )

    def mark_rejected(self, job_id: int, error: str, code: int | None = None) -> Job:
        return self._move(
            job_id, JobState.REJECTED, error, last_error=error, last_error_code=code, finished=True
        )

    def mark_unknown(self, job_id: int, error: str) -> Job:
        return self._move(job_id, JobState.UNKNOWN, error, last_error=error)

    def mark_confirmed(self, job_id: int) -> Job:
        return self._move(
            job_id, JobState.CONFIRMED,
            "FAX.de answered -77 to the reconciling re-send: it has the first request",
            finished=True, last_error="", last_error_code=-77,
        )

    def learn_job_id(self, job_id: int, faxde_job_id: int, detail: str, next_poll_at: float) -> Job:
        """A lost JobId found again (FAX.de's status callback). An unknown job becomes submitted and
        is polled from ``next_poll_at``; a confirmed one keeps its state and gets the JobId."""
        job = self.get(job_id)
        if job.state is JobState.UNKNOWN:
            # Compare-and-set: another process may have begun a re-send since the read above.
            return self._move(job_id, JobState.SUBMITTED, detail, faxde_job_id=faxde_job_id,
                              next_poll_at=next_poll_at, last_error="", last_error_code=None,
                              expected=JobState.UNKNOWN)
        if job.state is not JobState.CONFIRMED or job.faxde_job_id is not None:
            raise TransitionError(f"job {job_id} is {job.state}: no JobId to learn")
        with self._journal.transaction() as db:
            db.execute("UPDATE jobs SET faxde_job_id = ?, updated_at = ? WHERE id = ?",
                       (faxde_job_id, self._journal.clock(), job_id))
            _event(db, job_id, self._journal.clock(), JobState.CONFIRMED, JobState.CONFIRMED, detail)
        return self.get(job_id)

    def complete_report(self, job_id: int, report: JobStatusReport) -> Job:
        """A confirmed job's delivery report, once its JobId was found again: stored, and the job
        reported anew (its reporter writes the complete report over the one without results)."""
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE jobs SET send_result = ?, status_file = ?, reported_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (report.send_result, report.status_file, self._journal.clock(), job_id,
                 JobState.CONFIRMED.value),
            )
            _event(db, job_id, self._journal.clock(), JobState.CONFIRMED, JobState.CONFIRMED,
                   f"delivery report from FAX.de: {report.send_result or 'see the status file'}")
        return self.get(job_id)

    def mark_cancelled(self, job_id: int, detail: str = "cancelled") -> Job:
        return self._move(job_id, JobState.CANCELLED, detail, finished=True)

    def mark_finished(self, job_id: int, report: JobStatusReport) -> Job:
        state = report.final_state
        return self._move(
            job_id, state, report.send_result or state.value, send_result=report.send_result,
            status_file=report.status_file, finished=True, next_poll_at=None,
        )

    def record_poll(self, job_id: int, next_poll_at: float, error: str = "") -> None:
        """A JobStatus that found the job still running (or failed transiently)."""
        with self._journal.transaction(durable=False) as db:  # lost: the job is polled again
            db.execute(
                "UPDATE jobs SET polls = polls + 1, next_poll_at = ?, updated_at = ?,"
                " last_error = ? WHERE id = ? AND state = ?",
                (next_poll_at, self._journal.clock(), error, job_id, JobState.SUBMITTED.value),
            )

    def mark_reported(self, job_id: int) -> None:
        with self._journal.transaction() as db:
            db.execute(
                "UPDATE jobs SET reported_at = ? WHERE id = ?", (self._journal.clock(), job_id)
            )

    def update_meta(self, job_id: int, *, durable: bool = True, **changes: Any) -> Job:
        """Change keys of the edge's notes; ``durable=False``: the caller awaits sync_async()."""
        [job] = self.update_meta_many([(job_id, changes)], durable=durable)
        return job

    def update_meta_many(self, updates: Sequence[tuple[int, dict[str, Any]]], *, durable: bool = True) -> list[Job]:
        """update_meta for several jobs in one transaction (a burst of files: one commit, not n)."""
        jobs = []
        with self._journal.transaction(durable=durable) as db:
            for job_id, changes in updates:
                row = _row(db, job_id)
                meta = json.loads(row["meta"])
                meta.update(changes)
                written = dict(zip(row.keys(), row))
                written["meta"] = json.dumps(meta, ensure_ascii=False)
                db.execute("UPDATE jobs SET meta = ? WHERE id = ?", (written["meta"], job_id))
                jobs.append(_job(written))  # the row as written, without reading it back
        return jobs

    def recover_interrupted(self, lease: float | None = None, *, include_own: bool = True) -> list[Job]:
        """Jobs left in 'submitting' by a crash. Their SendJob may have reached FAX.de, so they
        become 'unknown' — never re-sent blindly.

        ``lease`` None (at start-up, one node): every such job. Otherwise only those of this node
        (a crash before this start) or of nodes whose heartbeat is older than ``lease`` seconds (a
        node that died mid-SendJob): a live node's sends in flight are its own. ``include_own``
        False: not this node's own (its periodic look at the others, while its sends run)."""
        sql = "SELECT id, claimed_by FROM jobs WHERE state = ?"
        params: tuple = (JobState.SUBMITTING.value,)
        if lease is not None:
            sql += (
                " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_by NOT IN"
                " (SELECT name FROM nodes WHERE state = 'running' AND heartbeat_at > ?))"
            )
            params += (self._journal.node_name if include_own else "", self._journal.clock() - lease)
            if not include_own:
                sql += " AND claimed_by != ?"
                params += (self._journal.node_name,)
        moved = []
        for row in self._journal.query(sql, params):
            owner = row["claimed_by"]
            why = ("faxbridge stopped while SendJob was in flight" if owner in (None, self._journal.node_name)
                   else f"node {owner} stopped while its SendJob was in flight")
            try:
                moved.append(self.mark_unknown(row["id"], f"{why}; FAX.de may have the job"))
            except TransitionError:
                continue  # another node finished it (or adopted it) meanwhile
        return moved

    def purge_finished(self, older_than: float, limit: int | None = None) -> int:
        """Retention: forget reported final jobs finished before ``older_than`` (epoch seconds),
        with their events; at most ``limit`` of them (a short transaction), None: all."""
        finals = tuple(s.value for s in JobState if s.is_final)
        with self._journal.transaction() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE"
                f" state IN ({','.join('?' * len(finals))})"
                " AND finished_at < ? AND reported_at IS NOT NULL ORDER BY id LIMIT ?)",
                (*finals, older_than, NO_LIMIT if limit is None else limit),
            )
            return cursor.rowcount

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        rows = self._journal.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JournalError(f"no job {job_id} in the journal")
        return _job(rows[0])

    def find(self, job_id: int) -> Job | None:
        rows = self._journal.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def by_source(self, source: str, source_ref: str) -> Job | None:
        rows = self._journal.query(
            "SELECT * FROM jobs WHERE source = ? AND source_ref = ?", (source, source_ref)
        )
        return _job(rows[0]) if rows else None

    def due_for_submit(self, now: float, limit: int = 1000) -> list[int]:
        """Ids of queued jobs whose next attempt is due, oldest first."""
        rows = self._journal.query(
            "SELECT id FROM jobs WHERE state = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (JobState.QUEUED.value, now, limit),
        )
        return [r["id"] for r in rows]

    def next_attempt_at(self) -> float | None:
        rows = self._journal.query(
            "SELECT MIN(next_attempt_at) AS t FROM jobs WHERE state = ?", (JobState.QUEUED.value,)
        )
        return rows[0]["t"] if rows else None

    def due_for_poll(self, now: float, limit: int = 500) -> list[Job]:
        rows = self._journal.query(
            "SELECT * FROM jobs WHERE state = ? AND (next_poll_at IS NULL OR next_poll_at <= ?)"
            " ORDER BY next_poll_at, id LIMIT ?",
            (JobState.SUBMITTED.value, now, limit),
        )
        return [_job(r) for r in rows]

    def any_unreported(self, source: str) -> bool:
        """Whether a job of ``source``, final or not yet, still owes its report."""
        return bool(self._journal.query(
            "SELECT 1 FROM jobs WHERE source = ? AND reported_at IS NULL LIMIT 1", (source,)
        ))

    def unreported(self, source: str | None = None) -> list[Job]:
        """Final jobs whose report (CSV, mail) has not been written yet."""
        finals = tuple(s.value for s in JobState if s.is_final)
        sql = (
            f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(finals))})"
            " AND reported_at IS NULL"
        )
        params: tuple = finals
        if source is not None:
            sql += " AND source = ?"
            params += (source,)
        return [_job(r) for r in self._journal.query(sql + " ORDER BY id", params)]

    def in_states(self, *states: JobState, source: str | None = None) -> list[Job]:
        sql = f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))})"
        params: tuple = tuple(s.value for s in states)
        if source is not None:
            sql += " AND source = ?"
            params += (source,)
        return [_job(r) for r in self._journal.query(sql + " ORDER BY id", params)]

    def recent(self, limit: int = 50) -> list[Job]:
        rows = self._journal.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [_job(r) for r in rows]

    def waiting_since(
        self, state: JobState, before: float, *, since_change: bool = False, limit: int = 20
    ) -> tuple[int, list[int]]:
        """How many jobs in ``state`` were created (``since_change``: last changed) before then,
        and the first ids (alerts)."""
        column = "updated_at" if since_change else "created_at"
        rows = self._journal.query(
            f"SELECT id, COUNT(*) OVER () AS n FROM jobs WHERE state = ? AND {column} <= ?"
            " ORDER BY id LIMIT ?",
            (state.value, before, limit),
        )
        return (rows[0]["n"] if rows else 0), [r["id"] for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        rows = self._journal.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def counts_by_state_and_type(self) -> dict[tuple[str, str], int]:
        rows = self._journal.query(
            f"SELECT state, {self._journal.json_field('request', 'job_type')} AS job_type, COUNT(*) AS n"
            " FROM jobs GROUP BY state, job_type"
        )
        return {(r["state"], r["job_type"]): r["n"] for r in rows}

    def oldest_unfinished_created_at(self) -> float | None:
        finals = tuple(s.value for s in JobState if s.is_final)
        rows = self._journal.query(
            f"SELECT MIN(created_at) AS t FROM jobs WHERE state NOT IN ({','.join('?' * len(finals))})",
            finals,
        )
        return rows[0]["t"] if rows else None

    def ambiguity(self, job_id: int) -> Ambiguity | None:
        """When the first SendJob request whose outcome is unknown left, and what came after it
        (None: no outcome of this job was ever unknown).

        Read from the durable 'submitting' events, each written and fsynced before its request
        left: a crash, a restart or a long stop cannot move these times, so the reconcile window
        counted from them cannot be stretched by anything that happens to the daemon."""
        rows = self._journal.query(
            # The latest 'submitting' before the first 'unknown', and the latest of all: by event
            # id, the order things happened in, not by time (a clock set back must not reorder).
            "SELECT"
            " (SELECT s.at FROM job_events s WHERE s.job_id = :id AND s.to_state = :submitting"
            "   AND s.id < first.id ORDER BY s.id DESC LIMIT 1) AS since,"
            " (SELECT s.at FROM job_events s WHERE s.job_id = :id AND s.to_state = :submitting"
            "   ORDER BY s.id DESC LIMIT 1) AS last_sent,"
            " (SELECT COUNT(*) FROM job_events s WHERE s.job_id = :id AND s.to_state = :submitting"
            "   AND s.id > first.id) AS resends"
            " FROM (SELECT MIN(id) AS id FROM job_events WHERE job_id = :id AND to_state = :unknown)"
            " AS first WHERE first.id IS NOT NULL",
            {"id": job_id, "submitting": JobState.SUBMITTING.value, "unknown": JobState.UNKNOWN.value},
        )
        if not rows or rows[0]["since"] is None:
            return None
        row = rows[0]
        return Ambiguity(since=row["since"], last_sent=row["last_sent"], resends=row["resends"])

    def events(self, job_id: int) -> list[tuple[str | None, str, str]]:
        rows = self._journal.query(
            "SELECT from_state, to_state, detail FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [(r["from_state"], r["to_state"], r["detail"]) for r in rows]

    # -- the one place a state changes -----------------------------------------------------

    def _move(
        self,
        job_id: int,
        to: JobState,
        detail: str,
        *,
        attempts_plus: int = 0,
        finished: bool = False,
        durable: bool = True,
        expected: JobState | None = None,
        **fields: Any,
    ) -> Job:
        now = self._journal.clock()
        with self._journal.transaction(durable=durable) as db:
            row = _row(db, job_id)
            current = JobState(row["state"])
            if expected is not None and current is not expected:
                raise TransitionError(f"job {job_id} is {current} now, not {expected}")
            if to not in ALLOWED_TRANSITIONS[current]:
                raise TransitionError(f"job {job_id}: {current} → {to} is not allowed")
            fields["state"] = to.value
            fields["updated_at"] = now
            if finished:
                fields["finished_at"] = now
            assignments = ", ".join(f"{name} = ?" for name in fields)
            db.execute(
                f"UPDATE jobs SET {assignments}, attempts = attempts + ? WHERE id = ?",
                (*fields.values(), attempts_plus, job_id),
            )
            _event(db, job_id, now, current, to, detail)
            # The row as just written, without reading it back.
            written = dict(zip(row.keys(), row))
            written.update(fields)
            written["attempts"] = row["attempts"] + attempts_plus
            return _job(written)


def _row(db: sqlite3.Connection, job_id: int) -> sqlite3.Row:
    row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JournalError(f"no job {job_id} in the journal")
    return row


def _event(
    db: sqlite3.Connection, job_id: int, at: float, from_state: JobState | None, to: JobState, detail: str
) -> None:
    db.execute(
        "INSERT INTO job_events (job_id, at, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, at, from_state.value if from_state else None, to.value, detail[:500]),
    )


def _job(row: sqlite3.Row | dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        state=JobState(row["state"]),
        source=row["source"],
        source_ref=row["source_ref"],
        request=request_from_json(row["request"]),
        content_key=row["content_key"],
        meta=json.loads(row["meta"]),
        faxde_job_id=row["faxde_job_id"],
        recipients_count=row["recipients_count"],
        page_count=row["page_count"],
        attempts=row["attempts"],
        polls=row["polls"],
        next_attempt_at=to_datetime(row["next_attempt_at"]),
        next_poll_at=to_datetime(row["next_poll_at"]),
        last_error_code=row["last_error_code"],
        last_error=row["last_error"],
        send_result=row["send_result"],
        status_file=row["status_file"] or b"",
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
        finished_at=to_datetime(row["finished_at"]),
        reported_at=to_datetime(row["reported_at"]),
    )
