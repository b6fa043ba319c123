"""A throwaway PostgreSQL cluster for the tests: initdb in a temp directory, run as an unprivileged user.

PostgreSQL refuses to run as root, so as root the cluster belongs to a system user made for it
(``faxbridge-test``, created with useradd if missing) and initdb/pg_ctl run through ``runuser``.
It listens on 127.0.0.1 at a free port, its unix socket inside its directory; clients connect over
TCP with a password (scram), as a real node would. Each test gets a fresh database copied from an
empty template (CREATE DATABASE … TEMPLATE, a file copy: fast).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

TEST_USER = "faxbridge-test"
PASSWORD = "pg-canary-Pw-4711"  # distinctive, so a leak is easy to grep for
TEMPLATE = "faxbridge_template"


def find_bindir() -> Path | None:
    """The directory of initdb/pg_ctl/postgres: Debian's versioned one, else PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="faxbridge-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.password_file = self.root / "password"
        self.port = 0
        self._names = itertools.count(1)
        self._as_user: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        self.root.chmod(0o755)
        self.socket_dir.mkdir()
        pwfile = self.root / "initdb-password"
        pwfile.write_text(PASSWORD + "\n")
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        if os.geteuid() == 0:
            _ensure_user(TEST_USER)
            shutil.chown(self.root, TEST_USER)
            shutil.chown(self.socket_dir, TEST_USER)
            shutil.chown(pwfile, TEST_USER)
            self._as_user = ["runuser", "-u", TEST_USER, "--"]
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()
        self.port = _free_port()
        self.pg_ctl("start")
        with self.admin() as db:
            db.execute(f"CREATE DATABASE {TEMPLATE}")
        return self

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.socket_dir}"
            # A test cluster: durability against a power cut is not what is tested here.
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        args = [str(self.bindir / "pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60", *extra]
        if action in ("start", "restart"):
            args += ["-l", str(self.log), "-o", options]
        self._run(*args)

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr.strip()}\n{log}")

    # -- databases ---------------------------------------------------------------------------

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the unix socket (trust), autocommit."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def url(self, dbname: str) -> str:
        """What a config's ``journal:`` says: no password in it (that comes from password_file)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self.admin() as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name


def _ensure_user(name: str) -> None:
    if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
        return
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )
