"""Reading an accepted mail into the jobs it asks for: body, attachments, X-Fax-* options, per recipient.

``plan_mail`` is the SMTP edge's translation step. It reads the spooled bytes, decodes charsets,
RFC 2047 subjects and RFC 2231 file names, writes the documents beside the spool, unpacks an
Outlook winmail.dat (convert.tnef), converts what FAX.de does not take to PDF (convert.pipeline),
checks them like hotfolder documents (documents.inspect), merges more than three PDFs into one (pypdf), and returns a
``MailPlan``: the SendRequests to submit, plus the problems to tell the sender. It blocks (parsing,
file writes, PDF work): call it in a worker thread. It is deterministic for the same input, so a
mail processed again after a crash yields the same parts in the same order.
"""

from __future__ import annotations

import datetime as dt
import email.errors
import email.utils
import io
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Final

from faxbridge import documents
from faxbridge.fsutil import write_atomically
from faxbridge.edges.smtp.text import (
    has_real_text,
    html_to_text,
    normalize_text,
    note_text,
    safe_filename,
    strip_signature,
    unflow,
)
from faxbridge.config import BodyMode, MultiRecipient, validate_options
from faxbridge.convert import ConversionError
from faxbridge.convert.pipeline import accepted_types, convert_documents, kind_of
from faxbridge.convert.settings import ConvertSettings
from faxbridge.documents import DocumentLimits
from faxbridge.errors import ConfigError, DocumentError
from faxbridge.model import Document, JobType, Recipient, SendRequest

log = logging.getLogger(__name__)

# X-Fax-* headers and the SendJob option each sets (FAXDE-API.md, "Parameter Options"). STATURL and
# MAILFROM are left out on purpose: a mail must not make FAX.de call URLs or send mail as someone.
HEADER_OPTIONS: Final[dict[str, str]] = {
    "x-fax-header": "FAXHEADER",
    "x-fax-station-id": "STATIONID",
    "x-fax-caller-id": "CALLERID",
    "x-fax-retry": "FAXRETRY",
    "x-fax-sms-from": "SMSFROM",
    "x-fax-flash": "FLASHSMS",
}
SEND_AT_HEADER: Final = "x-fax-send-at"

# Content types of documents that arrive without a usable file name.
_EXTENSION_FOR_TYPE: Final[dict[str, str]] = {
    "application/pdf": ".pdf",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
    "image/x-ms-bmp": ".bmp",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "text/html": ".html",
    # converted to PDF (convert.pipeline)
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "text/plain": ".txt",
    "application/rtf": ".rtf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.presentation": ".odp",
}
# Cryptographic signatures are not content: never faxed, never a reason to refuse a mail.
_SIGNATURE_TYPES: Final = frozenset(
    {
        "application/pgp-signature",
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
    }
)
MAX_DOCUMENTS: Final = 3  # SendFile1..3
NOTHING_TO_FAX: Final = (
    "nothing to fax: the mail has no attachment and no text beyond a signature"
    " (was the attachment forgotten?)"
)


@dataclass(frozen=True)
class Addressee:
    """One accepted RCPT TO."""

    address: str  # as the sender wrote it
    job_type: JobType
    number: str = ""  # E.164 for fax and SMS; empty for letters (the address is in the document)


@dataclass(frozen=True)
class MailSettings:
    body: BodyMode = BodyMode.AUTO
    trim_body: bool = True  # the note without the signature and a quoted earlier mail
    multi_recipient: MultiRecipient = MultiRecipient.SEPARATE
    limits: DocumentLimits = DocumentLimits()
    max_sms_chars: int = 1600  # ten SMS; FAX.de bills each 160 characters
    timezone: dt.tzinfo | None = None  # for X-Fax-Send-At without an offset; None: the host's
    convert: ConvertSettings = ConvertSettings()


@dataclass(frozen=True)
class Part:
    """One job the mail asks for."""

    index: int  # stable: becomes the job's source_ref "<mail key>:<index>"
    request: SendRequest
    addressees: tuple[Addressee, ...]


@dataclass(frozen=True)
class MailPlan:
    subject: str
    message_id: str
    parts: tuple[Part, ...]
    problems: tuple[tuple[str, str], ...]  # (recipient or "", sentence for the sender)
    notes: tuple[str, ...] = ()  # what was left out on purpose (inline images, signatures …)


@dataclass
class _Attachment:
    filename: str  # decoded, safe: what FAX.de and the sender see
    content_type: str
    data: bytes


@dataclass
class _Content:
    text: str = ""
    attachments: list[_Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Entry point


def plan_mail(
    data: bytes,
    addressees: Sequence[Addressee],
    settings: MailSettings,
    work_dir: Path,
    *,
    now: dt.datetime | None = None,
) -> MailPlan:
    """The jobs a mail asks for. Blocking: run it in a worker thread."""
    try:
        problem = structure_problem(data)
        message = parse(data) if problem is None else None
    except RecursionError:
        problem, message = TOO_DEEP, None
    if message is None:
        headers = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
        return MailPlan(header_text(headers, "Subject"), header_text(headers, "Message-ID"), (),
                        (("", problem or TOO_DEEP),))
    subject = header_text(message, "Subject")
    message_id = header_text(message, "Message-ID")
    try:
        content = extract(message)
        options, send_at, header_problems = read_fax_headers(message, settings, now=now)
    except (IndexError, ValueError, TypeError, AttributeError, KeyError, email.errors.MessageError) as exc:
        # The email package reads MIME headers lazily and, for some damaged ones, fails with
        # whatever it hits (IndexError for a cut-off "filename*"; found by test_properties.py).
        return MailPlan(subject, message_id, (), (("", f"{DAMAGED} ({type(exc).__name__})"),))
    problems: list[tuple[str, str]] = []
    parts: list[Part] = []
    notes = list(content.notes)

    if header_problems:
        return MailPlan(subject, message_id, (), tuple(("", p) for p in header_problems), tuple(notes))

    by_type: dict[JobType, list[Addressee]] = {}
    for addressee in addressees:
        by_type.setdefault(addressee.job_type, []).append(addressee)

    docs: tuple[Document, ...] | None = None
    doc_problems: list[str] = []

    def documents_once() -> tuple[tuple[Document, ...], list[str]]:
        nonlocal docs, doc_problems
        if docs is None:
            docs, doc_problems = prepare_documents(
                content.attachments, work_dir, settings.limits, settings.convert
            )
        return docs, doc_problems

    index = 0
    for job_type, group in by_type.items():
        try:
            job_options = _options_for(options, job_type)
        except ConfigError as exc:
            problems.extend((a.address, exc.problem) for a in group)
            continue
        if job_type is JobType.SMS:
            text, problem = sms_text(content.text, subject, settings.max_sms_chars,
                                     trim=settings.trim_body)
            if problem:
                problems.extend((a.address, problem) for a in group)
                continue
            if content.attachments:
                names = ", ".join(a.filename for a in content.attachments)
                notes.append(f"attachments are not sent by SMS ({names})")
            doc_tuple: tuple[Document, ...] = ()
        else:
            doc_tuple, found = documents_once()
            if found:
                problems.extend((a.address, p) for a in group for p in found)
                continue
            if job_type is JobType.FAX:
                text = fax_text(content.text, bool(doc_tuple), settings.body, trim=settings.trim_body)
                if not doc_tuple and not has_real_text(text):
                    # A signature alone is a forgotten attachment, not a fax worth paying for.
                    problems.extend((a.address, NOTHING_TO_FAX) for a in group)
                    continue
            else:  # letters read the address from page 1 of SendFile1; SendText is not used
                text = ""
                if not doc_tuple:
                    problems.extend(
                        (a.address, "a letter needs a document (PDF) with the address on page 1")
                        for a in group
                    )
                    continue
        if not job_type.needs_recipient:
            batches = [group[:1]]  # one letter, whatever address it was mailed to
        elif settings.multi_recipient is MultiRecipient.COMBINED:
            batches = [group]
        else:
            batches = [[a] for a in group]
        for batch in batches:
            recipients = (
                tuple(Recipient(a.number) for a in batch) if job_type.needs_recipient else ()
            )
            request = SendRequest(
                job_type=job_type,
                recipients=recipients,
                documents=doc_tuple,
                text=text,
                send_at=send_at,
                options=job_options,
            )
            parts.append(Part(index, request, tuple(batch)))
            index += 1
    return MailPlan(subject, message_id, tuple(parts), tuple(problems), tuple(notes))


# --------------------------------------------------------------------------------------------------
# Reading the message


# Multipart sections (distinct boundaries) in one mail: a fax mail needs a handful. Python's parser
# descends one level of generators per nesting level — each line of a deeply nested "multipart
# bomb" passes through all of them, and past a few hundred levels it fails with RecursionError.
DAMAGED: Final = (
    "the mail's MIME structure is damaged and could not be read; send it again, with the"
    " documents attached to a plain mail"
)
MAX_MIME_SECTIONS: Final = 50
TOO_DEEP: Final = (
    f"the mail is built of more than {MAX_MIME_SECTIONS} nested MIME sections and was not read;"
    " attach the documents to a plain mail"
)
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^"\s;]+)', re.IGNORECASE)


def structure_problem(data: bytes) -> str | None:
    """Why a mail is not even parsed, or None: a cheap look at its raw bytes first."""
    if len(set(_BOUNDARY.findall(data))) > MAX_MIME_SECTIONS:
        return TOO_DEEP
    return None


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def header_text(message: Message, name: str) -> str:
    """A header decoded (RFC 2047) as one line; '' when missing or unreadable."""
    try:
        value = message.get(name)
    except Exception:  # a malformed header must not stop the mail
        value = None
    if value is None:
        return ""
    return re.sub(r"\s+", " ", str(value)).strip()


def extract(message: EmailMessage) -> _Content:
    """The body text and the attachments to send; inline images and signatures are left out."""
    content = _Content()
    body = message.get_body(preferencelist=("plain", "html"))
    html_body = message.get_body(preferencelist=("html",))
    if body is not None:
        text = part_text(body)
        content.text = html_to_text(text) if body.get_content_subtype() == "html" else text
    html_source = part_text(html_body) if html_body is not None else ""
    skip = {id(p) for p in (body, html_body) if p is not None}
    for leaf, in_alternative in _leaves(message):
        if id(leaf) in skip:
            continue
        ctype = leaf.get_content_type()
        disposition = leaf.get_content_disposition()
        name = leaf.get_filename()
        if ctype in _SIGNATURE_TYPES:
            content.notes.append(f"signature part {name or ctype} not faxed")
            continue
        if leaf.get_content_maintype() == "text" and not name and disposition != "attachment":
            if in_alternative:
                continue  # another rendering of the body
            if leaf.get_content_subtype() == "plain":
                extra = part_text(leaf)
                content.text = normalize_text(content.text + "\n\n" + extra)
            continue
        if leaf.get_content_maintype() == "image" and _is_inline_image(leaf, html_source):
            content.notes.append(f"inline image {name or ctype} not faxed")
            continue
        content.attachments.append(_attachment(leaf, len(content.attachments) + 1))
    content.text = normalize_text(content.text)
    return content


def _leaves(part: Message, in_alternative: bool = False) -> Iterator[tuple[Message, bool]]:
    """Leaf parts in order; a forwarded message (message/rfc822) is one leaf, not opened."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        alternative = in_alternative or part.get_content_subtype() == "alternative"
        for child in part.get_payload():  # type: ignore[union-attr]
            yield from _leaves(child, alternative)
    else:
        yield part, in_alternative


# An inline image at least this large is a photo to fax (phone mail apps send photos inline),
# not a signature logo or an icon pasted into the text.
INLINE_PHOTO_SIZE: Final = 100_000


def _is_inline_image(part: Message, html: str) -> bool:
    """Signature logos and pasted pictures: shown inside the text, not attached as documents."""
    cid = (part.get("Content-ID") or "").strip().strip("<>")
    if cid and f"cid:{cid}" in html:
        return True
    if part.get_content_disposition() != "attachment":
        payload = part.get_payload(decode=True)
        return not (part.get_filename() and isinstance(payload, bytes) and len(payload) >= INLINE_PHOTO_SIZE)
    return False


def part_text(part: Message) -> str:
    """A text part decoded by its charset (unknown charsets as UTF-8 with replacements)."""
    try:
        text = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AssertionError, KeyError):
        payload = part.get_payload(decode=True) or b""
        assert isinstance(payload, bytes)
        text = payload.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", errors="replace")
    if part.get_param("format", "").lower() == "flowed":  # type: ignore[union-attr]
        delsp = str(part.get_param("delsp", "")).lower() == "yes"
        text = unflow(text, delsp=delsp)
    return normalize_text(text)


def _attachment(part: Message, number: int) -> _Attachment:
    ctype = part.get_content_type()
    raw_name = part.get_filename() or ""
    name = safe_filename(raw_name, fallback=f"attachment-{number}")
    if documents.file_type(name) is None and ctype in _EXTENSION_FOR_TYPE and "." not in name:
        name += _EXTENSION_FOR_TYPE[ctype]  # "scan" sent as application/pdf, a photo as image/jpeg
    if ctype == "message/rfc822":
        inner = part.get_payload()
        data = inner[0].as_bytes() if isinstance(inner, list) and inner else part.as_bytes()
        if not raw_name:
            name = f"forwarded-message-{number}.eml"
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    return _Attachment(name, ctype, data)


# --------------------------------------------------------------------------------------------------
# Documents


def prepare_documents(
    attachments: Sequence[_Attachment],
    work_dir: Path,
    limits: DocumentLimits,
    convert: ConvertSettings = ConvertSettings(),
) -> tuple[tuple[Document, ...], list[str]]:
    """Write, convert, check and (if more than 3) merge the attachments; returns (documents, problems)."""
    problems: list[str] = []
    unpacked: list[_Attachment] = []
    for attachment in attachments:
        if _is_tnef(attachment):
            try:
                unpacked.extend(unpack_tnef(attachment))
            except ConversionError as exc:
                problems.append(str(exc))
        else:
            unpacked.append(attachment)
    attachments = unpacked
    for attachment in attachments:
        if kind_of(attachment.filename, convert) is None:
            problems.append(f"{attachment.filename}: this type cannot be faxed; faxbridge takes {accepted_types()}")
    if problems:
        return (), problems
    work_dir.mkdir(parents=True, exist_ok=True)
    arrived: list[Document] = []
    for i, attachment in enumerate(attachments, 1):
        extension = Path(attachment.filename).suffix.lower()
        path = work_dir / f"{i}{extension}"
        write_atomically(path, attachment.data)
        arrived.append(Document(attachment.filename, path))
    converted, problems = convert_documents(arrived, work_dir / "converted", convert, limits)
    if problems:
        return (), problems
    written: list[Document] = []
    for document in (c.document for c in converted):
        try:
            documents.inspect(document.path, document.filename, limits)
        except DocumentError as exc:
            problems.append(str(exc))
            continue
        written.append(document)
    if problems:
        return (), problems
    if len(written) <= MAX_DOCUMENTS:
        return tuple(written), []
    pdfs = [d for d in written if documents.file_type(d.filename) == "pdf"]
    others = [d for d in written if d not in pdfs]
    if len(pdfs) < 2 or len(others) + 1 > MAX_DOCUMENTS:
        names = ", ".join(d.filename for d in others)
        return (), [
            f"{len(written)} attachments: FAX.de takes at most {MAX_DOCUMENTS} documents per fax."
            f" PDFs are merged into one, but {names} cannot be merged — send at most"
            f" {MAX_DOCUMENTS} documents, or make them PDFs"
        ]
    merged_path = work_dir / "merged.pdf"
    merged_name = f"{Path(pdfs[0].filename).stem} (+{len(pdfs) - 1} merged).pdf"
    merge_pdfs([d.path for d in pdfs], merged_path)
    try:
        documents.inspect(merged_path, merged_name, limits)
    except DocumentError as exc:
        return (), [f"the {len(pdfs)} PDFs merged into one: {exc}"]
    merged = Document(merged_name, merged_path)
    result: list[Document] = []
    for document in written:  # the merged PDF takes the place of the first PDF
        if document is pdfs[0]:
            result.append(merged)
        elif document not in pdfs:
            result.append(document)
    return tuple(result), []


_TNEF_TYPES: Final = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


def _is_tnef(attachment: _Attachment) -> bool:
    return attachment.content_type in _TNEF_TYPES or attachment.filename.lower() == "winmail.dat"


def unpack_tnef(attachment: _Attachment) -> list[_Attachment]:
    """The files inside an Outlook winmail.dat, each as if attached directly."""
    try:
        from faxbridge.convert import tnef
    except ImportError:
        raise ConversionError(
            f"{attachment.filename}: an Outlook winmail.dat cannot be unpacked here — send the mail"
            " in Internet format (HTML or plain text) with the documents attached"
        ) from None
    inner = tnef.unpack(attachment.data)
    return [
        _Attachment(safe_filename(name, fallback=f"winmail-{i}"), "application/octet-stream", data)
        for i, (name, data) in enumerate(inner, 1)
    ]


def merge_pdfs(paths: Sequence[Path], target: Path) -> None:
    import pypdf  # only mails with more than three PDFs need it

    writer = pypdf.PdfWriter()
    for path in paths:
        writer.append(str(path))
    buffer = io.BytesIO()
    writer.write(buffer)
    write_atomically(target, buffer.getvalue())


# --------------------------------------------------------------------------------------------------
# Text


def fax_text(body: str, has_documents: bool, mode: BodyMode, *, trim: bool = True) -> str:
    """SendText of a fax: the body as note/cover page, as smtp.body says; with ``trim``
    (smtp.trim_body) without its signature and a quoted earlier mail."""
    if mode is BodyMode.IGNORE:
        return ""
    note = note_text(body) if trim else body
    if mode is BodyMode.COVER:
        return note
    # auto: only when there is no document, or the body says more than a signature.
    if not has_documents or has_real_text(note):
        return note if note.strip() else ""
    return ""


def sms_text(body: str, subject: str, limit: int, *, trim: bool = True) -> tuple[str, str]:
    """SendText of an SMS: the body without its signature (and with ``trim`` without a quoted
    earlier mail), else the subject; (text, problem)."""
    text = (note_text(body) if trim else strip_signature(body)) or subject.strip()
    if not text:
        return "", "an SMS needs a text: the mail body and subject are empty"
    if len(text) > limit:
        return "", (
            f"the SMS text has {len(text)} characters; at most {limit}"
            f" ({limit // 160} messages) are sent"
        )
    return text, ""


# --------------------------------------------------------------------------------------------------
# X-Fax-* headers


def read_fax_headers(
    message: Message, settings: MailSettings, *, now: dt.datetime | None = None
) -> tuple[dict[str, str], dt.datetime | None, list[str]]:
    """Options and the send time from X-Fax-* headers: (options by header, send_at, problems)."""
    options: dict[str, str] = {}
    send_at: dt.datetime | None = None
    problems: list[str] = []
    for name in message.keys():
        lowered = name.lower()
        if not lowered.startswith("x-fax-"):
            continue
        value = header_text(message, name)
        if lowered == SEND_AT_HEADER:
            try:
                send_at = parse_send_at(value, settings.timezone, now=now)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        elif lowered in HEADER_OPTIONS:
            options[lowered] = value
        else:
            known = ", ".join(_header_name(h) for h in [*HEADER_OPTIONS, SEND_AT_HEADER])
            problems.append(f"{name}: unknown header; faxbridge understands {known}")
    return options, send_at, problems


def _options_for(options: dict[str, str], job_type: JobType) -> tuple[tuple[str, str], ...]:
    """The SendJob Options for one job type; ConfigError(problem naming the header) if invalid."""
    result: list[tuple[str, str]] = []
    for header, value in options.items():
        option = HEADER_OPTIONS[header]
        raw: object = value
        if option == "FLASHSMS":
            if value.strip().lower() in ("", "no", "false", "0", "off"):
                continue
            if value.strip().lower() not in ("yes", "true", "1", "on"):
                raise ConfigError(_header_name(header), f"{_header_name(header)}: expected yes or no")
            raw = True
        try:
            result.extend(validate_options({option: raw}, job_type, path=_header_name(header)))
        except ConfigError as exc:
            raise ConfigError(exc.path, f"{_header_name(header)}: {exc.problem}") from None
    return tuple(result)


def _header_name(lowered: str) -> str:
    return "-".join(word.capitalize() for word in lowered.split("-"))


def parse_send_at(
    value: str, timezone: dt.tzinfo | None, *, now: dt.datetime | None = None
) -> dt.datetime | None:
    """X-Fax-Send-At: ISO 8601 or an RFC 5322 date; without an offset, local time.

    A time in the past means "at once" (FAXDE-API.md, SendJob: SendDateTime), returned as None.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty; expected a time like 2025-03-01 14:30 or 2025-03-01T14:30+01:00")
    when: dt.datetime | None = None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = None
    if when is None:
        raise ValueError(
            f"{text!r} is not a time; expected e.g. 2025-03-01 14:30 or 2025-03-01T14:30+01:00"
        )
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone) if timezone else when.astimezone()
        when = when.astimezone(dt.timezone.utc)
    except OverflowError:  # year 1 or 9999 moved across a time zone
        raise ValueError(f"{text!r} is out of range") from None
    current = now or dt.datetime.now(dt.timezone.utc)
    if when <= current:
        return None
    if when - current > dt.timedelta(days=366):
        raise ValueError(f"{text!r} is more than a year ahead")
    return when
