"""Received faxes as files: TIFF, optional PDF, a JSON sidecar and a received.csv index per output folder.

The core (``faxbridge.inbound``) decides what happens to a fax; this module only turns that into
files and names: the file-name template filled in and sanitised (the sender chooses its station id,
so nothing from it may become a path separator, a control character or a hidden file), each file
written to a temporary name in its folder, fsynced, and linked into place so an existing file is
never overwritten, then the folder fsynced (the rename must survive a power cut too, before the
core lets DeleteReceived run).

Folder layout (see README-inbound.md)::

    <output>/NAME.tif  NAME.pdf  NAME.json  received.csv      one per route folder
    <inbound.output>/quarantine/NAME.tif|.bin  NAME.json  NAME.error.txt
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import hashlib
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faxbridge.fsutil import fsync_dir
from faxbridge.reports import spreadsheet_safe
from faxbridge.crashpoints import crash_point
from faxbridge.inbound import Check, Destination, Stored

if TYPE_CHECKING:

    from faxbridge.model import InboundFax

log = logging.getLogger(__name__)
# img2pdf imports pikepdf, which announces its logger bridge at INFO on first use.
logging.getLogger("pikepdf").setLevel(logging.WARNING)

INDEX_NAME = "received.csv"
INDEX_COLUMNS = ("FaxId", "CalledNumber", "ReceiveDate", "Originator", "RemoteId", "Pages", "File")
TIFF_EXTENSIONS = (".tif", ".tiff")
MAX_NAME_BYTES = 200  # of 255 on common file systems: room for ".NAME.faxbridge-part" and "-2"
MAX_FIELD_CHARS = 64
_PART_SUFFIX = ".faxbridge-part"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Not allowed in a file name on Windows/SMB shares, where these folders often end up.
_FORBIDDEN = set('/\\:*?"<>|')
# Unicode categories that never belong in a file name: controls, format characters (among them
# the right-to-left override that makes "fax‮fdp.exe" look like "faxexe.pdf"), line separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
_DRAIN_TIMEOUT = 30.0  # seconds a run in progress may take to finish its fax at shutdown


# -- names (pure) -------------------------------------------------------------------------


def _replace_unsafe(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        "_" if ch in _FORBIDDEN or unicodedata.category(ch) in _BAD_CATEGORIES else ch for ch in text
    )
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"_{2,}", "_", text)


def sanitise_field(value: str) -> str:
    """A value from the sender (station id, caller id) made safe to put into a file name."""
    text = _replace_unsafe(value).strip(" ._")
    text = text[:MAX_FIELD_CHARS].rstrip(" ._")
    return text or "unknown"


def sanitise_name(name: str) -> str:
    """A whole file name: no separators or control characters, not hidden, not a Windows device,
    ending in .tif/.tiff, short enough for any file system."""
    text = _replace_unsafe(name).strip(" ").lstrip(".").strip(" ")
    stem, ext = os.path.splitext(text)
    if ext.lower() not in TIFF_EXTENSIONS:
        stem, ext = text, ".tif"
    stem = stem.rstrip(" .") or "fax"
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem.rstrip(" .") + ext


def received_utc(fax: InboundFax) -> dt.datetime | None:
    """ReceiveDate is UTC (FAXDE-API.md); a naive value is read as such."""
    if fax.received_at is None:
        return None
    when = fax.received_at
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def name_fields(fax: InboundFax, tz: dt.tzinfo | None = None) -> dict[str, Any]:
    """The template's fields (config.INBOUND_FILENAME_FIELDS): ``received`` in local time (``tz``
    None: the machine's), the sender's values sanitised, numbers as numbers (``{fax_id:08d}``)."""
    received = received_utc(fax) or dt.datetime.now(dt.timezone.utc)
    return {
        "received": received.astimezone(tz),
        "fax_id": fax.fax_id,
        "originator": sanitise_field(fax.originator),
        "called_number": sanitise_field(fax.called_number),
        "remote_id": sanitise_field(fax.remote_id),
        "pages": fax.pages,
    }


def render_name(template: str, fax: InboundFax, tz: dt.tzinfo | None = None) -> str:
    return sanitise_name(template.format(**name_fields(fax, tz)))


def index_row(fax: InboundFax, file_name: str) -> list[str]:
    """One received.csv row; cells a spreadsheet would evaluate are defused (CSV injection)."""
    received = received_utc(fax)
    values = (
        fax.fax_id, fax.called_number,
        # FAX.de's own timestamp format (StatusFile SENDDATETIME), UTC: spreadsheets read it.
        received.strftime("%Y-%m-%d %H:%M:%S") if received else "",
        fax.originator, fax.remote_id, fax.pages, file_name,
    )
    return [spreadsheet_safe(v) for v in values]


def sidecar(fax: InboundFax, stored: Stored, check: Check, dest: Destination | None) -> dict[str, Any]:
    received = received_utc(fax)
    data: dict[str, Any] = {
        "fax_id": fax.fax_id,
        "called_number": fax.called_number,
        "received": received.isoformat() if received else None,
        "originator": fax.originator,
        "remote_id": fax.remote_id,
        "pages": fax.pages,
        "pages_counted": check.pages_counted,
        "file": stored.path.name,
        "pdf": stored.pdf.name if stored.pdf else None,
        "size": stored.size,
        "sha256": stored.sha256,
        "route": dest.route if dest else None,
        "note": "; ".join(n for n in (check.note, stored.note) if n),
    }
    if not check.ok:
        data["quarantined"] = check.reason
    return data


# -- files --------------------------------------------------------------------------------


class InboxFiles:
    """The core's FaxFiles: plans names and writes the files of one fax. Blocking; worker threads."""

    def __init__(self, template: str, tz: dt.tzinfo | None = None,
                 to_pdf: Callable[[bytes], bytes] | None = None) -> None:
        self.template = template
        self.tz = tz
        self.to_pdf = to_pdf or tiff_to_pdf

    def plan(self, fax: InboundFax, folder: Path, *, pdf: bool, quarantine: bool = False) -> Path:
        """The first free name from the template: NAME, NAME-2, NAME-3 … (all of its files free)."""
        stem, ext = os.path.splitext(render_name(self.template, fax, self.tz))
        if quarantine and not fax.image.startswith(_TIFF_MAGIC):
            ext = ".bin"  # not a TIFF: no viewer should be asked to open it as one
        extras = [".json"] + ([".error.txt"] if quarantine else [".pdf"] if pdf else [])
        for n in range(1, 10_000):
            candidate = stem if n == 1 else f"{stem}-{n}"
            if not any(os.path.lexists(folder / f"{candidate}{e}") for e in (ext, *extras)):
                return folder / f"{candidate}{ext}"
        raise OSError(errno.EEXIST, f"no free file name for {stem}{ext}", str(folder))

    def holds(self, path: Path, fax: InboundFax) -> bool:
        """True when ``path`` already is this fax, byte for byte (a crash came after the rename)."""
        try:
            if not path.is_file() or path.stat().st_size != len(fax.image):
                return False
            return _sha256_file(path) == hashlib.sha256(fax.image).hexdigest()
        except OSError:
            return False

    def present(self, path: Path) -> bool:
        return path.is_file()

    def store(self, fax: InboundFax, path: Path, check: Check, dest: Destination, *,
              resume: bool) -> Stored:
        folder = path.parent
        ensure_folder(folder)
        if resume and self.holds(path, fax):
            _drop_leftover_part(path)
        else:
            place_new(path, fax.image)  # FileExistsError: the core plans another name
        crash_point("inbound.after_rename")
        note = ""
        pdf_path: Path | None = None
        if dest.pdf:
            pdf_path, note = self._pdf(fax, path.with_suffix(".pdf"), resume)
        stored = Stored(path, len(fax.image), hashlib.sha256(fax.image).hexdigest(), pdf_path, note)
        place(path.with_suffix(".json"), _json(sidecar(fax, stored, check, dest)), replace=True)
        append_index(folder / INDEX_NAME, fax, path.name, resume=resume)
        return stored

    def quarantine(self, fax: InboundFax, path: Path, check: Check, *, resume: bool) -> Stored:
        ensure_folder(path.parent)
        if resume and self.holds(path, fax):
            _drop_leftover_part(path)
        else:
            place_new(path, fax.image)
        stored = Stored(path, len(fax.image), hashlib.sha256(fax.image).hexdigest())
        place(path.with_suffix(".json"), _json(sidecar(fax, stored, check, None)), replace=True)
        explanation = (
            f"Fax {fax.fax_id} from {fax.originator or 'an unknown sender'} was not accepted:\n"
            f"{check.reason}.\n\n"
            "It is still on the FAX.de server, and because FAX.de hands out the oldest fax first,\n"
            "no later fax can be collected until it is dealt with. Look at this file; then\n"
            f"    faxbridge receive -c CONFIG --release {fax.fax_id}\n"
            "deletes it on FAX.de (this copy stays here).\n"
        )
        place(path.parent / f"{path.stem}.error.txt", explanation.encode("utf-8"), replace=True)
        return stored

    def _pdf(self, fax: InboundFax, pdf_path: Path, resume: bool) -> tuple[Path | None, str]:
        if resume and pdf_path.is_file():
            _drop_leftover_part(pdf_path)
            return pdf_path, ""  # placed atomically before the crash: complete
        try:
            data = self.to_pdf(fax.image)
        except Exception as exc:  # img2pdf/Pillow cannot read it: the TIFF is what counts
            log.warning("fax %d: no PDF: %s", fax.fax_id, exc)
            return None, f"no PDF: {exc}"
        try:
            place_new(pdf_path, data)
        except FileExistsError:
            return None, f"no PDF: {pdf_path.name} exists"
        return pdf_path, ""


def tiff_to_pdf(image: bytes) -> bytes:
    """Every page of the TIFF, each on a page of its own size at its own resolution: nothing cropped
    or scaled (img2pdf embeds the image data losslessly; fax resolutions like 204×98 dpi keep their
    aspect ratio)."""
    import img2pdf

    return bytes(img2pdf.convert(image, rotation=img2pdf.Rotation.ifvalid))


def ensure_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)  # a regular file in the way: FileExistsError/NotADirectory
    fsync_dir(folder.parent)


def place_new(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``, which must not exist: temp name, fsync, link, fsync the folder."""
    place(path, data, replace=False)


def place(path: Path, data: bytes, *, replace: bool) -> None:
    # The temporary name is fixed per target, so a crash leaves at most one, reused next time;
    # it starts with a dot so that programs picking up *.tif never see a half-written file.
    part = path.with_name(f".{path.name}{_PART_SUFFIX}")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(part, path)
        else:
            _link_no_replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    fsync_dir(path.parent)


def _drop_leftover_part(path: Path) -> None:
    """Remove the temporary name of ``path``, placed before a crash that came between link()
    and unlink(): nobody else would ever remove it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_name(f".{path.name}{_PART_SUFFIX}"))


def _link_no_replace(part: Path, path: Path) -> None:
    """rename() that fails with FileExistsError instead of replacing: link() refuses an existing
    target atomically. File systems without hard links (some SMB/FAT mounts) get a check-then-
    rename — racy, but only against other programs, as one collector runs at a time."""
    try:
        os.link(part, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(part, path)
        return
    crash_point("inbound.after_link")  # both names stand; the next run removes the temporary one
    os.unlink(part)


def append_index(index: Path, fax: InboundFax, file_name: str, *, resume: bool) -> None:
    """Append one row to received.csv (created with a header); once per fax even across a crash."""
    if resume and _indexed(index, fax.fax_id):
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    fd = os.open(index, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        size = os.fstat(fd).st_size
        prefix = b""
        if size == 0:
            writer.writerow(INDEX_COLUMNS)
            prefix = b"\xef\xbb\xbf"  # the BOM makes Excel read UTF-8
        elif os.pread(fd, 1, size - 1) != b"\n":
            prefix = b"\r\n"  # a row cut short by a crash stays alone on its line
        writer.writerow(index_row(fax, file_name))
        try:
            _write_all(fd, prefix + buffer.getvalue().encode("utf-8"))
            os.fsync(fd)
        except OSError:
            # A full disk writes part of the row, then fails: cut it off again, so that the
            # retry (resume) neither takes the stub for the fax's row nor leaves it behind.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(index.parent)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a nearly full disk takes part of a write and
    reports no error until the next one."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _indexed(index: Path, fax_id: int) -> bool:
    try:
        text = index.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        return False
    return any(row and row[0] == str(fax_id) for row in csv.reader(io.StringIO(text)))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
