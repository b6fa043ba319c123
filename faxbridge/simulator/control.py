"""The embeddable Simulator: its lifecycle (start, serve in a background thread, stop) and the Python API
that tests and the demo use to configure it and look inside.

    with Simulator() as sim:                       # 127.0.0.1, a free port
        client = zeep.Client(wsdl_path)
        service = client.create_service("{http://tempuri.org/}IIntfXMLWSbinding", sim.url)
        ...
        assert sim.calls_for("SendJob")[0].params["SendFile1"] == pdf_bytes
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from faxbridge.model import InboundFax

from .faults import Fault, FaultPlan
from .record import Call, Record
from .server import SOAP_PATH, WSDL_PATH, SimulatorHTTPServer
from .service import Service
from .settings import AccountState, Clock, Settings, utc_now
from .state import SimJob


class Simulator:
    """A FAX.de-compatible SOAP server. The object outlives start/stop: jobs, inbox and record stay."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        account: str = "12345",
        password: str = "secret",
        account_state: AccountState | str = AccountState.ACTIVE,
        polls_until_done: int = 1,
        duplicate_window: float = 60.0,
        clock: Clock = utc_now,
        record_limit: int | None = None,
        **settings: Any,
    ) -> None:
        """``settings`` are further Settings fields (email_enabled, foreign_enabled, inbound_number, …).

        ``clock`` gives the simulator's "now" (job times, duplicate window, scheduling): tests pass a fake one
        and move it instead of sleeping. ``record_limit`` keeps only the latest calls in the record.
        """
        self.host = host
        self._port = port
        self.settings = Settings(
            account=account,
            password=password,
            account_state=AccountState(account_state),
            polls_until_done=polls_until_done,
            duplicate_window=float(duplicate_window),
            **settings,
        )
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.service = Service(self.settings, self.state_dir, clock)
        self.plan = FaultPlan()
        self.record = Record(record_limit)
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind and serve in a background thread; after a stop() it binds the same port again."""
        if self._server is not None:
            return self
        server = SimulatorHTTPServer((self.host, self._port), self.service, self.plan, self.record)
        self._port = server.server_address[1]
        # The one thread of the simulator's own: the accept loop, which starts a thread per connection.
        self._thread = threading.Thread(
            target=server.serve_until_stopped, name=f"faxde-simulator:{self._port}", daemon=True
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections (idle keep-alive ones too), release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stop_serving()
        if thread is not None:
            thread.join()
        server.server_close()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def url(self) -> str:
        """The SOAP endpoint."""
        return self.base_url + SOAP_PATH

    @property
    def wsdl_url(self) -> str:
        return self.base_url + WSDL_PATH

    # ---- record -------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        return self.record.calls()

    def calls_for(self, operation: str) -> list[Call]:
        return self.record.calls(operation)

    def clear_calls(self) -> None:
        self.record.clear()

    # ---- faults -------------------------------------------------------------------------------

    def set_faults(self, *faults: Fault | dict[str, Any], seed: int | None = None) -> None:
        """Replace the fault plan (no arguments: no faults); call counting starts again from here."""
        self.plan.replace([f if isinstance(f, Fault) else Fault.from_json(f) for f in faults], seed)

    def clear_faults(self) -> None:
        self.plan.replace([])

    def reset(self, *, state: bool = False) -> None:
        """Clear faults, the record and per-number rules; with ``state`` also forget jobs and inbox."""
        self.clear_faults()
        self.clear_calls()
        self.service.clear_rules()
        if state:
            self.service.reset_state()

    # ---- outcomes -----------------------------------------------------------------------------

    def set_result(self, number: str, result: str, remote_id: str | None = None) -> None:
        """What JobStatus reports for fax jobs to ``number`` ("OK", "Busy", "No Answer", "Voice", …).

        Taken when the job finishes, so it may be set after SendJob. ``remote_id`` None: the station id is
        the number itself when the call connected.
        """
        self.service.set_result(number, result, remote_id)

    def set_refusal(self, number: str, code: int | None) -> None:
        """Make SendJob refuse any job to ``number`` with ``code`` (-5 blocked, 9 blacklisted); None undoes."""
        self.service.set_refusal(number, code)

    # ---- inbox and jobs -----------------------------------------------------------------------

    def add_inbound(
        self,
        image: bytes,
        called_number: str | None = None,
        originator: str = "",
        remote_id: str = "",
        pages: int | None = None,
        received_at: dt.datetime | None = None,
    ) -> InboundFax:
        """Receive a fax: RequestReceived will return it. ``pages`` None counts the TIFF's pages."""
        return self.service.add_inbound(
            image, called_number=called_number, originator=originator, remote_id=remote_id, pages=pages,
            received_at=received_at,
        )

    @property
    def inbox(self) -> list[InboundFax]:
        """Inbound faxes not yet deleted, oldest first (the folder <state_dir>/inbox/ is read first)."""
        return self.service.inbox()

    @property
    def jobs(self) -> list[SimJob]:
        """Copies of every job the simulator accepted, in JobId order."""
        return self.service.jobs()

    def job(self, job_id: int) -> SimJob:
        return self.service.job(job_id)

    @property
    def status_calls(self) -> list[tuple[str, int | str]]:
        """The STATURL calls made so far: (URL, HTTP status or the error)."""
        return list(self.service.status_calls)

    def wait_for_status_calls(self, count: int, timeout: float = 15.0) -> list[tuple[str, int | str]]:
        return self.service.wait_for_status_calls(count, timeout)

    def finish_job(self, job_id: int) -> SimJob:
        """Finish a pending job now (results from set_result), without waiting for polls or its send time."""
        return self.service.finish_now(job_id)

    # ---- settings (shortcuts to self.settings) ------------------------------------------------

    @property
    def account(self) -> str:
        return self.settings.account

    @account.setter
    def account(self, value: str) -> None:
        self.settings.account = value

    @property
    def password(self) -> str:
        return self.settings.password

    @password.setter
    def password(self, value: str) -> None:
        self.settings.password = value

    @property
    def account_state(self) -> AccountState:
        return self.settings.account_state

    @account_state.setter
    def account_state(self, value: AccountState | str) -> None:
        self.settings.account_state = AccountState(value)

    @property
    def polls_until_done(self) -> int:
        return self.settings.polls_until_done

    @polls_until_done.setter
    def polls_until_done(self, value: int) -> None:
        self.settings.polls_until_done = value

    @property
    def duplicate_window(self) -> float:
        return self.settings.duplicate_window

    @duplicate_window.setter
    def duplicate_window(self, value: float) -> None:
        self.settings.duplicate_window = float(value)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Simulator {self.url} account={self.account} {state}>"
