"""Which converter a document needs, and the documents of one job made fax-ready in their order.

FAX.de takes PDF, TIFF, BMP, HTML, DOC and XLS (FAXDE-API.md, SendFile1..3); those go as they are
(TIFF, BMP, DOC and XLS may be converted instead: ``convert.as_is``), a secured PDF is unlocked, and
everything else is converted to PDF: images (images.py), text (text.py), Office files
(office.py, LibreOffice). Every edge calls ``convert_documents`` in a worker thread, so hotfolder,
mail and ``faxbridge send`` convert alike. The converted PDF is what is page-counted and sent; the
caller keeps the original (for duplicate detection and the archive).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from faxbridge import documents
from faxbridge.convert import ConversionError
from faxbridge.convert.images import IMAGE_SUFFIXES, ImageOptions, images_to_pdf
from faxbridge.convert.pdf import is_encrypted, make_reproducible, unlock
from faxbridge.convert.settings import ConvertSettings, ImageGrouping
from faxbridge.convert.text import FONT_PACKAGE, TEXT_SUFFIXES, TextOptions, find_font, text_to_pdf
from faxbridge.documents import DocumentLimits
from faxbridge.model import Document

if TYPE_CHECKING:
    from faxbridge.convert.office import OfficeConverter

log = logging.getLogger(__name__)

AS_IS: Final = "as-is"
IMAGE: Final = "image"
TEXT: Final = "text"
OFFICE: Final = "office"
PDF: Final = "pdf"  # sent as it is unless it is encrypted
WINMAIL: Final = "winmail"  # Outlook's winmail.dat: the files inside it, each converted as it needs
CONVERTED_SUFFIX: Final = ".fax.pdf"  # the converted PDF beside its original: NAME.fax.pdf


@dataclass(frozen=True)
class Converted:
    """A document ready for FAX.de, and the documents as they arrived that it was made from."""

    document: Document
    originals: tuple[Document, ...]

    @property
    def is_converted(self) -> bool:
        return self.originals != (self.document,)


def kind_of(filename: str, settings: ConvertSettings) -> str | None:
    """How a document of this name is made fax-ready; None: faxbridge cannot send it at all."""
    if is_winmail(filename):
        return WINMAIL
    suffix = Path(filename).suffix.lower()
    fax_type = documents.file_type(filename)
    if fax_type == "pdf":
        return PDF
    if fax_type is not None and (fax_type not in ("tiff", "bmp", "doc", "xls") or fax_type in settings.as_is):
        return AS_IS
    if suffix in IMAGE_SUFFIXES:
        return IMAGE
    if suffix in TEXT_SUFFIXES:
        return TEXT
    if suffix in _office_suffixes():
        return OFFICE
    return None


def accepted_types() -> str:
    """For refusals: what faxbridge takes, in words."""
    return ("PDF, TIF, BMP, HTML, DOC and XLS files, images (JPEG, PNG, GIF, WebP, HEIC),"
            " text files (.txt) and Office documents (DOCX, ODT, RTF, XLSX, ODS, PPTX, ODP)")


def convert_documents(
    arrived: Sequence[Document], out_dir: Path, settings: ConvertSettings, limits: DocumentLimits
) -> tuple[list[Converted], list[str]]:
    """Each document made fax-ready, in order; images combined into one PDF unless configured
    otherwise. Returns (the documents to send, a sentence per document that could not be)."""
    results: list[Converted | None] = []
    problems: list[str] = []
    images: list[Document] = []
    image_slot = -1
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = _Targets(out_dir)
    try:
        arrived = _unpack_winmail(arrived, out_dir / "unpacked")
    except ConversionError as exc:
        return [], [_sentence(exc)]
    for document in arrived:
        kind = kind_of(document.filename, settings)
        try:
            if kind is None:
                raise ConversionError(f"{document.filename}: this type cannot be faxed; faxbridge takes {accepted_types()}")
            if kind == IMAGE and settings.images is ImageGrouping.COMBINE:
                if image_slot < 0:
                    image_slot = len(results)
                    results.append(None)  # the combined PDF takes the first image's place
                images.append(document)
                continue
            results.append(_convert_one(document, kind, targets, settings, limits))
        except ConversionError as exc:
            problems.append(_sentence(exc))
    if images:
        try:
            results[image_slot] = _images(images, targets, settings, limits)
        except ConversionError as exc:
            problems.append(_sentence(exc))
    if problems:
        return [], problems
    return [r for r in results if r is not None], []


def is_winmail(filename: str) -> bool:
    """Outlook's TNEF attachment, as it arrives by mail or is saved from one."""
    return Path(filename).name.lower() == "winmail.dat"


def _unpack_winmail(arrived: Sequence[Document], folder: Path) -> list[Document]:
    """Each winmail.dat replaced by the files inside it (convert.tnef), in their place and order."""
    if not any(is_winmail(d.filename) for d in arrived):
        return list(arrived)
    from faxbridge.convert import tnef

    result: list[Document] = []
    for document in arrived:
        if not is_winmail(document.filename):
            result.append(document)
            continue
        try:
            inner = tnef.unpack(document.path.read_bytes())
        except ConversionError as exc:
            raise ConversionError(f"{document.filename}: {exc}", action=exc.action) from None
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in inner:
            path = folder / f"{len(result) + 1}{Path(name).suffix.lower()}"  # its own name may repeat another's
            path.write_bytes(data)
            result.append(Document(documents.safe_filename(name), path))
    return result


def _sentence(exc: ConversionError) -> str:
    return f"{exc} — {exc.action}" if exc.action else str(exc)


class _Targets:
    """Where converted files go: ``NAME.fax.pdf`` in the work folder, numbered if NAME repeats."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.used: set[str] = set()

    def for_stem(self, stem: str) -> Path:
        name, n = f"{stem}{CONVERTED_SUFFIX}", 1
        while name in self.used:
            n += 1
            name = f"{stem} ({n}){CONVERTED_SUFFIX}"
        self.used.add(name)
        return self.out_dir / name


def _convert_one(
    document: Document, kind: str, targets: _Targets, settings: ConvertSettings, limits: DocumentLimits
) -> Converted:
    name = document.filename
    stem = Path(name).stem
    if kind == AS_IS:
        return Converted(document, (document,))
    if kind == PDF:
        if not is_encrypted(document.path):
            return Converted(document, (document,))
        target = targets.for_stem(stem)
        unlock(name, document.path, target)
        log.info("%s: a secured PDF that opens without a password, sent decrypted", name)
    elif kind == IMAGE:
        return _images([document], targets, settings, limits)
    elif kind == TEXT:
        target = targets.for_stem(stem)
        text_to_pdf(name, document.path, target, TextOptions(paper=settings.paper, max_pages=limits.max_pages))
    elif kind == OFFICE:
        target = targets.for_stem(stem)
        _office(name, document.path, target, settings)
    else:  # a winmail.dat found inside a winmail.dat
        raise ConversionError(f"{name}: an Outlook winmail.dat inside another cannot be faxed")
    return Converted(Document(f"{stem}.pdf", target, sources=(document.path,)), (document,))


def _images(
    images: Sequence[Document], targets: _Targets, settings: ConvertSettings, limits: DocumentLimits
) -> Converted:
    first = Path(images[0].filename).stem
    name = f"{first}.pdf" if len(images) == 1 else f"{first} (+{len(images) - 1} images).pdf"
    target = targets.for_stem(first)
    options = ImageOptions(paper=settings.paper, colour=settings.colour, max_pages=limits.max_pages)
    images_to_pdf([(d.filename, d.path) for d in images], target, options)
    return Converted(Document(name, target, sources=tuple(d.path for d in images)), tuple(images))


# --------------------------------------------------------------------------------------------------
# LibreOffice: one converter per work folder for the process (a fresh profile costs seconds), made
# when first needed and closed at exit.

_office_lock = threading.Lock()
_office_converters: dict[Path | None, OfficeConverter] = {}
_temporary_dirs: list[Path] = []  # work folders made for converters without one: removed at close


def _office_suffixes() -> frozenset[str]:
    try:
        from faxbridge.convert.office import OFFICE_SUFFIXES
    except ImportError:
        return frozenset()
    return OFFICE_SUFFIXES


def shared_office(settings: ConvertSettings) -> OfficeConverter:
    """The LibreOffice converter for ``settings.work_dir`` (the daemon's and ``faxbridge send``'s
    is <state_dir>/convert: the converter locks an instance folder per process there, so both can
    run at once); without one, a temporary folder."""
    from faxbridge.convert.office import OfficeConverter

    with _office_lock:
        converter = _office_converters.get(settings.work_dir)
        if converter is None:
            work_dir = settings.work_dir
            if work_dir is None:
                work_dir = Path(tempfile.mkdtemp(prefix="faxbridge-office-"))
                _temporary_dirs.append(work_dir)
            if not _office_converters:
                atexit.register(close_office)
            converter = _office_converters[settings.work_dir] = OfficeConverter(
                work_dir, timeout=settings.office_timeout
            )
        return converter


def close_office() -> None:
    """Stop every LibreOffice converter of the process and reap its runs (atexit)."""
    with _office_lock:
        converters = list(_office_converters.values())
        _office_converters.clear()
        temporary = list(_temporary_dirs)
        _temporary_dirs.clear()
    for converter in converters:
        converter.close()
    for work_dir in temporary:
        shutil.rmtree(work_dir, ignore_errors=True)


def _office(name: str, source: Path, target: Path, settings: ConvertSettings) -> None:
    if not settings.office:
        raise ConversionError(
            f"{name}: Office documents are not converted here (convert.office is off)",
            action="Send the document as a PDF.",
        )
    converter = shared_office(settings)
    if not converter.available():
        raise ConversionError(
            f"{name}: cannot be converted: {converter.missing_reason()}",
            action="Send the document as a PDF, or ask the administrator to install LibreOffice.",
        )
    try:
        converter.convert(source, target)
    except ConversionError as exc:  # the converter speaks of "the document"; the sender needs its name
        raise ConversionError(f"{name}: {exc}", action=exc.action or "Send the document as a PDF.") from None
    make_reproducible(target)  # LibreOffice dates each PDF and gives it a random /ID


def available_formats(settings: ConvertSettings) -> list[str]:
    """One line per kind of input, for ``check-config``: converted, sent as is, or why not."""
    font = find_font()
    lines = [
        "PDF, HTML: sent as they are (secured PDFs that open without a password are sent decrypted)",
        "TIFF, BMP: " + ("sent as they are" if {"tiff", "bmp"} <= settings.as_is else "converted to PDF"),
        f"images (JPEG, PNG, GIF, WebP, HEIC): converted to {settings.paper.upper()} PDF ({settings.colour})",
        "text (.txt): " + (f"converted to PDF with {font.name}" if font else
                          f"NOT available: no monospace TrueType font (install {FONT_PACKAGE})"),
    ]
    suffixes = " ".join(sorted(_office_suffixes() - {".doc", ".xls"}))
    if not settings.office:
        lines.append(f"Office ({suffixes or 'DOCX, ODT …'}): refused (convert.office is off)")
    elif not suffixes:
        lines.append("Office (DOCX, ODT …): NOT available in this build")
    else:
        converter = shared_office(settings)
        usable = converter.available_suffixes() if converter.available() else frozenset()
        if usable:
            lines.append(f"Office ({' '.join(sorted(usable - {'.doc', '.xls'}))}): converted to PDF by LibreOffice")
        if converter.missing_reason():
            lines.append(f"Office: NOT all available: {converter.missing_reason()}")
    doc_xls = [t.upper() for t in ("doc", "xls") if t in settings.as_is]
    converted = [t.upper() for t in ("doc", "xls") if t not in settings.as_is]
    if doc_xls:
        lines.append(f"{' and '.join(doc_xls)}: sent as they are")
    if converted:
        lines.append(f"{' and '.join(converted)}: converted to PDF by LibreOffice")
    return lines
