"""Shared fixtures: a real simulator on loopback, and config files written the way users write them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import journal_backend
from faxbridge.simulator import Simulator
from postgres_server import PostgresServer, find_bindir

PASSWORD = "s3cr3t-canary-Pw"  # distinctive, so a leak is easy to grep for
ACCOUNT = "12345"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session (tests/postgres_server.py)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database of the session's cluster, as a journal URL (password: its file)."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(autouse=True)
def _journal_backend(request: pytest.FixtureRequest) -> None:
    """On the PostgreSQL run, each test's journal lives in its own database (made on first use)."""
    if journal_backend.ON_POSTGRESQL:
        journal_backend.begin_test(request.getfixturevalue("postgres_server"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "expected_traceback(text): an ERROR with a traceback from the hotfolders whose message"
        " contains text is what the test provokes (any other still fails it)",
    )


class _Tracebacks(logging.Handler):
    """Collects ERROR records that carry a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_hotfolder_tracebacks(request: pytest.FixtureRequest) -> Iterator[None]:
    """An ERROR with a traceback from the hotfolders is a bug (issue 14: a claim race logged
    25 to 61 of them per restart, unseen): it fails the test in which it was logged."""
    logger = logging.getLogger("faxbridge.edges.hotfolder")
    catcher = _Tracebacks()
    logger.addHandler(catcher)
    try:
        yield
    finally:
        logger.removeHandler(catcher)
    expected = [m.args[0] for m in request.node.iter_markers("expected_traceback")]
    unexpected = [r for r in catcher.records if not any(text in r.getMessage() for text in expected)]
    if unexpected:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        pytest.fail("ERROR with a traceback from the hotfolders:\n"
                    + "\n".join(formatter.format(r) for r in unexpected), pytrace=False)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(account=ACCOUNT, password=PASSWORD, state_dir=tmp_path / "simulator") as sim:
        yield sim


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_config(tmp_path: Path, simulator: Simulator) -> Callable[..., Path]:
    """``make_config(**sections)`` writes a config.yaml against the simulator; returns its path."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)

    def make(**overrides: Any) -> Path:
        data = _merge(
            {
                "faxde": {
                    "account": ACCOUNT,
                    "password_file": str(password_file),
                    "wsdl": simulator.wsdl_url,
                    "timeout": "10s",
                    "connect_timeout": "2s",
                    "retry": {"initial_delay": "50ms", "max_delay": "1s"},
                },
                "state_dir": str(tmp_path / "state"),
                "status": {"interval": "100ms", "max_interval": "1s"},
                **({"journal": journal_backend.journal_config()} if journal_backend.ON_POSTGRESQL else {}),
            },
            overrides,
        )
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


class RunningDaemon:
    """A Daemon serving in a background thread with its own event loop, as the service would."""

    def __init__(self, config_path: Path, provider: Any = None) -> None:
        import asyncio
        import threading

        from faxbridge.config import load_config
        from faxbridge.daemon import Daemon

        self.config = load_config(config_path)
        self.daemon = Daemon(self.config, config_path=config_path, provider=provider, drain_timeout=5)
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.error: BaseException | None = None

        def serve() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                task = asyncio.ensure_future(self.daemon.serve())
                while self.daemon.ready is None or not self.daemon.ready.is_set():
                    if task.done():
                        break
                    await asyncio.sleep(0.01)
                self._started.set()
                await task

            try:
                self.loop.run_until_complete(main())
            except BaseException as exc:  # surfaced by start()/stop()
                self.error = exc
            finally:
                self._started.set()
                self.loop.close()

        self.thread = threading.Thread(target=serve, name="daemon-under-test", daemon=True)

    def start(self) -> RunningDaemon:
        self.thread.start()
        self._started.wait(30)
        if self.error is not None:
            raise self.error
        return self

    @property
    def services(self) -> Any:
        return self.daemon.services

    def call(self, coro_fn: Callable[[], Any], timeout: float = 30) -> Any:
        """Run a coroutine on the daemon's loop and wait for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.request_stop)
            self.thread.join(30)
        if self.error is not None and not isinstance(self.error, SystemExit):
            raise self.error


@pytest.fixture
def run_daemon() -> Iterator[Callable[..., RunningDaemon]]:
    """``run_daemon(config_path)`` starts the daemon in-process; it is stopped after the test."""
    started: list[RunningDaemon] = []

    def start(config_path: Path, provider: Any = None) -> RunningDaemon:
        daemon = RunningDaemon(config_path, provider).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Re-check ``predicate`` until it is truthy: for effects in another thread or process,
    where no event can be awaited from here. Fails the test with ``what`` on timeout."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
