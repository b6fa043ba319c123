"""FAX.de's StatusFile (JobStatus): the CSV it sends, read into StatusRow values."""

from __future__ import annotations

import csv
import io

from faxbridge.model import StatusRow

# The StatusFile columns, in the order FAXDE-API.md gives them (JobStatus, StatusFile).
STATUS_COLUMNS = (
    "RECIPIENT", "JOBTYPE", "RESULT", "REMOTEID", "PAGES", "SENDDATETIME", "DURATION", "REFID",
)


def parse_status_file(data: bytes) -> tuple[StatusRow, ...]:
    """The rows of a StatusFile; tolerant of BOMs, CRLF/LF, a missing header and Latin-1 text."""
    if not data:
        return ()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and [c.strip().upper() for c in rows[0]][:3] == list(STATUS_COLUMNS[:3]):
        header = [c.strip().upper() for c in rows[0]]
        rows = rows[1:]
    else:
        header = list(STATUS_COLUMNS)
    parsed = []
    for row in rows:
        cells = dict(zip(header, (c.strip() for c in row)))
        parsed.append(
            StatusRow(
                recipient=cells.get("RECIPIENT", ""),
                job_type=cells.get("JOBTYPE", ""),
                result=cells.get("RESULT", ""),
                remote_id=cells.get("REMOTEID", ""),
                pages=cells.get("PAGES", ""),
                send_datetime=cells.get("SENDDATETIME", ""),
                duration=cells.get("DURATION", ""),
                ref_id=cells.get("REFID", ""),
            )
        )
    return tuple(parsed)
