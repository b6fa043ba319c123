"""Office documents (Word, Excel, PowerPoint, OpenDocument, RTF) to PDF through a small pool of headless LibreOffice processes.

Why a pool of `soffice --convert-to` runs and not a kept listener: a listener is driven through UNO, and
neither the daemon's Python (3.11 in its venv) nor this machine's system Python has the `uno` module that
unoserver needs too. A kept `soffice --accept=...` can still be handed a `--convert-to` by a second
`soffice` over its pipe, but LibreOffice 7.4 then terminates the listener after that one conversion. What
makes a conversion cold is the profile LibreOffice creates on first start: each pool slot keeps its own
profile directory (`-env:UserInstallation`), so only a slot's first conversion pays for it, and two
conversions never share a profile. The profile turned out cheap here (0–0.3 s, bench/office_convert.py);
the ~1.1 s a run costs at best is LibreOffice starting, which only a UNO-driven listener would save.
Every run is its own process group, killed whole on timeout; a slot whose run was killed or crashed
starts again with a fresh profile.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

from faxbridge.convert import ConversionError

log = logging.getLogger(__name__)

OFFICE_SUFFIXES = frozenset({".docx", ".odt", ".rtf", ".xlsx", ".ods", ".pptx", ".odp", ".doc", ".xls"})

# LibreOffice's three applications, the library each loads from (beside soffice in program/), the
# Debian package that installs it headless, and the formats it opens.
_MODULES = (
    ("libswlo.so", "libreoffice-writer-nogui", frozenset({".docx", ".odt", ".rtf", ".doc"})),
    ("libsclo.so", "libreoffice-calc-nogui", frozenset({".xlsx", ".ods", ".xls"})),
    ("libsdlo.so", "libreoffice-impress-nogui", frozenset({".pptx", ".odp"})),
)
_OOXML = frozenset({".docx", ".xlsx", ".pptx"})
_ODF = frozenset({".odt", ".ods", ".odp"})

# Zip bombs: what a real Office file never needs. An office document's XML compresses 5–30×, a whole
# document with images rarely unpacks past tens of MB; deflate tops out near 1030×.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 10_000
MAX_RATIO = 100
RATIO_CHECKED_FROM = 16 * 1024 * 1024  # small members may compress well (empty styles); they cost nothing

# An OOXML file saved with a password is no zip but an OLE compound file holding the encrypted package
# ([MS-OFFCRYPTO] 2.3.4.4); its directory names the stream in UTF-16LE.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_WITHOUT_PASSWORD = "Save the document again without a password (or as a PDF) and send it again."
# How long a killed run's process group may take to disappear before we stop waiting for it.
_REAP_SECONDS = 5.0


class OfficeConverter:
    """Converts Office files to PDF with at most ``workers`` LibreOffice processes at once.

    ``convert`` blocks and is meant for worker threads; it is thread-safe. ``work_dir`` holds each
    slot's LibreOffice profile and each conversion's scratch directory, under an instance directory
    that this converter holds an flock on: a second converter on the same work_dir (the CLI's `send`
    beside the daemon) takes the next one, because two soffice runs on one profile hand the document to
    each other over LibreOffice's pipe instead of converting it themselves.
    """

    def __init__(self, work_dir: Path, *, soffice: str | None = None, timeout: float = 120.0,
                 workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._root = Path(work_dir) / "office"
        self._soffice = shutil.which(soffice or "soffice")
        self._timeout = timeout
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(workers):
            self._slots.put(slot)
        self._running: dict[int, subprocess.Popen[bytes]] = {}  # pid → run, for close()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last conversion in flight ends
        self._in_flight = 0
        self._closed = False
        self._instance: Path | None = None  # this converter's directory under work_dir/office, once claimed
        self._instance_lock: int | None = None

    def available(self) -> bool:
        """Whether a LibreOffice executable was found."""
        return self._soffice is not None

    def missing_reason(self) -> str:
        """Why Office files cannot be converted here, naming the Debian packages to install ('' if they can)."""
        if self._soffice is None:
            return ("LibreOffice is not installed: install the Debian package libreoffice-writer-nogui "
                    "(for .docx .odt .rtf .doc), libreoffice-calc-nogui (.xlsx .ods .xls) or "
                    "libreoffice-impress-nogui (.pptx .odp)")
        missing = [f"{package} ({' '.join(sorted(suffixes))})"
                   for package, suffixes in self._missing_modules()]
        if missing:
            return "LibreOffice cannot open every Office format here: install " + ", ".join(missing)
        return ""

    def available_suffixes(self) -> frozenset[str]:
        """The suffixes this installation converts (for check-config)."""
        if self._soffice is None:
            return frozenset()
        unavailable = frozenset().union(*(suffixes for _, suffixes in self._missing_modules()))
        return OFFICE_SUFFIXES - unavailable

    def convert(self, source: Path, target_pdf: Path) -> None:
        """Writes ``source`` as a PDF to ``target_pdf``; a ConversionError says in plain words why not."""
        suffix = source.suffix.lower()
        if suffix not in OFFICE_SUFFIXES:
            raise ConversionError(f"{suffix or 'a file without a suffix'} is not an Office format we convert")
        if self._soffice is None:
            raise ConversionError(self.missing_reason())
        for package, suffixes in self._missing_modules():
            if suffix in suffixes:
                raise ConversionError(f"{suffix} files cannot be converted: install the Debian package {package}")
        check_container(source, suffix)
        slot = self._take_slot()
        with self._lock:
            self._in_flight += 1
        try:
            self._convert_in_slot(slot, source, suffix, target_pdf)
        finally:
            self._slots.put(slot)
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def close(self) -> None:
        """Stops every running conversion and reaps its processes; later conversions are refused."""
        with self._lock:
            self._closed = True
            running = list(self._running.values())
        for process in running:
            _kill_group(process)
        with self._lock:
            # A killed conversion still throws away its profile and scratch: only then may the next
            # converter take this instance directory.
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=2 * _REAP_SECONDS)
            if self._instance_lock is not None:
                os.close(self._instance_lock)  # releases the flock: the next converter may keep the profiles
                self._instance_lock = None

    # -- the pool ----------------------------------------------------------------------------------

    def _take_slot(self) -> int:
        if self._closed:
            raise ConversionError("the document converter is shutting down")
        slot = self._slots.get()
        if self._closed:
            self._slots.put(slot)
            raise ConversionError("the document converter is shutting down")
        return slot

    def _claim_instance(self) -> Path:
        """The first instance directory no other converter holds; its profiles stay warm across restarts."""
        with self._lock:
            if self._closed:
                raise ConversionError("the document converter is shutting down")
            if self._instance is None:
                self._root.mkdir(parents=True, exist_ok=True)
                for number in itertools.count():
                    descriptor = os.open(self._root / f"instance-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(descriptor)
                        continue
                    self._instance_lock = descriptor
                    self._instance = self._root / f"instance-{number}"
                    # Scratch left by a holder that died mid-conversion; nobody else can be using it now.
                    shutil.rmtree(self._instance / "jobs", ignore_errors=True)
                    break
            assert self._instance is not None
            return self._instance

    def _convert_in_slot(self, slot: int, source: Path, suffix: str, target_pdf: Path) -> None:
        instance = self._claim_instance()
        slot_dir = instance / f"slot-{slot}"
        profile = slot_dir / "profile"
        scratch_root = instance / "jobs"
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"slot{slot}-", dir=scratch_root))
        try:
            # Under a neutral name: a sender's file name may start with '-' or hold anything else
            # soffice's command line would misread.
            document = scratch / f"document{suffix}"
            shutil.copyfile(source, document)
            outdir = scratch / "out"
            args = [str(self._soffice), f"-env:UserInstallation={profile.as_uri()}", "--headless",
                    "--invisible", "--nologo", "--nodefault", "--norestore", "--nolockcheck",
                    "--convert-to", "pdf", "--outdir", str(outdir), str(document)]
            # HOME and TMPDIR too, so that nothing LibreOffice writes leaves this slot and this run
            # (a daemon's HOME may not even be writable).
            env = dict(os.environ, HOME=str(slot_dir), TMPDIR=str(scratch))
            slot_dir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            try:
                returncode, output = self._run(args, env, scratch)
            except ConversionError:
                # Killed on timeout or by close(): the profile may be half-written; start it afresh.
                shutil.rmtree(profile, ignore_errors=True)
                raise
            produced = outdir / "document.pdf"
            if returncode != 0 or not produced.is_file():
                if returncode != 0:
                    # A crash or kill can leave the profile half-written or locked: start it afresh.
                    shutil.rmtree(profile, ignore_errors=True)
                log.info("soffice failed on %s (exit %s): %s", source.name, returncode, output[-500:])
                raise ConversionError(_failure_reason(returncode, output, suffix))
            _check_pdf(produced)
            log.debug("%s converted in slot %d in %.2f s", source.name, slot, time.monotonic() - started)
            target_pdf.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(produced, target_pdf)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run(self, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
        """Runs soffice in a process group of its own; kills the whole group on timeout and always reaps it."""
        with self._lock:
            if self._closed:
                raise ConversionError("the document converter is shutting down")
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
            self._running[process.pid] = process
        try:
            try:
                output, _ = process.communicate(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.communicate()
                raise ConversionError(
                    f"LibreOffice did not finish converting the document within {self._timeout:g} seconds "
                    "and was stopped") from None
            if self._closed and process.returncode < 0:
                raise ConversionError("the document converter was shut down during the conversion")
            return process.returncode, output.decode("utf-8", errors="replace")
        finally:
            # soffice hands the work to soffice.bin; whatever of the group outlived soffice goes too.
            _kill_group(process)
            with self._lock:
                self._running.pop(process.pid, None)

    def _missing_modules(self) -> list[tuple[str, frozenset[str]]]:
        """The (package, suffixes) of LibreOffice applications absent beside soffice; none if we cannot tell."""
        assert self._soffice is not None
        program = Path(os.path.realpath(self._soffice)).parent
        present = [(program / library).exists() for library, _, _ in _MODULES]
        if not any(present):  # not a LibreOffice program directory (a wrapper script): assume all
            return []
        return [(package, suffixes) for (_, package, suffixes), ok in zip(_MODULES, present) if not ok]


def check_container(source: Path, suffix: str) -> None:
    """Refuses, before LibreOffice sees it, a password-protected document or a zip bomb named like an Office file."""
    try:
        with source.open("rb") as file:
            head = file.read(len(_OLE_MAGIC))
    except OSError as exc:
        raise ConversionError(f"the document cannot be read ({exc.strerror})") from None
    if suffix in _OOXML and head == _OLE_MAGIC:
        if _ENCRYPTED_PACKAGE in source.read_bytes():
            raise ConversionError("the document is password-protected; please send it without a password",
                                  action=_WITHOUT_PASSWORD)
        return  # an older binary Office file with a new name: LibreOffice reads it by its content
    if suffix not in _OOXML | _ODF:
        return
    try:
        with zipfile.ZipFile(source) as archive:
            _check_zip(archive, suffix)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, RuntimeError) as exc:
        log.info("%s is no readable zip: %s", source.name, exc)
        raise ConversionError(f"the {suffix} file is damaged (it is not a readable {suffix} document)") from None


def _check_zip(archive: zipfile.ZipFile, suffix: str) -> None:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ConversionError(f"the {suffix} file holds {len(members)} parts, more than any real document")
    declared = sum(member.file_size for member in members)
    bomb = ConversionError(f"the {suffix} file would unpack to far more data than any real document "
                           "(a zip bomb) and was not opened")
    if declared > MAX_UNPACKED_BYTES:
        raise bomb
    for member in members:
        if member.file_size > RATIO_CHECKED_FROM and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise bomb
    # Office never encrypts the zip itself (it encrypts the package, above), but a zip can be: reading
    # such a member needs its password.
    if any(member.flag_bits & 0x1 for member in members) or (suffix in _ODF and _odf_encrypted(archive)):
        raise ConversionError("the document is password-protected; please send it without a password",
                              action=_WITHOUT_PASSWORD)
    # The sizes above are what the zip claims. Reading every member proves them: zipfile stops at the
    # declared size and checks the CRC, so a member that unpacks to more than it declares is an error.
    unpacked = 0
    for member in members:
        with archive.open(member) as stream:
            while chunk := stream.read(1024 * 1024):
                unpacked += len(chunk)
                if unpacked > MAX_UNPACKED_BYTES:
                    raise bomb


def _odf_encrypted(archive: zipfile.ZipFile) -> bool:
    """An OpenDocument file saved with a password lists encryption data for its parts in the manifest."""
    try:
        with archive.open("META-INF/manifest.xml") as manifest:
            return b"encryption-data" in manifest.read(4 * 1024 * 1024)
    except KeyError:
        return False


def _check_pdf(path: Path) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        pages = len(PdfReader(path).pages)
    except (PyPdfError, OSError, ValueError) as exc:
        log.info("LibreOffice wrote an unreadable PDF: %s", exc)
        raise ConversionError("LibreOffice produced no readable PDF from the document") from None
    if pages == 0:
        raise ConversionError("the document has no pages to fax")


def _failure_reason(returncode: int, output: str, suffix: str) -> str:
    if returncode < 0:
        return f"LibreOffice stopped unexpectedly (signal {-returncode}) while converting the document"
    if returncode != 0:
        return f"LibreOffice failed to convert the document (exit status {returncode})"
    # soffice exits 0 when it cannot load the file; it only says so on its output.
    if suffix in {".doc", ".xls"}:
        return (f"LibreOffice could not open the {suffix} file: it is damaged, password-protected "
                "or not really a " + suffix + " document")
    return f"LibreOffice could not open the {suffix} file: it is damaged or not really a {suffix} document"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the run's whole process group, then wait until the group is gone (bounded)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    except PermissionError:  # the group id was reused by someone else's processes: not ours to kill
        return
    if process.returncode is None:
        try:
            process.wait(_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("soffice (pid %d) did not end after SIGKILL", process.pid)
    deadline = time.monotonic() + _REAP_SECONDS
    # Grandchildren (soffice.bin) are reaped by init once orphaned; a zombie has nothing left to free.
    while _group_has_live_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_has_live_members(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
