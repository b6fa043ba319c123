"""The crash campaign's rig: a FAX.de simulator and a relay in this process, `faxbridge run` as a
subprocess that is killed again and again, a workload that keeps feeding it, and the checks of what
must hold once everything has settled.

The simulator and the relay outlive every daemon, as FAX.de and the office mail server would. Every
input gets content of its own (a marker in the PDF's title, in the TIFF's description), so what
FAX.de received can be counted per input: ``Simulator.jobs`` keeps the sha256 of every document of
every job it created.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import email
import email.policy
import hashlib
import io
import json
import os
import random
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

from faxbridge.crashpoints import ENVIRONMENT_VARIABLE, EXIT_STATUS, POINTS
from faxbridge.simulator import Fault, FaultKind, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

ROOT = Path(__file__).resolve().parents[2]

ACCOUNT = "12345"
# Canaries: distinctive, so a leak anywhere is found by a plain search.
FAXDE_PASSWORD = "FaxDe-Canary-9q7Zt!pw"
NUMBER = "+494012345678"  # folder A's documents name it in their file name
FIXED = "+493012345678"  # folder B's fixed recipient
SALES = "+494012345"  # inbound route with PDF and mail
SENDER = "alice@example.com"
FAX_DOMAIN = "fax.example.com"
MARK = "CHAOS-CONTENT"  # in every document's bytes, never in a name: must not reach logs or reports

FAULT_KINDS = (FaultKind.HTTP_500, FaultKind.SOAP_FAULT, FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER,
               FaultKind.DELAY)
TIMEOUT = 1.0  # faxbridge's read timeout; injected delays go past it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fault_rules(rate: float) -> list[Fault]:
    """Five kinds of failure whose union hits ``rate`` of all calls (each rule draws on its own)."""
    if rate <= 0:
        return []
    each = 1 - (1 - rate) ** (1 / len(FAULT_KINDS))
    return [Fault(kind, rate=each, seconds=TIMEOUT * 1.6 if kind is FaultKind.DELAY else 0.0)
            for kind in FAULT_KINDS]


# -- the relay: the office mail server that reports and inbound faxes go through -----------------


@dataclass
class RelaySink:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


class Relay:
    def __init__(self) -> None:
        self.port = free_port()
        self.sink = RelaySink()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def start(self) -> Relay:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


# -- what was put in ----------------------------------------------------------------------------


@dataclass
class Doc:
    folder: str  # "a" or "b"
    name: str
    sha: str
    sidecar: bool
    bad: str = ""  # what is wrong with it (it must end in failed/ with a reason, never at FAX.de)


def padded_pdf(tag: str, size: int) -> bytes:
    """A one-page PDF of about ``size`` bytes (an incompressible attachment makes the bulk)."""
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_metadata({"/Title": tag})
    writer.add_attachment("padding.bin", os.urandom(size))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def bad_document(n: int) -> tuple[bytes, str]:
    """Every few documents one that must be refused: (its bytes, a word of the reason)."""
    pdf = make_pdf(1, tag=f"{MARK}-bad-{n}")
    return [(b"", "empty"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 64 + f"{MARK}-{n}".encode(), "PNG"),
            (pdf[: len(pdf) // 2], "truncated")][n % 3]


@dataclass
class Mail:
    number: int
    subject: str
    sha: str  # of its PDF attachment
    wire: bytes
    acked: bool = False  # the daemon answered 250 (to this or an earlier attempt we know of)
    attempts: int = 0
    refused: str = ""  # a 5xx answer


@dataclass
class Fax:
    fax_id: int
    sha: str
    route: bool


@dataclass
class Ledger:
    docs: list[Doc] = field(default_factory=list)
    mails: list[Mail] = field(default_factory=list)
    faxes: list[Fax] = field(default_factory=list)


@dataclass
class Scale:
    """How big a campaign is. The quick one runs in `make test`; `make chaos` scales it up."""

    random_kills: int = 16  # daemon lives ended by SIGKILL at a random moment (besides one per crash point)
    fault_rate: float = 0.0  # of SOAP calls failing while the daemon is killed
    doc_every: float = 0.15  # seconds between documents (the two folders take turns)
    mail_every: float = 0.5
    fax_every: float = 0.8
    max_life: float = 2.5  # a random kill comes within this many seconds of the start
    point_wait: float = 5.0  # how long a life with a crash point may take to reach it
    settle_timeout: float = 60.0  # seconds without any progress before settling counts as stuck
    # How long FAX.de recognises an identical SendJob (-77), and the bridge's reconcile window
    # (None: the same). The long campaign uses a realistic minute; an hour hid late re-sends.
    provider_window: float = 4.0
    reconcile_window: float | None = None
    # After the lives, a crash loop this long: the daemon restarted and killed within a second or
    # two, again and again, with outages between, while re-sends of unknown jobs fall due.
    crash_loop: float = 0.0


@dataclass
class Figures:
    lives: int = 0
    random_kills: int = 0
    point_kills: int = 0
    points_hit: collections.Counter[str] = field(default_factory=collections.Counter)
    points_missed: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0
    crash_loop_lives: int = 0

    @property
    def kills(self) -> int:
        return self.random_kills + self.point_kills


class Campaign:
    """One campaign in ``work``: simulator, relay, config, workload, daemon lives, checks."""

    def __init__(self, work: Path, scale: Scale, seed: int, *, record_limit: int | None = None,
                 document_size: int = 0) -> None:
        """``document_size``: documents, mail attachments and faxes of about that many bytes
        (0: as small as they come)."""
        self.document_size = document_size
        self.work = work
        self.scale = scale
        self.seed = seed
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.figures = Figures()
        self.simulator = Simulator(
            account=ACCOUNT, password=FAXDE_PASSWORD, state_dir=work / "simulator",
            duplicate_window=scale.provider_window, polls_until_done=1, record_limit=record_limit,
        ).start()
        self.relay = Relay().start()
        self.smtp_port = free_port()
        self.folders = {"a": work / "in" / "a", "b": work / "in" / "b"}
        for folder in self.folders.values():
            folder.mkdir(parents=True)
        self.inbound_dirs = [work / "faxes" / "in", work / "faxes" / "sales"]
        self.state_dir = work / "state"
        self.logs = work / "logs"
        self.logs.mkdir()
        self.config_path = self._write_config()
        self.daemon: subprocess.Popen[bytes] | None = None
        self._workload: threading.Thread | None = None
        self._stop_workload = threading.Event()
        self._ledger_lock = threading.Lock()
        self._counter = 0
        self.workload_errors: list[str] = []

    # -- set-up -----------------------------------------------------------------------------

    def _write_config(self) -> Path:
        password = self.work / "faxde-password"
        password.write_text(FAXDE_PASSWORD + "\n")
        password.chmod(0o600)
        sim = self.simulator
        config = {
            "faxde": {
                "account": ACCOUNT, "password_file": str(password), "wsdl": sim.wsdl_url,
                "endpoint": sim.url, "timeout": f"{TIMEOUT}s", "connect_timeout": "1s",
                "retry": {"initial_delay": "100ms", "max_delay": "1s", "max_attempts": 12},
                "reconcile_window": f"{self.scale.reconcile_window or self.scale.provider_window}s",
            },
            "state_dir": str(self.state_dir),
            "status": {"interval": "200ms", "max_interval": "500ms"},
            "logging": {"level": "DEBUG"},
            "hotfolders": [
                {"path": str(self.folders["a"]), "settle_time": "100ms", "rescan_interval": "1s"},
                {"path": str(self.folders["b"]), "recipient": FIXED, "settle_time": "100ms",
                 "rescan_interval": "1s"},
            ],
            "inbound": {
                "output": str(self.inbound_dirs[0]), "interval": "300ms",
                "routes": [{"called_number": SALES, "output": str(self.inbound_dirs[1]), "pdf": True,
                            "mail_to": ["sales@example.com"]}],
            },
            "smtp": {
                "listen": f"127.0.0.1:{self.smtp_port}",
                "domains": {FAX_DOMAIN: "fax"},
                "allowed_senders": ["*@example.com"],
                "report_from": "faxbridge@example.com",
                "relay": f"127.0.0.1:{self.relay.port}",
                "rate_limit": None,
            },
        }
        path = self.work / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def close(self) -> None:
        self._stop_workload.set()
        if self._workload is not None:
            self._workload.join(30)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
        self.relay.stop()
        self.simulator.stop()

    # -- the workload -------------------------------------------------------------------------

    def _next(self) -> int:
        with self._ledger_lock:
            self._counter += 1
            return self._counter

    def drop_document(self) -> Doc:
        """A document renamed into a folder, as careful programs write them: whole at once."""
        n = self._next()
        which = "a" if n % 2 else "b"
        folder = self.folders[which]
        data = self._pdf(f"{MARK}-{self.seed}-doc-{n}", 1 + n % 2)
        bad = ""
        if n % 9 == 0:
            data, bad = bad_document(n // 9)
        if which == "a":
            name = f"{NUMBER}_Invoice {n}.pdf"
        else:
            name = f"Letter {n}.pdf"
        sidecar = which == "b" and n % 4 == 0
        if sidecar:  # written before its document, as the README allows
            (folder / f"Letter {n}.yaml").write_text(f"reference: REF-{n}\n")
        part = folder / f"{name}.part"
        part.write_bytes(data)
        os.rename(part, folder / name)
        doc = Doc(which, name, sha(data), sidecar, bad)
        with self._ledger_lock:
            self.ledger.docs.append(doc)
        return doc

    def new_mail(self) -> Mail:
        n = self._next()
        pdf = self._pdf(f"{MARK}-{self.seed}-mail-{n}")
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = f"{NUMBER}@{FAX_DOMAIN}"
        message["Subject"] = f"Chaos mail {n}"
        message["Message-ID"] = f"<chaos-{self.seed}-{n}@example.com>"
        message.set_content("Please find the document attached.\n")
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"Order {n}.pdf")
        mail = Mail(n, f"Chaos mail {n}", sha(pdf), message.as_bytes(policy=email.policy.SMTP))
        with self._ledger_lock:
            self.ledger.mails.append(mail)
        return mail

    def try_mail(self, mail: Mail) -> None:
        """One delivery attempt, as a mail server makes them: 250 → done; else try again later."""
        mail.attempts += 1
        try:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as client:
                client.sendmail(SENDER, [f"{NUMBER}@{FAX_DOMAIN}"], mail.wire)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                mail.refused = f"{exc.smtp_code} {exc.smtp_error!r}"
            return
        except (OSError, smtplib.SMTPException):
            return  # the daemon is down or died during the session: another attempt later
        mail.acked = True

    def add_fax(self) -> Fax:
        n = self._next()
        route = n % 3 == 0
        height = max(32, self.document_size // 216)  # 1728 dots a line: a fax page's width
        image = make_tiff(1 + n % 3, width=1728 if self.document_size else 64, height=height if self.document_size else 32,
                          tag=f"{MARK}-{self.seed}-fax-{n}")
        fax = self.simulator.add_inbound(
            image, called_number=SALES if route else None, originator=f"+49301234{n:04d}",
            remote_id=f"Sender {n}",
        )
        record = Fax(fax.fax_id, sha(image), route)
        with self._ledger_lock:
            self.ledger.faxes.append(record)
        return record

    def _pdf(self, tag: str, pages: int = 1) -> bytes:
        return padded_pdf(tag, self.document_size) if self.document_size else make_pdf(pages, tag=tag)

    def pending_mails(self) -> list[Mail]:
        with self._ledger_lock:
            return [m for m in self.ledger.mails if not m.acked and not m.refused]

    def start_workload(self) -> None:
        def run() -> None:
            rng = random.Random(self.seed + 1)
            next_doc = next_mail = next_fax = time.monotonic()
            while not self._stop_workload.is_set():
                now = time.monotonic()
                try:
                    if now >= next_doc:
                        self.drop_document()
                        next_doc = now + rng.uniform(0.5, 1.5) * self.scale.doc_every
                    if now >= next_fax:
                        self.add_fax()
                        next_fax = now + rng.uniform(0.5, 1.5) * self.scale.fax_every
                    if now >= next_mail:
                        self.new_mail()
                        next_mail = now + rng.uniform(0.5, 1.5) * self.scale.mail_every
                    for mail in self.pending_mails()[:3]:
                        self.try_mail(mail)
                except Exception as exc:  # surfaced by the test, never silently lost
                    self.workload_errors.append(f"{type(exc).__name__}: {exc}")
                self._stop_workload.wait(0.05)

        self._workload = threading.Thread(target=run, name="chaos-workload", daemon=True)
        self._workload.start()

    def stop_workload(self) -> None:
        self._stop_workload.set()
        if self._workload is not None:
            self._workload.join(30)
            self._workload = None

    # -- daemon lives --------------------------------------------------------------------------

    def start_daemon(self, crash_at: str | None = None, **environment: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.figures.lives += 1
        log = self.logs / f"life-{self.figures.lives:04d}.log"
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_VARIABLE} | environment
        if crash_at:
            env[ENVIRONMENT_VARIABLE] = crash_at
        with open(log, "wb") as out:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "faxbridge", "run", "-c", str(self.config_path)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        return self.daemon, log

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def random_life(self) -> None:
        process, log = self.start_daemon()
        time.sleep(self.rng.uniform(0.0, self.scale.max_life))
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited by itself ({process.returncode}): {tail(log)}")
        self.kill(process)
        self.figures.random_kills += 1

    def point_life(self, point: str, nth: int) -> bool:
        """A life that dies at ``point`` (its ``nth`` hit); True if it did within point_wait."""
        process, log = self.start_daemon(f"{point}:{nth}")
        try:
            process.wait(self.scale.point_wait)
        except subprocess.TimeoutExpired:
            self.kill(process)
            self.figures.random_kills += 1
            self.figures.points_missed[point] += 1
            return False
        text = log.read_text(errors="replace")
        if process.returncode != EXIT_STATUS or f"crash point {point} reached" not in text:
            raise AssertionError(f"the daemon exited with {process.returncode}, not at {point}: {tail(log)}")
        self.figures.point_kills += 1
        self.figures.points_hit[point] += 1
        return True

    def run_lives(self, points: list[str] | None = None) -> None:
        """Daemon lives ended by SIGKILL at random moments, and one at each crash point."""
        started = time.monotonic()
        self.simulator.set_faults(*fault_rules(self.scale.fault_rate), seed=self.seed)
        todo = list(points if points is not None else POINTS)
        self.rng.shuffle(todo)
        retries: collections.Counter[str] = collections.Counter()
        randoms = self.scale.random_kills
        while randoms or todo:
            if todo and (not randoms or self.rng.random() < len(todo) / (len(todo) + randoms)):
                point = todo.pop(0)
                nth = 1 if retries[point] else self.rng.randint(1, 3)
                if not self.point_life(point, nth) and retries[point] < 4:
                    retries[point] += 1
                    todo.append(point)
            else:
                randoms -= 1
                self.random_life()
        self.crash_loop()
        self.figures.seconds = time.monotonic() - started

    def crash_loop(self) -> None:
        """Restarts and kills for ``scale.crash_loop`` seconds — longer than the windows — mostly
        straight back up, sometimes after an outage of up to half a window: a re-send due in one
        life is cut short or falls into an outage, and the window must hold all the same."""
        ends = time.monotonic() + self.scale.crash_loop
        while time.monotonic() < ends:
            process, log = self.start_daemon()
            time.sleep(self.rng.uniform(0.2, 1.5))
            if process.poll() is not None:
                raise AssertionError(f"the daemon exited by itself ({process.returncode}): {tail(log)}")
            self.kill(process)
            self.figures.random_kills += 1
            self.figures.crash_loop_lives += 1
            # Mostly straight back up, as systemd's Restart= does; now and then a longer outage.
            long_outage = self.rng.random() < 0.2
            time.sleep(self.rng.uniform(0.0, self.scale.provider_window / 2 if long_outage else 1.0))

    # -- settling --------------------------------------------------------------------------------

    def settle(self, running: tuple[subprocess.Popen[bytes], Path] | None = None, *,
               keep_faults: bool = False) -> subprocess.Popen[bytes]:
        """A last life without crashes (and faults, unless ``keep_faults``), until every input has
        come to rest; then SIGTERM. ``running``: the life to settle in, else a new one."""
        if not keep_faults:
            self.simulator.clear_faults()
        process, log = running or self.start_daemon()
        # A backlog takes its time: the clock runs only while nothing moves.
        deadline = time.monotonic() + self.scale.settle_timeout
        reason: str | None = "?"
        progress: tuple[int, ...] = ()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the settling daemon exited ({process.returncode}): {tail(log)}")
            for mail in self.pending_mails():
                self.try_mail(mail)
            reason = self.unsettled()
            if reason is None:
                break
            now = self.progress()
            if now != progress:
                progress, deadline = now, time.monotonic() + self.scale.settle_timeout
            time.sleep(0.2)
        else:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            raise AssertionError(f"not settled after {self.scale.settle_timeout} s: {reason}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, tail(log)
        return process

    def progress(self) -> tuple[int, ...]:
        """Numbers that change while the daemon works through a backlog."""
        try:
            with journal_db(self.state_dir) as db:
                counts = db.execute(
                    "SELECT (SELECT COUNT(*) FROM jobs WHERE reported_at IS NOT NULL),"
                    " (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM inbound WHERE state = 'deleted'),"
                    " (SELECT COUNT(*) FROM smtp_mails WHERE finished_at IS NOT NULL)").fetchone()
        except sqlite3.Error:
            counts = ()
        return (*counts, len(self.pending_mails()))

    def unsettled(self) -> str | None:
        """What is still moving (None: nothing)."""
        if self.pending_mails():
            return f"{len(self.pending_mails())} mail(s) not yet accepted"
        for key, folder in self.folders.items():
            waiting = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
            if waiting:
                return f"folder {key} still holds {waiting[:3]}"
        if self.simulator.inbox:
            return f"{len(self.simulator.inbox)} fax(es) still at FAX.de"
        try:
            with journal_db(self.state_dir) as db:
                moving = db.execute(
                    "SELECT id, state, source FROM jobs WHERE state IN"
                    " ('queued','submitting','submitted') OR (reported_at IS NULL AND state NOT IN"
                    " ('unknown'))"
                ).fetchall()
                if moving:
                    return f"{len(moving)} job(s) not at rest, e.g. {tuple(moving[0])}"
                # A mail waits unfinished, rightly, while one of its jobs waits for the operator.
                spooled = db.execute(
                    "SELECT COUNT(*) FROM smtp_mails m WHERE (state = 'spooled' OR finished_at IS NULL)"
                    " AND NOT EXISTS (SELECT 1 FROM json_each(m.jobs) j JOIN jobs ON jobs.id = j.value"
                    " WHERE jobs.state = 'unknown')").fetchone()[0]
                if spooled:
                    return f"{spooled} mail(s) not finished"
                inbound = db.execute("SELECT COUNT(*) FROM inbound WHERE state != 'deleted'").fetchone()[0]
                if inbound:
                    return f"{inbound} fax(es) not deleted in the journal"
                hotfolder_jobs = db.execute("SELECT meta FROM jobs WHERE source = 'hotfolder'"
                                            " AND state != 'unknown'").fetchall()
                placed = sum(1 for (meta,) in hotfolder_jobs if json.loads(meta).get("placed"))
                if placed < len(hotfolder_jobs):
                    return "hotfolder files not yet placed"
        except sqlite3.Error as exc:
            return f"journal: {exc}"
        journaled = self._claims_in_journal()
        docs = len(self.ledger.docs)
        in_failed = sum(1 for f in self.folders.values() for p in (f / "failed").glob("*.pdf"))
        if journaled + in_failed < docs:
            return f"{docs - journaled - in_failed} document(s) neither journaled nor refused"
        return None

    def _claims_in_journal(self) -> int:
        with journal_db(self.state_dir) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE source = 'hotfolder'").fetchone()[0]


# -- reading the results ------------------------------------------------------------------------------


class journal_db:
    """The journal opened read-only (the daemon may be running)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "journal.sqlite3"

    def __enter__(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise sqlite3.OperationalError("no journal yet")
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Verdict:
    """What the checks found: the invariants' violations, and the figures."""

    problems: list[str] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def fail(self, problem: str) -> None:
        self.problems.append(problem)


SENT_STATES = {"delivered", "partial", "failed", "confirmed"}
MARKED_STATES = {"rejected", "cancelled", "unknown"}


def check_invariants(c: Campaign) -> Verdict:
    """Everything issue 8 asks of a settled campaign."""
    v = Verdict()
    sim_jobs = c.simulator.jobs
    at_faxde: collections.Counter[str] = collections.Counter(h for job in sim_jobs for h in job.file_sha256)
    with journal_db(c.state_dir) as db:
        db.row_factory = sqlite3.Row
        jobs = [dict(r) for r in db.execute("SELECT * FROM jobs")]
        inbound = {r["fax_id"]: dict(r) for r in db.execute("SELECT * FROM inbound")}
        mails = [dict(r) for r in db.execute("SELECT * FROM smtp_mails")]
    for job in jobs:
        job["meta"] = json.loads(job["meta"])
        v.counts[f"job {job['state']}"] += 1
        if job["state"] not in SENT_STATES | MARKED_STATES:
            v.fail(f"job {job['id']} ({job['source']}) is still {job['state']}")
        if job["state"] in MARKED_STATES and job["state"] != "unknown" and not job["last_error"]:
            v.fail(f"job {job['id']} is {job['state']} without a reason")
    _check_documents(c, v, jobs, at_faxde)
    _check_mails(c, v, jobs, mails, at_faxde)
    _check_faxes(c, v, inbound)
    _check_leftovers(c, v, jobs)
    _check_outgoing_mail(c, v, jobs, mails)
    _check_logs(c, v)
    return v


def _check_logs(c: Campaign, v: Verdict) -> None:
    """A traceback in any life's log is a bug (issue 14): kills leave none, faults must not."""
    for log in sorted(c.logs.glob("*.log")):
        text = log.read_text(errors="replace")
        count = text.count("Traceback (most recent call last)")
        if count:
            v.counts["tracebacks"] += count
            start = text.index("Traceback (most recent call last)")
            before = text.rfind("\n", 0, max(0, start - 1))
            v.fail(f"{log.name}: {count} traceback(s), the first: {text[before + 1:start + 1500]}")


def _check_outgoing_mail(c: Campaign, v: Verdict, jobs: list[dict[str, Any]], mails: list[dict[str, Any]]) -> None:
    """Every mail faxbridge owes someone is in its outbox: a report per final mail job, one per
    refused mail, one per fax of the route with mail_to. (Delivery itself may wait out a lease
    after a crash mid-conversation; what the relay got is counted.)"""
    with journal_db(c.state_dir) as db:
        queued = {key for (key,) in db.execute("SELECT key FROM mail_outbox WHERE key IS NOT NULL")}
    owed = [f"smtp-job:{j['id']}" for j in jobs if j["source"] == "smtp" and j["state"] in SENT_STATES | MARKED_STATES
            and j["state"] != "unknown"]
    owed += [f"smtp-rejected:{m['key']}" for m in mails if json.loads(m["problems"]) and m["report_to"]]
    owed += [f"inbound-fax:{f.fax_id}" for f in c.ledger.faxes if f.route]
    for key in owed:
        v.counts["mails owed"] += 1
        if key not in queued:
            v.fail(f"no mail queued for {key}")
            v.counts["lost"] += 1
    relayed = collections.Counter(
        email.message_from_bytes(data, policy=email.policy.default)["Message-ID"]
        for _, _, data in list(c.relay.sink.messages))
    v.counts["mails relayed"] = sum(relayed.values())
    v.counts["mails relayed twice"] = sum(1 for n in relayed.values() if n > 1)


def _check_documents(c: Campaign, v: Verdict, jobs: list[dict[str, Any]],
                     at_faxde: collections.Counter[str]) -> None:
    by_name = {}
    for job in jobs:
        if job["source"] == "hotfolder":
            key = (job["meta"]["folder"], job["meta"]["claim"]["key"])
            if key in by_name:
                v.fail(f"two jobs for one document: {key}")
            by_name[key] = job
    copies = {key: copies_by_area(folder) for key, folder in c.folders.items()}
    for doc in c.ledger.docs:
        folder = c.folders[doc.folder]
        found = copies[doc.folder].get(doc.sha, collections.Counter())
        sent, failed, claimed, here = (found[area] for area in ("sent", "failed", ".faxbridge", ""))
        paid = at_faxde[doc.sha]
        job = by_name.get((str(folder), doc.name))
        v.counts["documents"] += 1
        if doc.bad:
            v.counts["bad documents"] += 1
            error = folder / "failed" / (doc.name.rsplit(".", 1)[0] + ".error.txt")
            failed = int((folder / "failed" / doc.name).is_file())  # empty ones all look alike
            if job is not None or paid or failed != 1 or not error.is_file():
                v.fail(f"bad document {doc.name} ({doc.bad}): job {job and job['state']}, {paid} at FAX.de,"
                       f" {failed} in failed/, error file {error.is_file()}")
            elif doc.bad not in error.read_text():
                v.fail(f"bad document {doc.name}: the reason does not say {doc.bad!r}")
            continue
        if paid > 1:
            v.fail(f"{doc.folder}/{doc.name} reached FAX.de {paid} times")
            v.counts["duplicated"] += 1
        if sent + failed + claimed + here != 1:
            v.fail(f"{doc.folder}/{doc.name}: {sent} in sent/, {failed} in failed/, {claimed} claimed,"
                   f" {here} in the folder")
        if job is None:
            error = folder / "failed" / (doc.name.rsplit(".", 1)[0] + ".error.txt")
            if failed != 1 or not error.is_file():
                v.fail(f"{doc.folder}/{doc.name}: never journaled, and not in failed/ with a reason")
                v.counts["lost"] += 1
            else:
                v.counts["documents refused"] += 1
                v.fail(f"{doc.folder}/{doc.name} refused: {error.read_text().splitlines()[2]}")
            continue
        state = job["state"]
        if state in SENT_STATES:
            if paid != 1:
                v.fail(f"{doc.name}: job {job['id']} is {state} but FAX.de has it {paid} times")
                v.counts["lost" if paid == 0 else "duplicated"] += 1
            placed = job["meta"].get("placed") or {}
            if sent != 1 or Path(placed.get("dir", "")) != folder / "sent":
                v.fail(f"{doc.name}: job {job['id']} is {state}; sent/ holds {sent} copies, placed {placed}")
            stem = doc.name.rsplit(".", 1)[0] + placed.get("suffix", "")
            if not (folder / "sent" / f"{stem}.status.csv").is_file():
                v.fail(f"{doc.name}: no status report in sent/")
        elif state in ("rejected", "cancelled"):
            v.counts["documents marked failed"] += 1
            if paid:
                v.fail(f"{doc.name}: job {job['id']} is {state}, yet FAX.de has it")
            if failed != 1:
                v.fail(f"{doc.name}: job {job['id']} is {state}, but it is not in failed/")
        elif state == "unknown":
            v.counts["documents unknown"] += 1
            if claimed != 1:
                v.fail(f"{doc.name}: job {job['id']} is unknown, but its file is not kept in the claim")
    ours = {d.sha for d in c.ledger.docs}
    for folder in c.folders.values():
        for sub in ("sent", "failed"):
            for path in (folder / sub).glob("*.pdf") if (folder / sub).is_dir() else ():
                if sha(path.read_bytes()) not in ours:
                    v.fail(f"{path} is no document of the workload")


def _check_mails(c: Campaign, v: Verdict, jobs: list[dict[str, Any]], mails: list[dict[str, Any]],
                 at_faxde: collections.Counter[str]) -> None:
    smtp_jobs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for job in jobs:
        if job["source"] == "smtp":
            smtp_jobs[job["meta"]["subject"]].append(job)
    for mail in c.ledger.mails:
        v.counts["mails"] += 1
        paid = at_faxde[mail.sha]
        if mail.refused:
            v.fail(f"mail {mail.number} refused by the daemon: {mail.refused}")
            continue
        if paid > 1:
            v.fail(f"mail {mail.number} reached FAX.de {paid} times")
            v.counts["duplicated"] += 1
        own = smtp_jobs.get(mail.subject, [])
        states = [j["state"] for j in own]
        if any(s in SENT_STATES for s in states):
            if paid != 1:
                v.fail(f"mail {mail.number}: jobs {states}, but FAX.de has it {paid} times")
                v.counts["lost" if paid == 0 else "duplicated"] += 1
        elif any(s in MARKED_STATES for s in states):
            v.counts["mails marked"] += 1
        else:
            v.fail(f"mail {mail.number} (acked {mail.acked}, {mail.attempts} attempt(s)) has no job: {states}")
            v.counts["lost"] += 1
    for row in mails:
        problems = json.loads(row["problems"])
        # A mail accepted twice (its 250 lost to a kill, sent again) is refused as a duplicate.
        for _, problem in problems:
            if "submitted as job" not in problem:
                v.fail(f"mail {row['key']} refused: {problem}")
            else:
                v.counts["mails refused as duplicates"] += 1


def _check_faxes(c: Campaign, v: Verdict, inbound: dict[int, dict[str, Any]]) -> None:
    on_disk: dict[int, list[Path]] = collections.defaultdict(list)
    indexed: collections.Counter[int] = collections.Counter()
    for folder in c.inbound_dirs:
        if not folder.is_dir():
            continue
        for tif in folder.glob("*.tif"):
            fax_id = int(tif.stem.rsplit("_", 1)[1].split("-")[0])
            on_disk[fax_id].append(tif)
        index = folder / "received.csv"
        if index.exists():
            for row in csv.DictReader(io.StringIO(index.read_text(encoding="utf-8-sig"))):
                indexed[int(row["FaxId"])] += 1
    deletes: dict[int, list[float]] = collections.defaultdict(list)
    for call in c.simulator.calls_for("DeleteReceived"):
        if call.processed:
            deletes[call.params["FaxId"]].append(call.started_at.timestamp())
    if c.simulator.inbox:
        v.fail(f"{len(c.simulator.inbox)} fax(es) left at FAX.de")
    for fax in c.ledger.faxes:
        v.counts["faxes"] += 1
        files = on_disk.get(fax.fax_id, [])
        if len(files) != 1:
            v.fail(f"fax {fax.fax_id}: {len(files)} files on disk")
            v.counts["lost" if not files else "duplicated"] += 1
            continue
        tif = files[0]
        if sha(tif.read_bytes()) != fax.sha:
            v.fail(f"fax {fax.fax_id}: {tif} is not the fax FAX.de sent")
        if (tif.parent == c.inbound_dirs[1]) != fax.route:
            v.fail(f"fax {fax.fax_id} in the wrong folder {tif.parent}")
        if not tif.with_suffix(".json").is_file() or (fax.route and not tif.with_suffix(".pdf").is_file()):
            v.fail(f"fax {fax.fax_id}: sidecar or PDF missing")
        if indexed[fax.fax_id] != 1:
            v.fail(f"fax {fax.fax_id} indexed {indexed[fax.fax_id]} times in received.csv")
        row = inbound.get(fax.fax_id)
        if row is None or row["state"] != "deleted" or Path(row["path"]) != tif:
            v.fail(f"fax {fax.fax_id}: journal says {row and (row['state'], row['path'])}, disk {tif}")
        if not deletes.get(fax.fax_id):
            v.fail(f"fax {fax.fax_id} never deleted at FAX.de")
        elif min(deletes[fax.fax_id]) < tif.stat().st_ctime:
            v.fail(f"fax {fax.fax_id} deleted at FAX.de before its file was in place")
    known = {f.fax_id for f in c.ledger.faxes}
    for fax_id in set(on_disk) - known:
        v.fail(f"a fax file for unknown fax {fax_id}")


def _check_leftovers(c: Campaign, v: Verdict, jobs: list[dict[str, Any]]) -> None:
    """No temporary files in watched or output folders; claims only for jobs still unknown."""
    unknown_claims = {j["meta"]["claim_dir"] for j in jobs if j["source"] == "hotfolder" and j["state"] == "unknown"}
    for folder in c.folders.values():
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name != ".faxbridge":
                v.fail(f"left in the hotfolder: {path}")
            if path.is_file() and not path.name.startswith("."):
                v.fail(f"still waiting in the hotfolder: {path}")
        for sub in ("sent", "failed"):
            for path in (folder / sub).iterdir() if (folder / sub).is_dir() else ():
                if path.name.startswith(".") or path.suffix in (".tmp", ".part"):
                    v.fail(f"temporary file left: {path}")
        processing = folder / ".faxbridge" / "processing"
        for claim in processing.iterdir() if processing.is_dir() else ():
            if str(claim) not in unknown_claims:
                v.fail(f"claim left behind: {claim} ({sorted(p.name for p in claim.iterdir())})")
    for folder in [*c.inbound_dirs, c.state_dir / "mail-archive"]:
        for path in folder.rglob(".*") if folder.is_dir() else ():
            v.fail(f"temporary file left: {path}")
    # Every mail is finished — the spool holds nothing any more (its .eml archived, its documents
    # deleted) — but one whose job waits for the operator, whose documents must stay; the relay's
    # outbox only files the journal knows.
    waiting = {j["source_ref"].split(":")[0] for j in jobs if j["source"] == "smtp" and j["state"] == "unknown"}
    spool = c.state_dir / "spool"
    for path in spool.iterdir() if spool.is_dir() else ():
        if path.name not in waiting:
            v.fail(f"left in the spool: {path.name}")
    with journal_db(c.state_dir) as db:
        queued = {Path(p) for (p,) in db.execute("SELECT path FROM mail_outbox")}
    outbox = c.state_dir / "outbox"
    for path in outbox.iterdir() if outbox.is_dir() else ():
        if path not in queued:
            v.fail(f"left in the outbox: {path.name}")


def copies_by_area(folder: Path) -> dict[str, collections.Counter[str]]:
    """sha256 → how many PDFs with it lie in the folder itself (""), sent/, failed/, .faxbridge/."""
    found: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for path in folder.rglob("*.pdf"):
        if path.is_file():
            relative = path.relative_to(folder).parts
            found[sha(path.read_bytes())][relative[0] if len(relative) > 1 else ""] += 1
    return found


def files_under(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file())


def leaks(c: Campaign, secrets: list[str]) -> list[str]:
    """Where a secret or a document's content shows up in what faxbridge wrote for people to read:
    its log, reports, error files, sidecars, the journal's text columns, and the mails it sent."""
    needles = [s.encode() for s in secrets] + [MARK.encode()]
    found = []
    readable = [p for p in files_under(c.logs, *c.folders.values(), *c.inbound_dirs, c.state_dir / "mail-archive")
                if p.suffix in (".log", ".csv", ".txt", ".json")]
    for path in readable:
        data = path.read_bytes()
        for needle in needles:
            if needle in data:
                found.append(f"{needle.decode()} in {path}")
    with journal_db(c.state_dir) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            for row in db.execute(f"SELECT * FROM {table}"):
                for column, value in zip(columns, row):
                    text = value if isinstance(value, str) else ""
                    for needle in needles:
                        if needle.decode() in text:
                            found.append(f"{needle.decode()} in journal {table}.{column}")
    for _, _, data in list(c.relay.sink.messages):
        message = email.message_from_bytes(data, policy=email.policy.default)
        inbound_fax = str(message["Subject"]).startswith("Fax from")
        for part in message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            for needle in needles:
                # A received fax is mailed on purpose: its image carries the marker, nothing else may.
                if needle == MARK.encode() and inbound_fax and part.get_content_maintype() != "text":
                    continue
                if needle in payload or needle in data:
                    found.append(f"{needle.decode()} in the mail {message['Subject']!r}")
    return found


def summary(c: Campaign, v: Verdict) -> str:
    f = c.figures
    faults = collections.Counter(call.fault for call in c.simulator.calls if call.fault)
    jobs = v.counts["documents"] + v.counts["mails"]
    lines = [
        f"chaos campaign (seed {c.seed}): {f.lives} daemon lives"
        + (f", killed for {f.seconds:.0f} s" if f.kills else ""),
        f"  kills: {f.kills} ({f.random_kills} SIGKILL at random moments, {f.point_kills} at crash points;"
        f" {len(f.points_hit)} of {len(POINTS)} points hit; {f.crash_loop_lives} lives in a crash loop of"
        f" {c.scale.crash_loop:.0f} s)",
        f"  FAX.de's duplicate window {c.scale.provider_window:g} s, the bridge's reconcile window"
        f" {c.scale.reconcile_window or c.scale.provider_window:g} s",
        f"  jobs: {jobs} ({v.counts['documents']} documents of which {v.counts['bad documents']} bad,"
        f" {v.counts['mails']} mails);"
        f" faxes received: {v.counts['faxes']}",
        f"  faults injected: {sum(faults.values())} ({', '.join(f'{k} {n}' for k, n in sorted(faults.items())) or 'none'})",
        f"  job states: {', '.join(f'{k[4:]} {n}' for k, n in sorted(v.counts.items()) if k.startswith('job '))}",
        f"  mails owed (reports, refusals, faxes by mail): {v.counts['mails owed']};"
        f" relayed {v.counts['mails relayed']}, {v.counts['mails relayed twice']} of them twice"
        " (a kill between the relay's 250 and the journal)",
        f"  lost = {v.counts['lost']}, duplicated = {v.counts['duplicated']}, tracebacks = {v.counts['tracebacks']},"
        f" unknown awaiting the operator = {v.counts['documents unknown']},"
        f" mails refused as duplicates = {v.counts['mails refused as duplicates']}",
    ]
    if f.points_missed:
        lines.append(f"  points missed once: {dict(f.points_missed)}")
    return "\n".join(lines)


def scale_from_environment(default: Scale) -> Scale:
    """FAXBRIDGE_CHAOS_KILLS=200 (and FAXBRIDGE_CHAOS_FAULTS=0.3) make the long campaign."""
    kills = os.environ.get("FAXBRIDGE_CHAOS_KILLS")
    faults = os.environ.get("FAXBRIDGE_CHAOS_FAULTS")
    scale = default
    if kills:
        # A long run's inputs come slower: the daemon, killed every few seconds with FAX.de
        # failing often, must keep up on average or the backlog only grows.
        scale = dataclasses.replace(scale, random_kills=max(0, int(kills) - len(POINTS)),
                                    doc_every=0.4, mail_every=1.2, fax_every=2.0, settle_timeout=120.0,
                                    point_wait=10.0)
    if faults:
        scale = dataclasses.replace(scale, fault_rate=float(faults))
    # FAXBRIDGE_CHAOS_WINDOW=60 (FAX.de's duplicate window, s), FAXBRIDGE_CHAOS_RECONCILE=30 (the
    # bridge's, s; default: the same), FAXBRIDGE_CHAOS_CRASH_LOOP=75 (s of restarts and kills).
    window = os.environ.get("FAXBRIDGE_CHAOS_WINDOW")
    if window:
        scale = dataclasses.replace(scale, provider_window=float(window), crash_loop=float(window) * 1.25)
    reconcile = os.environ.get("FAXBRIDGE_CHAOS_RECONCILE")
    if reconcile:
        scale = dataclasses.replace(scale, reconcile_window=float(reconcile))
    loop = os.environ.get("FAXBRIDGE_CHAOS_CRASH_LOOP")
    if loop:
        scale = dataclasses.replace(scale, crash_loop=float(loop))
    return scale
