"""``make demo``: the daemon against the built-in FAX.de simulator, with example folders to play in.

Everything lives in ./demo-data (delete it to start afresh). Nothing leaves this machine: the
simulator answers like FAX.de, and report mails go to a local mail sink that writes .eml files.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import yaml

from faxbridge import logs
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

DEMO_PASSWORD = "demo-password"
DEMO_ACCOUNT = "12345"


DEMO_CONSOLE_USER = "demo"
DEMO_CONSOLE_PASSWORD = "demo"  # noqa: S105 - the demo's own, printed on the screen


def write_config(root: Path, simulator: Simulator, smtp_port: int, sink_port: int, console_port: int) -> Path:
    from faxbridge.edges.http.console.auth import hash_password

    (root / "password").write_text(DEMO_PASSWORD + "\n")
    (root / "password").chmod(0o600)
    for folder in ("outbox", "sms-outbox", "inbox", "samples", "state", "mail-sink"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "samples" / "Rechnung 42.pdf").write_bytes(make_pdf(2, tag="demo"))
    config = {
        "faxde": {
            "account": DEMO_ACCOUNT,
            "password_file": "password",
            "wsdl": simulator.wsdl_url,
            "timeout": "20s",
        },
        "state_dir": "state",
        "numbers": {"default_country": "DE", "allowed_countries": ["DE", "AT", "CH"]},
        "status": {"interval": "5s", "max_interval": "30s"},
        "hotfolders": [
            {"path": "outbox", "job_type": "fax", "options": {"STATIONID": "faxbridge demo"}},
            {"path": "sms-outbox", "job_type": "sms"},
        ],
        "inbound": {"output": "inbox", "interval": "10s", "pdf": True},
        "smtp": {
            "listen": f"127.0.0.1:{smtp_port}",
            "domains": {"fax.localhost": "fax", "sms.localhost": "sms"},
            "allowed_senders": ["*@localhost", "*@example.com"],
            "relay": f"127.0.0.1:{sink_port}",
            "report_from": "faxbridge@localhost",
        },
        "console": {
            "listen": f"127.0.0.1:{console_port}",
            "users": [{"name": DEMO_CONSOLE_USER, "password_hash": hash_password(DEMO_CONSOLE_PASSWORD),
                       "role": "admin"}],
        },
    }
    path = root / "config.yaml"
    path.write_text("# written by `make demo`; edit freely — see config.example.yaml\n"
                    + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


class _EmlSink:
    """Saves each mail the demo's relay receives as NAME.eml, readable in any mail program."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.count}.eml"
        (self.folder / name).write_bytes(envelope.content)  # type: ignore[attr-defined]
        return "250 OK"


def start_mail_sink(folder: Path, port: int) -> object:
    """A local stand-in for the office mail server: report mails land in demo-data/mail-sink."""
    from aiosmtpd.controller import Controller

    # Demo only: aiosmtpd's Controller runs its own loop in a thread; the daemon never does this.
    controller = Controller(_EmlSink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo-data"))
    parser.add_argument("--simulator-port", type=int, default=8765)
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--sink-port", type=int, default=2526)
    parser.add_argument("--console-port", type=int, default=8025)
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    logs.setup("INFO")

    simulator = Simulator(port=args.simulator_port, state_dir=root / "simulator",
                          account=DEMO_ACCOUNT, password=DEMO_PASSWORD, polls_until_done=2).start()
    config_path = write_config(root, simulator, args.smtp_port, args.sink_port, args.console_port)
    sink = start_mail_sink(root / "mail-sink", args.sink_port)
    # One inbound fax waiting, so the inbox shows something within the first minute.
    if not simulator.inbox:
        simulator.add_inbound(make_tiff(2), called_number="+4940999999", originator="+4930123456",
                              remote_id="DEMO SENDER")

    from faxbridge.config import load_config
    from faxbridge.daemon import Daemon

    config = load_config(config_path)
    logs.register_secret(DEMO_PASSWORD)
    cli = f"{sys.executable} -m faxbridge"
    rel = os.path.relpath(root) if root.is_relative_to(Path.cwd()) else str(root)
    print(textwrap.dedent(f"""
        ────────────────────────────────────────────────────────────────────────────
         faxbridge demo — the daemon runs against the built-in FAX.de simulator
         simulator: {simulator.url}   (record: {simulator.base_url}/admin/calls)
         config:    {rel}/config.yaml      stop with Ctrl-C
         console:   http://127.0.0.1:{args.console_port}/   (user {DEMO_CONSOLE_USER}, password {DEMO_CONSOLE_PASSWORD})
        ────────────────────────────────────────────────────────────────────────────
         Try, in another terminal:
          • fax a file by dropping it into the hotfolder (number first in the name):
              cp "{rel}/samples/Rechnung 42.pdf" "{rel}/outbox/+49 40 1234567_Rechnung 42.pdf"
            → it moves to {rel}/outbox/sent/, and NAME.status.csv appears there when done
          • a premium number is refused, with a reason in {rel}/outbox/failed/:
              cp "{rel}/samples/Rechnung 42.pdf" "{rel}/outbox/0900 123456_test.pdf"
          • send from the command line and wait for the report:
              {cli} send -c {rel}/config.yaml --to "040 1234567" --wait "{rel}/samples/Rechnung 42.pdf"
          • mail a fax (attachment = document), reports land in {rel}/mail-sink/:
              python3 -c "import smtplib; from email.message import EmailMessage as M; m=M();
              m['From']='alice@example.com'; m['To']='+494012345678@fax.localhost'; m['Subject']='Test';
              m.set_content('Hallo'); smtplib.SMTP('127.0.0.1', {args.smtp_port}).send_message(m)"
          • received faxes arrive as TIFF (and PDF) in {rel}/inbox/; add one:
              curl --data-binary @some.tif "{simulator.base_url}/admin/inbox?originator=%2B4930111"
          • list the journal:   {cli} jobs -c {rel}/config.yaml
        ────────────────────────────────────────────────────────────────────────────
    """))
    try:
        return Daemon(config, config_path=config_path).run()
    finally:
        simulator.stop()
        threading.Thread(target=sink.stop, daemon=True).start()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
