"""Status reports as CSV: faxbridge's report beside a document, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from faxbridge.faxde.statusfile import STATUS_COLUMNS
from faxbridge.fsutil import write_atomically
from faxbridge.model import Job, StatusRow

REPORT_COLUMNS = STATUS_COLUMNS + ("FAXBRIDGE_JOB", "FAXDE_JOBID")

# A cell starting with one of these is a formula to Excel/LibreOffice (CSV injection, OWASP).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """A cell value that a spreadsheet shows as text, never evaluates.

    Phone numbers start with '+' legitimately, so a leading apostrophe is used only where the rest
    is not a plain number; anything else starting with a formula character is prefixed.
    """
    text = "" if value is None else str(value)
    text = "".join(ch if ch >= " " or ch == "\t" else " " for ch in text)
    if text.startswith(_FORMULA_PREFIXES):
        if text[0] == "+" and text[1:].replace(" ", "").isdigit():
            return text
        return "'" + text
    return text


def report_rows(job: Job, rows: Iterable[StatusRow]) -> list[list[str]]:
    out = []
    for row in rows:
        out.append(
            [
                spreadsheet_safe(v)
                for v in (
                    row.recipient, row.job_type, row.result, row.remote_id, row.pages,
                    row.send_datetime, row.duration, row.ref_id, job.id, job.faxde_job_id or "",
                )
            ]
        )
    return out


def render_report(job: Job, rows: Iterable[StatusRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(report_rows(job, rows))
    return buffer.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


def write_report(job: Job, rows: Iterable[StatusRow], path: Path) -> Path:
    write_atomically(path, render_report(job, rows))
    return path
