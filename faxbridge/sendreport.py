"""The send report: one PDF page per job saying what was sent, to whom, and what FAX.de confirmed.

Its wording claims no more than FAX.de reported: "handed over to FAX.de" once SendJob was
accepted, "transmitted" only for a recipient whose JobStatus row says OK. It carries the SHA-256
of each document as sent and a thumbnail of page 1, so a reader can match it to a file.

Written with fpdf2: a real text layer (searchable, copyable, checked by the tests with pypdf) with
an embedded DejaVu font for any name or number; drawing text onto an image would lose both.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fpdf import FPDF

from faxbridge import __version__
from faxbridge.faxde.statusfile import parse_status_file
from faxbridge.errors import FaxbridgeError
from faxbridge.model import Job, JobState, StatusRow
from faxbridge.thumbnails import page_png

if TYPE_CHECKING:
    from faxbridge.journal import Journal

log = logging.getLogger(__name__)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # fonts-dejavu-core (.ci/system-deps)
THUMBNAIL_WIDTH = 300  # pixels; drawn 60 mm wide, sharp enough to recognise the page


def outcome_sentence(job: Job) -> str:
    """What FAX.de confirmed about the job, in words that claim nothing more."""
    state = job.state
    if state is JobState.DELIVERED:
        return "Transmitted: FAX.de reports the transmission as successful (OK) for every recipient."
    if state is JobState.PARTIAL:
        return "Transmitted to some recipients only: FAX.de reports OK for some and failures for others (see below)."
    if state is JobState.FAILED:
        return ("Handed over to FAX.de, but NOT transmitted: FAX.de reports that no recipient was reached"
                f" ({job.send_result or 'see below'}).")
    if state is JobState.SUBMITTED:
        return ("Handed over to FAX.de, which accepted the job; the transmission is not confirmed yet"
                " (FAX.de has not reported its result).")
    if state is JobState.CONFIRMED:
        return ("Handed over to FAX.de (it answered that it already has this job), but its transmission"
                " report was never received: transmission is not confirmed.")
    if state is JobState.UNKNOWN:
        return "Not known whether FAX.de received the job: the answer to SendJob was lost. Not confirmed."
    if state is JobState.HELD:
        return "Not handed over to FAX.de: the job waits for an approver."
    if state in (JobState.QUEUED, JobState.SUBMITTING):
        return "Not handed over to FAX.de yet: the job waits to be sent."
    if state is JobState.CANCELLED:
        return "Cancelled" + (" at FAX.de" if job.faxde_job_id else ", not handed over to FAX.de") + "."
    return f"Not handed over to FAX.de: {job.last_error or 'the job was rejected'}."


def render(job: Job, journal: Journal, documents: Sequence[Path] | None = None) -> bytes:
    """The report of ``job`` as PDF bytes. ``documents``: where the files sent are now (an edge
    that moved them says so); by default the request's paths. Blocking (renders a page): call it
    from a worker thread on the event loop."""
    paths = list(documents) if documents is not None else [d.path for d in job.request.documents]
    pdf = _Report()
    pdf.add_page()
    pdf.heading(f"Send report — faxbridge job {job.id}")
    pdf.paragraph(outcome_sentence(job), bold=True)
    pdf.ln(2)

    sender = job.meta.get("sender") or job.meta.get("label") or ""
    facts = [
        ("Type", job.request.job_type.value),
        ("From", f"{job.source}: {sender}" if sender else job.source),
        ("Recipients", ", ".join(r.for_faxde() for r in job.request.recipients) or "(address in the document)"),
        ("Submitted", _time(job.created_at)),
        ("Scheduled for", _time(job.request.send_at) if job.request.send_at else ""),
        ("Finished", _time(job.finished_at) if job.finished_at else ""),
        ("State", job.state.value),
        ("FAX.de JobId", str(job.faxde_job_id) if job.faxde_job_id else "none"),
        ("FAX.de result", job.send_result or ("" if job.state.is_final else "not reported yet")),
        ("Pages (FAX.de)", str(job.page_count) if job.page_count is not None else ""),
    ]
    if job.last_error and job.state in (JobState.REJECTED, JobState.CANCELLED, JobState.UNKNOWN):
        facts.append(("Reason", job.last_error))
    for label, value in facts:
        if value:
            pdf.fact(label, value)

    rows = parse_status_file(job.status_file)
    if rows:
        pdf.ln(3)
        pdf.subheading("Per recipient, as FAX.de reported it")
        for row in rows:
            pdf.paragraph(_row_line(row), size=8.5)

    pdf.ln(3)
    pdf.subheading("Documents sent")
    digests = list(job.meta.get("sha256") or [])
    for index, document in enumerate(job.request.documents):
        digest = digests[index] if index < len(digests) else _digest(paths[index] if index < len(paths) else None)
        pdf.paragraph(document.filename, size=9)
        pdf.mono(f"SHA-256 {digest or 'unknown (the file is no longer there)'}")
    if not job.request.documents:
        pdf.paragraph("(no document: text only)", size=9)
    if job.request.text:
        pdf.paragraph(f"Text: {job.request.text[:500]}", size=9)

    thumbnail = _thumbnail(paths[0]) if paths else None
    if thumbnail is not None:
        pdf.ln(3)
        pdf.subheading("Page 1")
        y = pdf.get_y()
        pdf.image(io.BytesIO(thumbnail), x=pdf.l_margin, y=y, w=60)
        pdf.rect(pdf.l_margin, y, 60, _height_mm(thumbnail, 60))
    pdf.set_y(-18)
    pdf.paragraph(
        f"Made by faxbridge {__version__} on {_time(dt.datetime.now(dt.timezone.utc))} from its journal"
        f" ({journal.path.name}).", size=7)
    return bytes(pdf.output())


class _Report(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4", unit="mm")
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(False)  # one page per job: long lists are cut, never spilled
        self.set_creator("faxbridge")
        try:
            self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
            self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
            self.add_font("DejaVuMono", "", str(FONT_DIR / "DejaVuSansMono.ttf"))
            self.sans, self.fixed = "DejaVu", "DejaVuMono"
        except (OSError, FileNotFoundError, RuntimeError):  # without fonts-dejavu: Latin-1 only
            log.warning("send report: DejaVu fonts not found in %s; using Helvetica", FONT_DIR)
            self.sans, self.fixed = "Helvetica", "Courier"

    def _text(self, text: str) -> str:
        if self.sans == "Helvetica":
            return text.encode("latin-1", "replace").decode("latin-1")
        return text

    def heading(self, text: str) -> None:
        self.set_font(self.sans, "B", 15)
        self.multi_cell(0, 8, self._text(text), new_x="LMARGIN", new_y="NEXT", align="L")
        self.ln(2)

    def subheading(self, text: str) -> None:
        self.set_font(self.sans, "B", 10.5)
        self.multi_cell(0, 6, self._text(text), new_x="LMARGIN", new_y="NEXT", align="L")

    def paragraph(self, text: str, *, size: float = 10, bold: bool = False) -> None:
        if self.get_y() > self.h - 30:
            return  # the page is full: cut rather than spill onto a second one
        self.set_font(self.sans, "B" if bold else "", size)
        self.multi_cell(0, size * 0.5, self._text(text), new_x="LMARGIN", new_y="NEXT", align="L")

    def mono(self, text: str) -> None:
        self.set_font(self.fixed, "", 7.5)
        self.multi_cell(0, 4, self._text(text), new_x="LMARGIN", new_y="NEXT", align="L")

    def fact(self, label: str, value: str) -> None:
        self.set_font(self.sans, "B", 9.5)
        self.cell(38, 5.2, self._text(label))
        self.set_font(self.sans, "", 9.5)
        self.multi_cell(0, 5.2, self._text(value[:400]), new_x="LMARGIN", new_y="NEXT", align="L")


def _row_line(row: StatusRow) -> str:
    parts = [row.recipient or "(recipient)", f"result: {row.result or '?'}"]
    if row.remote_id:
        parts.append(f"RemoteId: {row.remote_id}")
    if row.pages:
        parts.append(f"pages: {row.pages}")
    if row.send_datetime:
        parts.append(f"at {row.send_datetime}")
    if row.duration:
        parts.append(f"{row.duration} s")
    if row.ref_id:
        parts.append(f"ref {row.ref_id}")
    return "  ·  ".join(parts)


def _time(when: dt.datetime | None) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if when else ""


def _digest(path: Path | None) -> str:
    from faxbridge.outbound import file_digest

    if path is None:
        return ""
    try:
        return file_digest(path)
    except OSError:
        return ""


def _thumbnail(path: Path) -> bytes | None:
    """Page 1 as a PNG, or None for a document that is gone or is not a PDF or TIFF."""
    try:
        return page_png(path, 1, THUMBNAIL_WIDTH)
    except (FaxbridgeError, OSError) as exc:
        log.info("send report: no thumbnail of %s: %s", path.name, exc)
        return None


def _height_mm(png: bytes, width_mm: float) -> float:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return width_mm * image.height / image.width
