"""``faxbridge cups install/uninstall``: the backend program in CUPS's backend folder, and a queue
(lpadmin) whose device URI names the daemon's print socket.

lpadmin talks to whichever cupsd CUPS_SERVER (or client.conf) names; ``backend_dir`` is that
cupsd's ServerBin/backend. Blocking: CLI only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from importlib import resources
from pathlib import Path

from faxbridge.edges.printing.backend import SCHEME
from faxbridge.fsutil import write_atomically
from faxbridge.errors import FaxbridgeError

DEFAULT_BACKEND_DIR = Path("/usr/lib/cups/backend")
# CUPS printer names: printable, no space, / \ # ' " , (lpadmin(8)); kept to the portable subset.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,127}")


class CupsError(FaxbridgeError):
    """lpadmin or the backend folder refused; the message says which and why."""


def check_queue_name(queue: str) -> str:
    if not _QUEUE_NAME.fullmatch(queue):
        raise CupsError(f"queue name {queue!r}: use letters, digits, '.', '_' and '-' only")
    return queue


def default_backend_dir() -> Path:
    """ServerBin/backend as cups-config reports it, else the Debian/Red Hat place."""
    tool = shutil.which("cups-config")
    if tool:
        found = subprocess.run([tool, "--serverbin"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            return Path(found.stdout.strip()) / "backend"
    return DEFAULT_BACKEND_DIR


def device_uri(socket_path: Path) -> str:
    return f"{SCHEME}:{urllib.parse.quote(str(socket_path))}"


def backend_program(python: str = sys.executable) -> str:
    """The backend as CUPS runs it: this Python, isolated (-I: no PYTHONPATH, no user site)."""
    return (
        f"#!{python} -I\n"
        "# faxbridge's CUPS backend, written by `faxbridge cups install`: hands print jobs to the daemon.\n"
        "from faxbridge.edges.printing.backend import main\n"
        "raise SystemExit(main())\n"
    )


def install_backend(backend_dir: Path) -> Path:
    """Write the backend, mode 0700: CUPS runs a backend that only its owner may execute as
    root, which may then connect to the daemon's socket (mode 0600, the service user's)."""
    if not backend_dir.is_dir():
        raise CupsError(f"{backend_dir} is not a folder (is CUPS installed? see --backend-dir)")
    path = backend_dir / SCHEME
    write_atomically(path, backend_program().encode("utf-8"))
    os.chmod(path, 0o700)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)  # cupsd refuses backends that others own or may change
    return path


def install(queue: str, socket_path: Path, *, backend_dir: Path | None = None, shared: bool = False,
            description: str = "Fax (faxbridge)") -> str:
    """Install the backend and (re)create the queue; returns its device URI."""
    check_queue_name(queue)
    install_backend(backend_dir or default_backend_dir())
    uri = device_uri(socket_path)
    with resources.as_file(resources.files("faxbridge.edges.printing") / "faxbridge.ppd") as ppd:
        _lpadmin(
            "-p", queue, "-E", "-v", uri, "-P", str(ppd), "-D", description,
            # A backend that fails for good (not a refused job, which it cancels) holds only that
            # job back for a retry, never the whole queue.
            "-o", "printer-error-policy=retry-job",
            "-o", f"printer-is-shared={'true' if shared else 'false'}",
        )
    return uri


def uninstall(queue: str, *, backend_dir: Path | None = None, keep_backend: bool = False) -> None:
    """Delete the queue; the backend program goes too unless another faxbridge queue uses it."""
    check_queue_name(queue)
    _lpadmin("-x", queue)
    if keep_backend or _other_faxbridge_queues():
        return
    path = (backend_dir or default_backend_dir()) / SCHEME
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _other_faxbridge_queues() -> bool:
    listed = subprocess.run(["lpstat", "-v"], capture_output=True, text=True, check=False)
    return f"{SCHEME}:" in listed.stdout


def _lpadmin(*args: str) -> None:
    tool = shutil.which("lpadmin") or "/usr/sbin/lpadmin"
    try:
        done = subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CupsError(f"cannot run lpadmin: {exc}") from None
    # "Printer drivers are deprecated": CUPS 2.4 says it of every PPD; the queue works all the same.
    problems = [line for line in done.stderr.splitlines() if "deprecated" not in line and line.strip()]
    if done.returncode != 0:
        raise CupsError(f"lpadmin {' '.join(args[:2])} failed: {' '.join(problems) or f'exit {done.returncode}'}")
