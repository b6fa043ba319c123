"""The command line: argparse glue over the core. Every error is one line and a non-zero exit code."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faxbridge import __version__, cli_outbox, logs
from faxbridge.errors import FaxbridgeError
from faxbridge.model import Document, Job, JobState, JobType, Recipient, SendRequest

if TYPE_CHECKING:
    from faxbridge.config import Config
    from faxbridge.documents import DocumentLimits

log = logging.getLogger("faxbridge")

DEFAULT_CONFIG = "/etc/faxbridge/config.yaml"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    logs.setup("DEBUG" if getattr(args, "verbose", False) else "WARNING" if args.command != "run" else "INFO")
    try:
        return int(args.handler(args) or 0)
    except FaxbridgeError as exc:
        print(f"faxbridge: {logs.scrub(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faxbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"faxbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Any, help: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if config:
            p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
        p.set_defaults(handler=handler)
        return p

    p = command("run", cmd_run, "run the daemon (hotfolders, SMTP, status, inbound)")

    command("hash-password", cmd_hash_password,
            "read a password on standard input; print its hash for console.users[].password_hash", config=False)
    p = command("api-token", cmd_api_token, "make an API token for a console user (printed once; stored hashed)")
    p.add_argument("user", help="a name from console.users; the token acts with that user's role")
    p.add_argument("--label", default="", help="what the token is for (an ERP, a script)")

    p = command("send", cmd_send, "send documents or a text now")
    p.add_argument("--to", action="append", default=[], metavar="NUMBER",
                   help="recipient (repeat for several); omit for iletter/qsign")
    p.add_argument("--type", default="fax", choices=[t.value for t in JobType])
    p.add_argument("--text", default="", help="fax note / SMS text / mail text")
    p.add_argument("--option", action="append", default=[], metavar="K=V",
                   help="FAX.de option, e.g. STATIONID=ACME (repeatable)")
    p.add_argument("--at", metavar="ISO-TIME", help="send later, e.g. 2026-12-01T08:00+01:00")
    p.add_argument("--ref", default="", help="reference id, reported back in the status CSV")
    p.add_argument("--wait", action="store_true", help="poll JobStatus until the job ends and print the report")
    p.add_argument("--force", action="store_true", help="send even if faxbridge sent the same job recently (FAX.de itself may still answer -77)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="up to 3 documents")

    p = command("status", cmd_status, "show a job (asks FAX.de if it is still running)")
    p.add_argument("job_id", type=int)
    p.add_argument("--json", action="store_true")

    p = command("cancel", cmd_cancel, "cancel a queued, scheduled or unknown job")
    p.add_argument("job_id", type=int)

    p = command("retry", cmd_retry, "re-send a job whose outcome is unknown (FAX.de's duplicate check guards it)")
    p.add_argument("job_id", type=int)

    p = command("approve", cmd_approve, "approve a held job: it is sent now")
    p.add_argument("job_id", type=int)

    p = command("reject", cmd_reject, "reject a held job: it is not sent, and its sender is told why")
    p.add_argument("job_id", type=int)
    p.add_argument("--reason", required=True, help="why; reaches the sender (failed/ or a report mail)")

    p = command("report", cmd_report, "write a job's send report PDF")
    p.add_argument("job_id", type=int)
    p.add_argument("-o", "--output", type=Path, help="the PDF file (default JOB-report.pdf here)")

    p = sub.add_parser("addressbook", help="the address book (names ↔ numbers) of the approval rules",
                       description="the address book (names ↔ numbers) of the approval rules")
    book = p.add_subparsers(dest="book_action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("import", cmd_addressbook_import, "add or rename contacts from a CSV file (name,number)"),
        ("list", cmd_addressbook_list, "print the address book as CSV"),
    ):
        action = book.add_parser(name, help=text, description=text)
        action.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        action.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
        action.set_defaults(handler=handler)
        if name == "import":
            action.add_argument("file", type=Path, metavar="FILE")

    p = command("jobs", cmd_jobs, "list recent jobs from the journal")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--state", action="append", choices=[s.value for s in JobState])
    p.add_argument("--json", action="store_true")

    p = command("nodes", cmd_nodes, "list the nodes sharing the journal: heartbeat, leases, work in hand")
    p.add_argument("--json", action="store_true")

    p = command("check-config", cmd_check_config, "validate a config file")

    p = command("receive", cmd_receive, "collect received faxes into the inbound folders")
    p.add_argument("--once", action="store_true", help="one run, then exit (else: every inbound.interval)")
    p.add_argument("--release", type=int, metavar="FAXID",
                   help="delete a quarantined fax on FAX.de (its copy stays in quarantine/)")

    p = sub.add_parser("journal", help="check the journal, back it up, or move it to PostgreSQL",
                       description="check the journal, back it up, or move it to PostgreSQL")
    actions = p.add_subparsers(dest="journal_action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("check", cmd_journal_check, "check the journal's integrity; exit 1 with the findings"),
        ("backup", cmd_journal_backup, "copy the journal (online, verified, fsynced) to DEST"),
        ("migrate", cmd_journal_migrate,
         "copy the SQLite journal into an empty PostgreSQL database (stop the daemon first)"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                            help=f"config file (default {DEFAULT_CONFIG}); its state_dir holds the journal")
        action.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
        action.set_defaults(handler=handler)
        if name == "check":
            action.add_argument("--file", type=Path, metavar="PATH",
                                help="check this journal file instead (e.g. a backup); no config needed")
        elif name == "migrate":
            action.add_argument("--to", required=True, metavar="URL",
                                help="postgresql://USER@HOST:PORT/DB (password: --password-file or PGPASSFILE)")
            action.add_argument("--password-file", type=Path, metavar="PATH",
                                help="the database password, one line (default: libpq's PGPASSFILE / ~/.pgpass)")
        else:
            action.add_argument("dest", type=Path, metavar="DEST",
                                help="the backup file, or a folder to put journal-DATE-TIME.sqlite3 in")

    p = command("health", cmd_health, "exit 0 when the daemon (or, without metrics.listen, FAX.de) is healthy")

    cups_parser = sub.add_parser("cups", help="install or remove the CUPS print queue (print to fax)",
                                 description="install or remove the CUPS print queue (print to fax)")
    cups_parser.set_defaults(handler=lambda _args: cups_parser.print_help() or EXIT_USAGE)
    cups = cups_parser.add_subparsers(dest="cups_command", metavar="ACTION")
    for action, handler, help_text in (
        ("install", cmd_cups_install, "install the backend and the queue for the daemon run with -c CONFIG"),
        ("uninstall", cmd_cups_uninstall, "delete the queue (and the backend, if no other queue uses it)"),
    ):
        q = cups.add_parser(action, help=help_text, description=help_text)
        q.add_argument("--queue", default="fax", help="CUPS queue name (default fax)")
        q.add_argument("--backend-dir", type=Path, default=None,
                       help="CUPS's backend folder (default: cups-config --serverbin, /usr/lib/cups/backend)")
        q.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
        q.set_defaults(handler=handler)
        if action == "install":
            q.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
            q.add_argument("--shared", action="store_true", help="share the queue over IPP (see README, Printing)")

    p = command("simulator", cmd_simulator, "run the FAX.de simulator (for tests and demos)", config=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8085)
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--account", default=None)
    p.add_argument("--password", default=None)
    return parser


# -- helpers ------------------------------------------------------------------------------


def _load(args: argparse.Namespace):  # -> Config
    from faxbridge.config import load_config

    config = load_config(args.config)
    for warning in config.warnings:
        print(f"faxbridge: warning: {warning}", file=sys.stderr)
    for secret in config.secrets():
        logs.register_secret(secret.reveal())
    return config


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "job": job.id,
        "state": job.state.value,
        "type": job.request.job_type.value,
        "recipients": [r.for_faxde() for r in job.request.recipients],
        "documents": [d.filename for d in job.request.documents],
        "faxde_job_id": job.faxde_job_id,
        "recipients_count": job.recipients_count,
        "page_count": job.page_count,
        "send_result": job.send_result,
        "error": job.last_error,
        "error_code": job.last_error_code,
        "source": job.source,
        "sender": job.meta.get("sender"),  # the print user (print channel)
        "created": job.created_at.isoformat() if job.created_at else None,
        "finished": job.finished_at.isoformat() if job.finished_at else None,
    }


def _print_job(job: Job) -> None:
    s = job_summary(job)
    print(f"job {s['job']}: {s['state']}")
    for key in ("type", "recipients", "documents", "faxde_job_id", "recipients_count",
                "page_count", "send_result", "error", "source", "sender", "created", "finished"):
        value = s[key]
        if value not in (None, "", []):
            print(f"  {key.replace('_', ' ')}: {', '.join(value) if isinstance(value, list) else value}")
    if job.status_file:
        from faxbridge.faxde.statusfile import parse_status_file

        print("  report:")
        for row in parse_status_file(job.status_file):
            print(f"    {row.recipient}  {row.result}  pages={row.pages}  {row.send_datetime}  {row.remote_id}")


def _parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key.strip():
            raise FaxbridgeError(f"--option {pair!r}: expected KEY=VALUE")
        options.append((key.strip().upper(), value.strip() if sep else ""))
    return tuple(options)


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FaxbridgeError(f"--at {text!r}: expected an ISO time like 2026-12-01T08:00+01:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a local wall-clock time, as the user typed it
    return when.astimezone(dt.timezone.utc)


# -- commands -----------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    if config.journal.is_postgresql:
        _check_postgresql_journal(config)
    print(f"{args.config}: OK ({len(config.hotfolders)} hotfolder(s), "
          f"SMTP {'on' if config.smtp else 'off'}, inbound {'on' if config.inbound else 'off'}, "
          f"print {'on' if config.print else 'off'})")
    from faxbridge.convert.pipeline import available_formats

    print("formats:")
    for line in available_formats(config.convert):
        print(f"  {line}")
    return EXIT_OK


def _check_postgresql_journal(config: Any) -> None:
    """Connect, and compare the database's schema version with this faxbridge's (no writes)."""
    from faxbridge.journal import SCHEMA_VERSION
    from faxbridge.journal.postgres import PostgresJournal

    password = config.journal.password
    journal = PostgresJournal.connect(
        config.journal.url, password=password.reveal() if password is not None else None,
        state_dir=Path(config.state_dir), migrate=False,
    )
    with journal:
        version = journal.schema_version()
    if version > SCHEMA_VERSION:
        raise FaxbridgeError(f"journal {journal.location}: schema {version} was written by a newer"
                             f" faxbridge (this one knows {SCHEMA_VERSION})")
    state = ("current" if version == SCHEMA_VERSION else
             "empty: the daemon creates the tables at its start" if version == 0 else
             f"the daemon migrates it to {SCHEMA_VERSION} at its start")
    print(f"journal: PostgreSQL {journal.location}, schema {version} ({state})")


def cmd_health(args: argparse.Namespace) -> int:
    """Ask the running daemon's /healthz; without a status endpoint, probe FAX.de directly."""
    config = _load(args)
    listen = config.metrics.listen
    if listen is not None:
        import urllib.error
        import urllib.request

        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        url = f"http://{host}:{listen.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                print(response.read().decode().strip())
                return EXIT_OK
        except urllib.error.HTTPError as exc:
            print(exc.read().decode().strip())
            return EXIT_ERROR
        except OSError as exc:
            raise FaxbridgeError(f"the daemon does not answer at {url}: {exc}") from None
    from faxbridge.daemon import make_provider
    from faxbridge.errors import ProviderError

    provider = make_provider(config)

    async def probe() -> None:
        try:
            await provider.job_status(0)
        finally:
            await provider.close()

    try:
        # JobStatus of a job that cannot exist: "job id not found" (5) proves that FAX.de is
        # reachable and takes the account and password; nothing is sent or fetched.
        asyncio.run(probe())
    except ProviderError as exc:
        if exc.code == 5:
            print(f"FAX.de reachable at {provider.endpoint}; account and password accepted")
            return EXIT_OK
        print(f"unhealthy: {exc}")
        return EXIT_ERROR
    print(f"FAX.de reachable at {provider.endpoint}")
    return EXIT_OK


def cmd_cups_install(args: argparse.Namespace) -> int:
    from faxbridge.edges.printing import cups

    config = _load(args)
    if config.print is None:
        raise FaxbridgeError(f"{args.config} has no print: section; add one to turn the print channel on")
    uri = cups.install(args.queue, config.print.socket, backend_dir=args.backend_dir, shared=args.shared)
    print(f"queue {args.queue} installed ({uri}); print with: lp -d {args.queue} -o fax-number=+49… FILE")
    return EXIT_OK


def cmd_cups_uninstall(args: argparse.Namespace) -> int:
    from faxbridge.edges.printing import cups

    cups.uninstall(args.queue, backend_dir=args.backend_dir)
    print(f"queue {args.queue} removed")
    return EXIT_OK


def cmd_api_token(args: argparse.Namespace) -> int:
    from faxbridge.edges.http.console.api import create_token
    from faxbridge.journal import Journal

    config = _load(args)
    if config.console is None or config.console.user(args.user) is None:
        raise FaxbridgeError(f"{args.user!r} is not one of console.users in {args.config}")
    with Journal.from_config(config) as journal:
        print(create_token(journal, args.user, args.label))
    return EXIT_OK


def cmd_hash_password(args: argparse.Namespace) -> int:
    from faxbridge.edges.http.console.auth import hash_password

    # A terminal asks without echoing; a pipe (printf … | faxbridge hash-password) is read as is.
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise FaxbridgeError("no password on standard input")
    print(hash_password(password))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Daemon

    config = _load(args)
    logs.setup("DEBUG" if args.verbose else config.logging.level)
    return Daemon(config, config_path=Path(args.config)).run()


def cmd_send(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services
    from faxbridge.outbound import Checked, content_key

    config = _load(args)
    job_type = JobType(args.type)
    if len(args.files) > 3:
        raise FaxbridgeError("FAX.de takes at most 3 documents per job")
    if job_type.needs_recipient and not args.to:
        raise FaxbridgeError(f"a {job_type} job needs --to")
    limits = config.documents.limits()
    policy = config.numbers.policy()
    recipients = tuple(
        Recipient(policy.normalize(to, purpose=job_type.value) if job_type.dials_numbers else to, args.ref)
        for to in args.to
    )
    # The job sends copies: the caller may delete its files once this command returns.
    try:
        outbox, originals = cli_outbox.take_copies(config.state_dir, args.files) if args.files else (None, [])
    except OSError as exc:  # a file that cannot be read, or a state_dir that cannot be written
        if exc.filename is not None and Path(exc.filename) in args.files:
            raise FaxbridgeError(f"{Path(exc.filename).name}: cannot be read ({exc.strerror or exc})") from None
        raise FaxbridgeError(f"cannot copy the documents into {config.state_dir}: {exc.strerror or exc}") from None
    try:
        # Photos, text and Office files become PDFs here, before the loop runs (conversions block).
        documents = _fax_ready(originals, outbox, config, limits)
    except BaseException:
        if outbox is not None:
            shutil.rmtree(outbox, ignore_errors=True)
        raise
    request = SendRequest(
        job_type=job_type, recipients=recipients, documents=tuple(documents), text=args.text,
        send_at=_parse_time(args.at), options=_parse_options(args.option),
    )

    async def send() -> Job:
        async with Services(config) as services:
            ref = uuid.uuid4().hex
            try:
                # Duplicates are recognised by the originals: a conversion need not give the same bytes.
                validated = services.outbound.validate(request)
                key = await asyncio.to_thread(
                    content_key, dataclasses.replace(validated, documents=tuple(originals[:3]))
                )
                job = await services.outbound.submit(
                    Checked(validated, key), source=cli_outbox.SOURCE, source_ref=ref,
                    meta={"label": ", ".join(d.filename for d in documents) or "text",
                          "outbox": str(outbox) if outbox else None},
                    allow_duplicate=args.force,
                )
            except BaseException:
                # Refused (a duplicate, a number): no job will ever need the copies. A job
                # journaled before the error (a failed fsync) keeps them.
                if outbox is not None and services.journal.jobs.by_source(cli_outbox.SOURCE, ref) is None:
                    shutil.rmtree(outbox, ignore_errors=True)
                raise
            job = await services.outbound.send_now(job.id)
            if args.wait and job.state is JobState.SUBMITTED:
                job = await services.wait_until_final(job.id)
            return job

    job = asyncio.run(send())
    if args.json:
        _print_json(job_summary(job))
    else:
        _print_job(job)
    if job.state in (JobState.REJECTED, JobState.FAILED, JobState.UNKNOWN):
        return EXIT_FAILED
    return EXIT_OK


def _fax_ready(originals: list[Document], outbox: Path | None, config: Config, limits: DocumentLimits) -> list[Document]:
    """The documents to send: converted where FAX.de does not take them, each checked."""
    from faxbridge.convert import ConversionError
    from faxbridge.convert.pipeline import convert_documents
    from faxbridge.documents import inspect

    if not originals or outbox is None:
        return []
    converted, problems = convert_documents(originals, outbox / "converted", config.convert, limits)
    if problems:
        raise ConversionError("\n".join(problems))
    if len(converted) > 3:  # a winmail.dat may hold more files than FAX.de takes
        raise ConversionError(f"{len(converted)} documents after unpacking; FAX.de takes at most 3 per job")
    for c in converted:
        inspect(c.document.path, c.document.filename, limits)
    return [c.document for c in converted]


def cmd_status(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services

    config = _load(args)

    async def status() -> Job:
        async with Services(config) as services:
            job = services.journal.jobs.get(args.job_id)
            if job.state is JobState.SUBMITTED:
                job = await services.outbound.poll(job) or job
            return job

    job = asyncio.run(status())
    _print_json(job_summary(job)) if args.json else _print_job(job)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services

    config = _load(args)

    async def cancel() -> Job:
        async with Services(config) as services:
            return await services.outbound.cancel(args.job_id, user=_os_user())

    _print_job(asyncio.run(cancel()))
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services

    config = _load(args)

    async def retry() -> Job:
        async with Services(config) as services:
            return await services.outbound.retry_unknown(args.job_id, user=_os_user())

    job = asyncio.run(retry())
    _print_job(job)
    return EXIT_OK if job.state in (JobState.SUBMITTED, JobState.CONFIRMED) else EXIT_FAILED


def _os_user() -> str:
    """Who runs the command, for the audit table."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container): the uid is still someone
        import os

        return f"uid {os.getuid()}"


def cmd_approve(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services

    config = _load(args)

    async def approve() -> Job:
        async with Services(config) as services:
            await services.outbound.approve(args.job_id, _os_user())
            # Sent from here, as `faxbridge send` does: a running daemon learns of the change only
            # when its sender wakes, which may be long after.
            return await services.outbound.send_now(args.job_id)

    job = asyncio.run(approve())
    _print_job(job)
    return EXIT_FAILED if job.state in (JobState.REJECTED, JobState.UNKNOWN) else EXIT_OK


def cmd_reject(args: argparse.Namespace) -> int:
    from faxbridge.daemon import Services

    config = _load(args)

    async def reject() -> Job:
        # The report (failed/, the sender's mail) is the daemon's: it reports every final job of
        # its edges; two processes moving the same files at once could trip over each other.
        async with Services(config) as services:
            return await services.outbound.reject(args.job_id, _os_user(), args.reason)

    _print_job(asyncio.run(reject()))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from faxbridge import sendreport
    from faxbridge.fsutil import write_atomically
    from faxbridge.journal import Journal

    config = _load(args)
    with Journal.from_config(config) as journal:
        job = journal.jobs.get(args.job_id)
        pdf = sendreport.render(job, journal)
    output = args.output or Path(f"{job.id}-report.pdf")
    write_atomically(output, pdf)
    print(output)
    return EXIT_OK


def cmd_addressbook_import(args: argparse.Namespace) -> int:
    from faxbridge.journal import Journal
    from faxbridge.journal.addressbook import parse_csv

    config = _load(args)
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaxbridgeError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    policy = config.numbers.policy()
    contacts = parse_csv(text, lambda number: policy.normalize(number, purpose="fax"))
    with Journal.from_config(config) as journal:
        count = journal.address_book.put(contacts)
        journal.audit.record(_os_user(), "addressbook_import", None, f"{count} contact(s) from {args.file}")
    print(f"{count} contact(s) imported")
    return EXIT_OK


def cmd_addressbook_list(args: argparse.Namespace) -> int:
    import csv

    from faxbridge.journal import Journal

    config = _load(args)
    with Journal.from_config(config) as journal:
        contacts = journal.address_book.all()
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["name", "number"])
    for contact in contacts:
        writer.writerow([contact.name, contact.number])
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from faxbridge.journal import Journal

    import time

    from faxbridge.outbound import awaiting_operator

    config = _load(args)
    with Journal.from_config(config) as journal:
        if args.state:  # every job in those states (held ones wait long), newest first
            jobs = journal.jobs.in_states(*(JobState(s) for s in args.state))[::-1][: args.limit]
        else:
            jobs = journal.jobs.recent(args.limit)
        # Not re-sent by the daemon any more (past faxde.reconcile_window): a person decides.
        stuck = set(awaiting_operator(journal, config.faxde.reconcile_window, time.time()))
    if args.json:
        _print_json([{**job_summary(j), "needs_operator": j.id in stuck} for j in jobs])
        return EXIT_OK
    print(f"{'JOB':>6}  {'STATE':<10} {'TYPE':<8} {'FAX.DE':>9}  {'CREATED':<19}  RECIPIENT / DOCUMENTS")
    for job in jobs:
        created = job.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
        who = ", ".join(r.for_faxde() for r in job.request.recipients) or "-"
        docs = ", ".join(d.filename for d in job.request.documents)
        state = job.state.value + ("!" if job.id in stuck else "")
        print(f"{job.id:>6}  {state:<10} {job.request.job_type.value:<8} "
              f"{job.faxde_job_id or '':>9}  {created:<19}  {who}  {docs}")
    if stuck:
        print(f"\n! {len(stuck)} job(s) need the operator: SendJob's outcome is unknown and the"
              f" reconcile window has passed ({', '.join(map(str, sorted(stuck)))}).\n"
              "  Check the FAX.de job list, then `faxbridge retry JOBID` or `faxbridge cancel JOBID`.")
    return EXIT_OK


def _sqlite_journal(config: Any, command: str) -> Path:
    """The SQLite file a config's journal is in; a PostgreSQL journal is PostgreSQL's to check."""
    from faxbridge.journal import integrity

    if config.journal.is_postgresql:
        raise FaxbridgeError(
            f"the journal is in PostgreSQL; `faxbridge journal {command}` works on SQLite files"
            " (use pg_dump / pg_amcheck for the database)"
        )
    return Path(config.journal.url) if config.journal.url else integrity.journal_path(config.state_dir)


def cmd_nodes(args: argparse.Namespace) -> int:
    import time

    from faxbridge.journal import Journal

    config = _load(args)
    now = time.time()
    with Journal.from_config(config) as journal:
        nodes, leases = journal.nodes.all(), journal.nodes.leases()
    lease_time = config.journal.lease
    if args.json:
        print(json.dumps({
            "nodes": [{"name": n.name, "instance": n.instance, "state": n.state, "started_at": n.started_at,
                       "heartbeat_at": n.heartbeat_at, "alive": n.state == "running" and n.heartbeat_at > now - lease_time,
                       "working_on": n.detail} for n in nodes],
            "leases": [{"name": lease.name, "holder": lease.holder, "token": lease.token,
                        "expires_at": lease.expires_at} for lease in leases],
        }, indent=2))
        return EXIT_OK
    if not nodes:
        print("no node has run on this journal yet" if config.journal.is_postgresql else
              "one node: the journal is SQLite in state_dir (nodes share a PostgreSQL journal)")
    for node in nodes:
        age = now - node.heartbeat_at
        alive = node.state == "running" and age < lease_time
        state = "alive" if alive else ("stopped" if node.state == "stopped" else f"gone (silent > {lease_time:.0f} s)")
        held = ", ".join(f"{lease.name} (token {lease.token})" for lease in leases if lease.holder == node.name)
        print(f"{node.name:<16} {state:<24} heartbeat {age:6.1f} s ago  {node.instance}"
              f"{'  holds ' + held if held else ''}{'  — ' + node.detail if node.detail and alive else ''}")
    return EXIT_OK


def cmd_journal_check(args: argparse.Namespace) -> int:
    from faxbridge.journal import integrity

    path = args.file if args.file is not None else _sqlite_journal(_load(args), "check")
    findings = integrity.check(path)
    if not findings:
        print(f"{path}: OK")
        return EXIT_OK
    print(f"{path}: {len(findings)} problem(s) found")
    for finding in findings:
        print(f"  - {finding}")
    return EXIT_ERROR


def cmd_journal_backup(args: argparse.Namespace) -> int:
    from faxbridge.journal import integrity

    source = _sqlite_journal(_load(args), "backup")
    result = integrity.backup(source, args.dest)
    print(f"{result.path}: {result.size} bytes, {result.jobs} job(s), checked and on disk")
    return EXIT_OK


def cmd_journal_migrate(args: argparse.Namespace) -> int:
    from faxbridge.journal.migrate import migrate_to_postgresql
    from faxbridge.journal.postgres import describe, is_postgresql_url

    config = _load(args)
    if not is_postgresql_url(args.to):
        raise FaxbridgeError(f"--to: expected postgresql://USER@HOST:PORT/DB, got {args.to.split('://')[0]}://…")
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise FaxbridgeError(f"--password-file: cannot read {args.password_file}: {exc.strerror}") from None
    source = _sqlite_journal(config, "migrate")
    copied = migrate_to_postgresql(
        source, args.to, password=password, state_dir=Path(config.state_dir),
        progress=lambda c: print(f"  {c.table}: {c.rows} row(s)", flush=True),
    )
    total = sum(c.rows for c in copied)
    print(f"{source} → {describe(args.to)}: {len(copied)} table(s), {total} row(s), counts verified.\n"
          f"Now set `journal: {args.to}` in {args.config} and start the daemon.")
    return EXIT_OK


def cmd_receive(args: argparse.Namespace) -> int:
    from faxbridge import cli_inbox as inbox

    config = _load(args)
    if config.inbound is None:
        raise FaxbridgeError(f"{args.config}: inbound faxes are not collected (no inbound section, or enabled: false)")
    logs.setup("DEBUG" if args.verbose else config.logging.level)
    if args.release is not None:
        record = asyncio.run(inbox.release(config, args.release))
        print(f"fax {record.fax_id}: deleted on FAX.de; its copy stays at {record.path}")
        return EXIT_OK

    def show(report: Any) -> None:
        print(f"inbound: {report.summary()}", flush=True)

    report = asyncio.run(inbox.receive(config, once=args.once, on_report=show))
    return EXIT_OK if report.error is None else EXIT_FAILED


def cmd_simulator(args: argparse.Namespace) -> int:
    from faxbridge.simulator.cli import main as simulator_main

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.state_dir:
        argv += ["--state-dir", str(args.state_dir)]
    if args.account:
        argv += ["--account", args.account]
    if args.password:
        argv += ["--password", args.password]
    return simulator_main(argv)


if __name__ == "__main__":
    sys.exit(main())
