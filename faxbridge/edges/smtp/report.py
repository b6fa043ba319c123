"""Report mails of the SMTP edge: how a job ended, in plain words, with the status CSV attached.

Pure rendering (no I/O): ``job_report`` for a finished job, ``rejection_report`` for what could not
be sent at all, ``mail_status_csv`` for the archive's NAME.status.csv. Outcome words follow
FAXDE-API.md (JobStatus, SendResult); "delivered" and "not delivered" are never mixed in one line.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import io
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from typing import Final

from faxbridge.reports import REPORT_COLUMNS, render_report, report_rows, spreadsheet_safe
from faxbridge.faxde.statusfile import parse_status_file
from faxbridge.model import Job, JobState, JobType, StatusRow

# SendResult words (FAXDE-API.md, JobStatus) → why the fax did not arrive, for the sender.
RESULT_SENTENCES: Final[dict[str, str]] = {
    "OK": "delivered",
    "BUSY": "the line was busy every time it was called",
    "NO ANSWER": "the remote station rang but did not answer",
    "VOICE": "no fax machine answered (a person, an answering machine or a bad line)",
    "NO SERVICE": "the number is out of service",
    "SEND-FAIL": "the call connected but the pages could not be transmitted (paper jam, unstable line)",
    "CALL FAILED": "the call failed (number wrong or too short, service not supported, out of order)",
    "BLACK-LIST": "the number is blacklisted and was not called",
    "CANCELLED": "cancelled before it was sent",
}

_NOUNS: Final[dict[JobType, str]] = {
    JobType.FAX: "fax",
    JobType.SMS: "SMS",
    JobType.EMAIL: "e-mail",
    JobType.ILETTER: "letter",
    JobType.ILETTER_COLOR: "letter",
    JobType.QSIGN: "QSign invoice",
}
_JOB_TYPE_WORDS: Final[dict[JobType, str]] = {
    JobType.FAX: "FAX", JobType.SMS: "SMS", JobType.EMAIL: "mail",
    JobType.ILETTER: "letter", JobType.ILETTER_COLOR: "letter", JobType.QSIGN: "QSign",
}


def explain_result(result: str) -> str:
    """A SendResult in words; unknown words are shown as they came."""
    key = " ".join(result.strip().upper().split())
    return RESULT_SENTENCES.get(key, f"FAX.de reported {result.strip() or 'no result'}")


def status_rows(job: Job) -> tuple[StatusRow, ...]:
    """The job's StatusFile rows; for a job without one (rejected, cancelled early) rows made up
    from what the journal knows, so every report and CSV has a line per recipient."""
    rows = parse_status_file(job.status_file)
    if rows:
        return rows
    word = {
        JobState.REJECTED: "Rejected",
        JobState.CANCELLED: "Cancelled",
        JobState.CONFIRMED: "Accepted (no report)",
    }.get(job.state, job.send_result or job.state.value)
    recipients = [r.address for r in job.request.recipients] or [""]
    return tuple(
        StatusRow(recipient=r, job_type=_JOB_TYPE_WORDS[job.request.job_type], result=word)
        for r in recipients
    )


def _recipients_text(job: Job) -> str:
    addresses = [r.address for r in job.request.recipients]
    if not addresses:
        return "the address in the document"
    if len(addresses) <= 3:
        return ", ".join(addresses)
    return f"{', '.join(addresses[:3])} and {len(addresses) - 3} more"


def _quoted(subject: str) -> str:
    return f'"{subject}"' if subject else "(no subject)"


def job_outcome(job: Job, rows: Sequence[StatusRow]) -> tuple[str, str]:
    """(short headline for the subject, one sentence for the body)."""
    noun = _NOUNS[job.request.job_type]
    to = _recipients_text(job)
    if job.state is JobState.DELIVERED:
        if job.request.job_type is JobType.FAX:
            return f"{noun.capitalize()} delivered", f"was delivered to {to}."
        if job.request.job_type is JobType.SMS:
            return f"{noun} sent", f"was handed to the mobile network for {to}."
        return f"{noun.capitalize()} sent", f"was handed over by FAX.de for {to}."
    if job.state is JobState.PARTIAL:
        ok = sum(1 for r in rows if r.ok)
        return (
            f"{noun.capitalize()} delivered to {ok} of {len(rows)} recipients",
            f"was delivered to {ok} of {len(rows)} recipients and NOT delivered to the others"
            " (see below).",
        )
    if job.state is JobState.FAILED:
        reason = explain_result(rows[0].result if len(rows) == 1 else job.send_result)
        if len(rows) > 1:
            reason = "no recipient was reached (see below)"
        return (
            f"{noun.capitalize()} NOT delivered ({rows[0].result if len(rows) == 1 else 'failed'})",
            f"was NOT delivered to {to}: {reason}.",
        )
    if job.state is JobState.REJECTED:
        return f"{noun.capitalize()} NOT sent", f"was NOT sent to {to}: {job.last_error or 'refused'}."
    if job.state is JobState.CANCELLED:
        return f"{noun.capitalize()} cancelled", f"to {to} was cancelled and NOT sent."
    if job.state is JobState.CONFIRMED:
        return (
            f"{noun.capitalize()} accepted by FAX.de (no delivery report)",
            f"to {to} was accepted by FAX.de, but its job number was lost, so faxbridge cannot"
            " tell whether it was delivered. Please check the FAX.de job list.",
        )
    return f"{noun.capitalize()} {job.state.value}", f"to {to} is {job.state.value}."


def _table(rows: Iterable[StatusRow]) -> str:
    lines = [f"{'Recipient':<20} {'Result':<14} {'Pages':>5}  Sent (UTC)"]
    for row in rows:
        recipient = row.recipient or "(in document)"
        lines.append(f"{recipient:<20} {row.result:<14} {row.pages or '-':>5}  {row.send_datetime or '-'}")
        if not row.ok and row.result and row.result.upper() not in ("REJECTED",):
            lines.append(f"{'':<20} {explain_result(row.result)}")
    return "\n".join(lines)


def _base(
    *, to: str, report_from: str, subject: str, in_reply_to: str, headline: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = report_from
    message["To"] = to
    message["Subject"] = f"{headline}: {subject}" if subject else headline
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=report_from.rpartition("@")[2] or None)
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    # RFC 3834: an automatic answer; auto-responders must not answer it (no mail loops).
    message["Auto-Submitted"] = "auto-replied"
    return message


def job_report(
    job: Job,
    *,
    to: str,
    report_from: str,
    subject: str,
    in_reply_to: str = "",
    received: str = "",
) -> EmailMessage:
    """The mail telling the sender how one job ended, with the status CSV attached."""
    rows = status_rows(job)
    headline, sentence = job_outcome(job, rows)
    message = _base(to=to, report_from=report_from, subject=subject, in_reply_to=in_reply_to,
                    headline=headline)
    message["X-Faxbridge-Job"] = str(job.id)
    noun = _NOUNS[job.request.job_type]
    when = f" (mailed {received})" if received else ""
    body = [
        f"Your {noun} {_quoted(subject)}{when} {sentence}",
        "",
        _table(rows),
        "",
        f"faxbridge job {job.id}"
        + (f", FAX.de job {job.faxde_job_id}" if job.faxde_job_id else "")
        + (f", {job.page_count} page(s)" if job.page_count else ""),
        "The status report is attached (status.csv).",
    ]
    message.set_content("\n".join(body) + "\n")
    message.add_attachment(
        render_report(job, rows), maintype="text", subtype="csv", filename="status.csv"
    )
    return message


def rejection_report(
    *,
    to: str,
    report_from: str,
    subject: str,
    problems: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
    in_reply_to: str = "",
    received: str = "",
    anything_sent: bool = False,
) -> EmailMessage:
    """The mail telling the sender what of their mail could not be sent, and why."""
    headline = "Fax partly NOT sent" if anything_sent else "Fax NOT sent"
    message = _base(to=to, report_from=report_from, subject=subject, in_reply_to=in_reply_to,
                    headline=headline)
    when = f" of {received}" if received else ""
    intro = (
        f"Your mail {_quoted(subject)}{when} was received, but "
        + ("not everything in it could be sent:" if anything_sent else "nothing in it could be sent:")
    )
    lines = [intro, ""]
    for recipient, problem in problems:
        lines.append(f"  - {recipient}: {problem}" if recipient else f"  - {problem}")
    lines.append("")
    lines.append("Nothing was sent for these recipients, so nothing was charged for them.")
    if anything_sent:
        lines.append("The other recipients get their own report when their job ends.")
    if notes:
        lines.append("")
        lines.append("Left out on purpose: " + "; ".join(notes) + ".")
    message.set_content("\n".join(lines) + "\n")
    return message


def mail_status_csv(jobs: Sequence[Job], problems: Sequence[tuple[str, str]]) -> bytes:
    """NAME.status.csv of an archived mail: a row per recipient of every job, and per refusal."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for job in jobs:
        writer.writerows(report_rows(job, status_rows(job)))
    for recipient, problem in problems:
        row = [recipient, "", f"Rejected: {problem}", "", "", "", "", "", "", ""]
        writer.writerow([spreadsheet_safe(v) for v in row])
    return buffer.getvalue().encode("utf-8-sig")


def received_text(when: dt.datetime | None) -> str:
    """A mail's arrival time for a report, in local time."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when else ""
