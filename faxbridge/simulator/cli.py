"""Command line of the simulator: parse options, serve until SIGINT/SIGTERM, return an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from .control import Simulator
from .settings import AccountState

DEFAULT_PORT = 8765
PASSWORD_ENV = "FAXBRIDGE_SIM_PASSWORD"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faxbridge simulator",
        description="Run a FAX.de-compatible SOAP server for testing (nothing is sent, nothing costs money).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--state-dir", help="keep jobs and inbox here across restarts; drop *.tif into STATE_DIR/inbox/")
    parser.add_argument("--account", default="12345", help="the customer id to accept (default: %(default)s)")
    parser.add_argument("--password", help=f"the password to accept (default: ${PASSWORD_ENV}, else 'secret')")
    parser.add_argument("--account-state", choices=[s.value for s in AccountState], default="active")
    parser.add_argument("--polls-until-done", type=int, default=1, help="JobStatus answers 'in progress' this often")
    parser.add_argument("--duplicate-window", type=float, default=60.0, help="seconds in which a resend is -77")
    parser.add_argument("--record-limit", type=int, default=1000,
                        help="keep only this many calls in the record, which holds every document (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV, "secret")
    simulator = Simulator(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        account=args.account,
        password=password,
        account_state=args.account_state,
        polls_until_done=args.polls_until_done,
        duplicate_window=args.duplicate_window,
        record_limit=args.record_limit,
    )
    try:
        simulator.start()
    except OSError as exc:
        print(f"faxbridge simulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"FAX.de simulator for account {simulator.account} listening", flush=True)
        print(f"SOAP endpoint: {simulator.url}", flush=True)
        print(f"WSDL:          {simulator.wsdl_url}", flush=True)
        print(f"Admin:         {simulator.base_url}/admin/calls", flush=True)
        while not stop.wait(0.5):  # a timeout keeps the main thread responsive to signals everywhere
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        simulator.stop()
    print("FAX.de simulator stopped", flush=True)
    return 0
