"""From a claimed unit's files to a SendRequest: sidecar YAML, CSV recipient lists, file-name numbers.

Recipients come from the first source that names any (the issue's order):
  1. the sidecar ``NAME.yaml`` (``recipient`` / ``recipients``),
  2. the list ``NAME.csv`` (one job to many recipients: FAX.de's RecipientFile),
  3. a number at the start of the document's name (names.recipient_from_name),
  4. the folder's fixed ``recipient``.
iLetter and QSign need none (the address is printed in the document).

Every problem raises ``Refusal`` with the sentence and what to do; the file then goes to failed/.
The functions read sidecars and SMS texts, and convert documents FAX.de does not take (photos,
text, Office files) into PDFs inside the claim (convert.pipeline): the caller runs them in a thread.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from faxbridge.config import OPTION_RULES, HotfolderConfig, validate_options
from faxbridge.convert.pipeline import convert_documents
from faxbridge.documents import DocumentLimits
from faxbridge.errors import ConfigError, FaxbridgeError, NumberError
from faxbridge.model import Document, JobType, Recipient, SendRequest
from faxbridge.numbers import NumberPolicy

from faxbridge.edges.hotfolder.files import CONVERTED_DIR
from faxbridge.edges.hotfolder.names import recipient_from_name, stem

SIDECAR_KEYS: Final = (
    "recipient", "recipients", "reference", "options", "send_at", "text", "job_type", "files",
)  # fmt: skip
MAX_SIDECAR_SIZE: Final = 64 * 1024
MAX_LIST_SIZE: Final = 2 * 1024 * 1024
MAX_LIST_RECIPIENTS: Final = 10_000
# An SMS folder sends NAME.txt as the message; ten SMS are plenty (FAX.de bills per 160 chars).
MAX_SMS_TEXT: Final = 1600

_EMAIL_RE: Final = re.compile(r"[^@\s,;<>\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}")


class Refusal(FaxbridgeError):
    """The files cannot become a job as they are; ``action`` says what the user should do."""

    def __init__(self, message: str, action: str = "") -> None:
        super().__init__(message)
        self.action = action


@dataclass(frozen=True)
class Sidecar:
    """A NAME.yaml as written, checked for form; recipients are judged later with the job type."""

    recipients: tuple[Recipient, ...] = ()
    reference: str = ""
    options: Mapping[str, Any] | None = None
    send_at: dt.datetime | None = None
    text: str | None = None
    job_type: JobType | None = None
    files: tuple[str, ...] = ()


def _refuse_key(name: str, key: str, problem: str) -> Refusal:
    return Refusal(f"{name}: {key}: {problem}", f"Correct {name} and drop the files in again.")


def read_text(data: bytes) -> str:
    """Text as office tools write it: UTF-8 (with or without BOM), else Windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_sidecar(data: bytes, name: str) -> Sidecar:
    """A sidecar YAML's keys; raises Refusal naming the key and the problem."""
    if len(data) > MAX_SIDECAR_SIZE:
        raise Refusal(f"{name}: {len(data)} bytes is too large for a sidecar",
                      "A sidecar holds a few lines of instructions; check that it is the right file.")
    try:
        loaded = yaml.safe_load(read_text(data))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise Refusal(f"{name}: not valid YAML{where}: {problem}",
                      f"Correct {name} (YAML, e.g. recipient: \"+49 40 1234567\") and drop the files in again.") from None
    except RecursionError:  # [[[[… nested thousands deep: PyYAML builds nodes recursively
        raise Refusal(f"{name}: nested too deeply to be instructions",
                      f"Correct {name} and drop the files in again.") from None
    except Exception as exc:
        # PyYAML's constructors raise what they happen to: ValueError for 2025-02-30,
        # AttributeError for an empty "!!timestamp" (found by tests/test_properties.py).
        raise Refusal(f"{name}: a value cannot be read: {exc}",
                      f"Correct {name} and drop the files in again.") from None
    if loaded is None:
        return Sidecar()
    if not isinstance(loaded, dict):
        raise Refusal(f"{name}: expected keys like recipient: and options:, got a {type(loaded).__name__}",
                      f"Write {name} as YAML keys, e.g. recipient: \"+49 40 1234567\".")
    for key in loaded:
        if key not in SIDECAR_KEYS:
            close = difflib.get_close_matches(str(key), SIDECAR_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(SIDECAR_KEYS)}"
            raise _refuse_key(name, str(key), f"unknown key ({hint})")
    if "recipient" in loaded and "recipients" in loaded:
        raise _refuse_key(name, "recipients", "give recipient or recipients, not both")
    reference = _optional_text(loaded, "reference", name, allow_numbers=True) or ""
    recipients: list[Recipient] = []
    if loaded.get("recipient") is not None:
        recipients.append(Recipient(_address_text(loaded["recipient"], name, "recipient"), reference))
    if loaded.get("recipients") is not None:
        items = loaded["recipients"]
        if not isinstance(items, list) or not items:
            raise _refuse_key(name, "recipients", "expected a list of numbers or addresses")
        for i, item in enumerate(items):
            key = f"recipients[{i}]"
            if isinstance(item, dict):
                unknown = set(item) - {"recipient", "number", "address", "reference"}
                given = [k for k in ("recipient", "number", "address") if k in item]
                if unknown or len(given) != 1:
                    raise _refuse_key(name, key, "expected {number: \"…\", reference: \"…\"}")
                ref = item.get("reference", reference)
                ref = str(ref) if isinstance(ref, (str, int)) and not isinstance(ref, bool) else None
                if ref is None:
                    raise _refuse_key(name, f"{key}.reference", "expected text")
                recipients.append(Recipient(_address_text(item[given[0]], name, key), ref))
            else:
                recipients.append(Recipient(_address_text(item, name, key), reference))
    options = loaded.get("options")
    if options is not None and not isinstance(options, dict):
        raise _refuse_key(name, "options", "expected keys like STATIONID: ACME")
    job_type = None
    if loaded.get("job_type") is not None:
        raw = loaded["job_type"]
        try:
            job_type = JobType(str(raw).strip().lower())
        except ValueError:
            choices = ", ".join(t.value for t in JobType)
            raise _refuse_key(name, "job_type", f"expected one of {choices}; got {raw!r}") from None
    files: tuple[str, ...] = ()
    if loaded.get("files") is not None:
        raw_files = loaded["files"]
        if not isinstance(raw_files, list) or not raw_files or not all(isinstance(f, str) for f in raw_files):
            raise _refuse_key(name, "files", "expected a list of 1 to 3 file names in this folder")
        for f in raw_files:
            if not f.strip() or "/" in f or "\\" in f or f.strip() in (".", ".."):
                raise _refuse_key(name, "files", f"{f!r} is not a file name in this folder")
        files = tuple(dict.fromkeys(f.strip() for f in raw_files))
        if len(files) > 3:
            raise _refuse_key(name, "files", f"{len(files)} files; FAX.de takes at most 3 per job")
    return Sidecar(
        recipients=tuple(recipients),
        reference=reference,
        options=options,
        send_at=_send_at(loaded.get("send_at"), name),
        text=_optional_text(loaded, "text", name),
        job_type=job_type,
        files=files,
    )


def sidecar_files(data: bytes, name: str) -> tuple[str, ...] | None:
    """Only the ``files`` list of a sidecar (for planning); None if the sidecar cannot be read."""
    try:
        return parse_sidecar(data, name).files
    except Refusal:
        return None


def _address_text(value: Any, name: str, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str):
        hint = ""
        if isinstance(value, int):
            # YAML reads +4940123 as the integer 4940123 and 040123 as an octal number.
            hint = " — put numbers in quotes: \"+49 40 123456\""
        raise _refuse_key(name, key, f"expected text{hint}; got {value!r}")
    if not value.strip():
        raise _refuse_key(name, key, "is empty")
    return value.strip()


def _optional_text(data: Mapping[str, Any], key: str, name: str, *, allow_numbers: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if allow_numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _refuse_key(name, key, f"expected text; got {value!r}")
    return value


def _send_at(value: Any, name: str) -> dt.datetime | None:
    """An ISO date and time; without a zone it is the local time of the faxbridge host."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        raise _refuse_key(name, "send_at", "a date alone is not enough; give a time too (2025-03-01T08:00)")
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _refuse_key(name, "send_at", f"expected a date and time like 2025-03-01T08:00+01:00; got {value!r}") from None
    else:
        raise _refuse_key(name, "send_at", f"expected a date and time; got {value!r}")
    try:
        if when.tzinfo is None:
            when = when.astimezone()  # local time, as the person writing the sidecar means it
        return when.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):  # year 1 or 9999 moved across a time zone
        raise _refuse_key(name, "send_at", f"{value!s} is out of range") from None


@dataclass(frozen=True)
class ListEntry:
    line: int
    address: str
    reference: str = ""


def parse_recipient_list(data: bytes, name: str) -> list[ListEntry]:
    """A CSV list (FAXDE-API.md, RecipientFile): a recipient per line, optionally a reference id.

    Comma, semicolon (German spreadsheet exports) or tab; a header line is skipped when its first
    cell holds neither a digit nor an @; empty lines and lines starting with # are skipped.
    """
    if len(data) > MAX_LIST_SIZE:
        raise Refusal(f"{name}: {len(data)} bytes is too large for a recipient list",
                      f"Split the list; at most {MAX_LIST_RECIPIENTS} recipients per job.")
    if b"\x00" in data:
        raise Refusal(f"{name}: not a text file", "Save the list as CSV (comma or semicolon separated).")
    text = read_text(data)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    delimiter = ";" if ";" in first else "\t" if "\t" in first else ","
    entries: list[ListEntry] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header_checked = False
    for row in _rows(reader, name):
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if not header_checked:
            header_checked = True
            if not re.search(r"[\d@]", cells[0]):
                continue  # "Recipient;Reference", "Fax", "Nummer"
        entries.append(ListEntry(line, cells[0], cells[1] if len(cells) > 1 else ""))
        if len(entries) > MAX_LIST_RECIPIENTS:
            raise Refusal(f"{name}: more than {MAX_LIST_RECIPIENTS} recipients",
                          "Split the list into several jobs.")
    if not entries:
        raise Refusal(f"{name}: the list holds no recipient",
                      "Put one number per line (optionally a reference id after a comma).")
    return entries


def _rows(reader: Any, name: str) -> Iterator[list[str]]:
    """The reader's rows; a line it cannot read (a quoted cell of 128 kB, …) refuses the list."""
    try:
        yield from reader
    except csv.Error as exc:
        raise Refusal(f"{name} line {reader.line_num}: cannot be read as CSV: {exc}",
                      "Save the list as CSV (comma or semicolon separated), one number per line.") from None


@dataclass(frozen=True)
class UnitFiles:
    """A claimed unit as instructions sees it: paths in the claim area, names as FAX.de sees them."""

    documents: tuple[tuple[str, Path], ...]  # (file name for FAX.de, claimed path)
    yaml: tuple[str, Path] | None = None
    csv: tuple[str, Path] | None = None


@dataclass(frozen=True)
class Prepared:
    request: SendRequest
    recipient_source: str  # sidecar, list, file name, folder, none — for the log and meta


def prepare_request(
    unit: UnitFiles, folder: HotfolderConfig, policy: NumberPolicy, limits: DocumentLimits = DocumentLimits()
) -> Prepared:
    """The SendRequest for a claimed unit; raises Refusal (or NumberError) with the reason.

    Documents FAX.de does not take are converted to PDFs in the claim's CONVERTED_DIR; the
    request sends those, and the originals stay in the claim (to be archived beside them).
    """
    sidecar = Sidecar()
    if unit.yaml is not None:
        name, path = unit.yaml
        sidecar = parse_sidecar(path.read_bytes(), name)
    job_type = sidecar.job_type or folder.job_type
    options = _options(folder, sidecar, job_type, unit.yaml[0] if unit.yaml else "")

    text = sidecar.text if sidecar.text is not None else folder.text
    documents: list[Document] = []
    for filename, path in unit.documents:
        if job_type is JobType.SMS:
            if not filename.lower().endswith(".txt"):
                raise Refusal(f"{filename}: an SMS folder sends text files (NAME.txt) as the message",
                              "Drop the message as a .txt file, or use a fax folder for documents.")
            if sidecar.text is None:
                text = _sms_text(path, filename)
            continue
        documents.append(Document(filename, path))
    if job_type is JobType.SMS and not text.strip():
        raise Refusal("the SMS has no text", "Write the message into NAME.txt or the sidecar's text:.")
    if not documents and not text.strip():
        raise Refusal("nothing to send: no document and no text",
                      "Drop a document (PDF, TIF, DOC, XLS, HTML, BMP), or list it under files:.")
    if job_type in (JobType.ILETTER, JobType.ILETTER_COLOR, JobType.QSIGN) and not documents:
        raise Refusal(f"a {job_type} job needs a document with the address on page 1",
                      "Drop the letter as a PDF.")

    recipients, source = _recipients(unit, sidecar, folder, job_type, policy)
    if documents:
        # After the recipients: a unit refused for its number is not converted first.
        converted, problems = convert_documents(
            documents, unit.documents[0][1].parent / CONVERTED_DIR, folder.convert, limits
        )
        if problems:
            raise Refusal("\n".join(problems), "Send the document as a PDF, or correct it and drop it in again.")
        if len(converted) > 3:  # a winmail.dat may hold more files than FAX.de takes
            raise Refusal(f"{len(converted)} documents after unpacking; FAX.de takes at most 3 per job (SendFile1..3)",
                          "Send the files in several drops, or as one PDF.")
        documents = [c.document for c in converted]
    request = SendRequest(
        job_type=job_type,
        recipients=recipients,
        documents=tuple(documents),
        text=text,
        send_at=sidecar.send_at,
        options=options,
    )
    return Prepared(request, source)


def _sms_text(path: Path, filename: str) -> str:
    text = read_text(path.read_bytes()).strip()
    if len(text) > MAX_SMS_TEXT:
        raise Refusal(f"{filename}: {len(text)} characters is more than {MAX_SMS_TEXT} for an SMS",
                      "Shorten the message.")
    return text


def _options(
    folder: HotfolderConfig, sidecar: Sidecar, job_type: JobType, sidecar_name: str
) -> tuple[tuple[str, str], ...]:
    """The folder's options with the sidecar's on top; folder options that do not apply to a job
    type the sidecar chose are dropped (they were defaults for the folder's type)."""
    merged = {k: v for k, v in folder.options if job_type in OPTION_RULES[k].job_types}
    if sidecar.options:
        try:
            extra = validate_options(dict(sidecar.options), job_type, f"{sidecar_name}: options")
        except ConfigError as exc:
            raise Refusal(str(exc), f"Correct {sidecar_name} and drop the files in again.") from None
        merged.update(dict(extra))
    return tuple(merged.items())


def _recipients(
    unit: UnitFiles, sidecar: Sidecar, folder: HotfolderConfig, job_type: JobType, policy: NumberPolicy
) -> tuple[tuple[Recipient, ...], str]:
    if sidecar.recipients:
        where = unit.yaml[0] if unit.yaml else "sidecar"
        return _judge(
            [(r.address, r.reference, f"{where}: recipient {r.address!r}") for r in sidecar.recipients],
            job_type, policy,
        ), "sidecar"
    if unit.csv is not None:
        name, path = unit.csv
        entries = parse_recipient_list(path.read_bytes(), name)
        return _judge(
            [(e.address, e.reference or sidecar.reference, f"{name} line {e.line}") for e in entries],
            job_type, policy,
        ), "list"
    if not job_type.needs_recipient:
        return (), "document"
    if job_type.dials_numbers and unit.documents:
        from_name = recipient_from_name(stem(unit.documents[0][0]))
        if from_name is not None:
            reference = from_name.reference or sidecar.reference
            where = f"file name {unit.documents[0][0]!r}"
            if from_name.shorter and _is_number(from_name.shorter, job_type, policy):
                rest = from_name.number[len(from_name.shorter):].strip()
                raise Refusal(
                    f"{where}: which digits are the number? {from_name.number!r} and {from_name.shorter!r}"
                    f" (followed by {rest!r}) are both valid numbers",
                    "End the number with '_' or ' - ' (e.g. '040 1234567_4711 Mueller.pdf'), or write it"
                    " without spaces; faxbridge does not guess where a fax number ends.",
                )
            return _judge([(from_name.number, reference, where)], job_type, policy), "file name"
    if folder.recipient:
        return (Recipient(folder.recipient, sidecar.reference),), "folder"
    example = "+49 40 1234567_Invoice.pdf" if job_type.dials_numbers else "NAME.yaml with recipient: alice@example.com"
    raise Refusal(
        "no recipient: not in a sidecar, a list, the file name, nor configured for the folder",
        f"Name the file like {example}, add a NAME.yaml with recipient:, or a NAME.csv list.",
    )


def _is_number(text: str, job_type: JobType, policy: NumberPolicy) -> bool:
    try:
        policy.normalize(text, purpose=job_type.value)
    except NumberError:
        return False
    return True


def _judge(
    items: Sequence[tuple[str, str, str]], job_type: JobType, policy: NumberPolicy
) -> tuple[Recipient, ...]:
    """Every recipient checked; all problems listed at once (up to ten), none guessed."""
    recipients: list[Recipient] = []
    problems: list[str] = []
    for address, reference, where in items:
        if "]" in reference or "[" in reference or "," in reference:
            problems.append(f"{where}: the reference must not contain [ ] or ,")
            continue
        if job_type.dials_numbers:
            try:
                recipients.append(Recipient(policy.normalize(address, purpose=job_type.value), reference))
            except NumberError as exc:
                problems.append(f"{where}: {exc.reason}")
        elif _EMAIL_RE.fullmatch(address):
            recipients.append(Recipient(address, reference))
        else:
            problems.append(f"{where}: not a mail address")
    if problems:
        shown = problems[:10] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise Refusal(
            "recipient not accepted:\n  " + "\n  ".join(shown),
            "Correct the number (with area code, e.g. 040 1234567 or +49 40 1234567); premium-rate,"
            " service and foreign numbers outside numbers.allowed_countries are refused.",
        )
    unique = list(dict.fromkeys(recipients))
    return tuple(unique)
