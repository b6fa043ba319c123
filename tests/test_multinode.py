"""Several `faxbridge run` daemons on one PostgreSQL journal, killed with SIGKILL at random moments and
with their database connections cut and PostgreSQL restarted once: every accepted mail is sent exactly once (the simulator's jobs per
recipient), every received fax is stored once and deleted on FAX.de.

The quick run (`make test`) uses two nodes and a few kills; FAXBRIDGE_NODES=3, FAXBRIDGE_NODES_KILLS=50,
FAXBRIDGE_NODES_MAILS=200 make the long one; FAXBRIDGE_NODES_SEED=N repeats a run's choices.
"""

from __future__ import annotations

import os
import random
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ACCOUNT, PASSWORD, wait_until
from faxbridge.journal import Journal
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_tiff
from postgres_server import PASSWORD as PG_PASSWORD
from postgres_server import PostgresServer
from test_smtp_support import free_port, mail, smtp_section

ROOT = Path(__file__).resolve().parents[1]
NODES = int(os.environ.get("FAXBRIDGE_NODES", "2"))
KILLS = int(os.environ.get("FAXBRIDGE_NODES_KILLS", "4"))
MAILS = int(os.environ.get("FAXBRIDGE_NODES_MAILS", "16"))
FAXES = int(os.environ.get("FAXBRIDGE_NODES_FAXES", "6"))


class Node:
    """One `faxbridge run -c CONFIG` process, restartable."""

    def __init__(self, name: str, config: Path, port: int, log: Path) -> None:
        self.name, self.config, self.port, self.log = name, config, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faxbridge", "run", "-c", str(self.config)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(60) == 0, self.log.read_text()[-3000:]

    def accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def _config(tmp_path: Path, simulator: Simulator, server: PostgresServer, url: str, name: str, port: int) -> Path:
    faxde_password = tmp_path / "faxde-password"
    faxde_password.write_text(PASSWORD + "\n")
    data: dict[str, Any] = {
        "faxde": {
            "account": ACCOUNT, "password_file": str(faxde_password), "wsdl": simulator.wsdl_url,
            "timeout": "10s", "connect_timeout": "2s",
            "retry": {"initial_delay": "50ms", "max_delay": "1s"},
            "reconcile_window": "5m",
        },
        "state_dir": str(tmp_path / name),
        "journal": {"url": url, "password_file": str(server.password_file), "node": name, "lease": "2s"},
        "status": {"interval": "200ms", "max_interval": "1s"},
        "smtp": smtp_section(None, listen=f"127.0.0.1:{port}"),
        "inbound": {"output": str(tmp_path / "in"), "interval": "300ms"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _number(i: int) -> str:
    return f"+4940555{i:04d}"


def _send(nodes: list[Node], i: int, rng: random.Random) -> None:
    """Deliver mail ``i`` as a sending server would behind two MX records: to any node, and to the
    next one when a node is down or answers 4xx, until one says 250."""
    message = mail(subject=f"Mail {i}", body=f"Mail number {i}\n", to=f"{_number(i)}@fax.example.com")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for node in rng.sample(nodes, len(nodes)):
            try:
                with smtplib.SMTP("127.0.0.1", node.port, timeout=15) as client:
                    client.send_message(message, from_addr="alice@example.com",
                                        to_addrs=[f"{_number(i)}@fax.example.com"])
                return
            except (OSError, smtplib.SMTPException):
                continue
        time.sleep(0.2)
    raise AssertionError(f"mail {i} was not accepted by any node")


@pytest.mark.timeout(900)
def test_nodes_killed_at_random_lose_and_double_nothing(
    tmp_path: Path, simulator: Simulator, postgres_server: PostgresServer, postgres_url: str
) -> None:
    seed = int(os.environ.get("FAXBRIDGE_NODES_SEED", random.randrange(1_000_000)))
    print(f"FAXBRIDGE_NODES_SEED={seed}")
    rng = random.Random(seed)
    nodes = []
    for n in range(NODES):
        name, port = f"node{n + 1}", free_port()
        nodes.append(Node(name, _config(tmp_path, simulator, postgres_server, postgres_url, name, port), port,
                          tmp_path / f"{name}.log"))
    for node in nodes:
        node.start()
    for node in nodes:
        wait_until(node.accepting, timeout=60, what=f"{node.name} accepting SMTP")

    kills, cuts = [], 0
    done = threading.Event()

    restarted = False

    def chaos() -> None:
        nonlocal cuts, restarted
        while not done.is_set() and len(kills) < KILLS:
            time.sleep(rng.uniform(0.3, 1.5))
            victim = rng.choice(nodes)
            if not restarted and len(kills) >= KILLS // 2:
                postgres_server.pg_ctl("restart", "-m", "fast")  # PostgreSQL itself, mid-run
                restarted = True
                continue
            if rng.random() < 0.25:
                with postgres_server.admin() as admin:  # every node's connection cut at once
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE application_name = 'faxbridge'")
                cuts += 1
                continue
            victim.kill()
            kills.append(victim.name)
            time.sleep(rng.uniform(0.1, 1.0))
            victim.start()
            wait_until(victim.accepting, timeout=60, what=f"{victim.name} back")

    faxes = []
    killer = threading.Thread(target=chaos)
    killer.start()
    try:
        for i in range(MAILS):
            _send(nodes, i, rng)
            if i % max(1, MAILS // max(1, FAXES)) == 0 and len(faxes) < FAXES:
                faxes.append(simulator.add_inbound(make_tiff(1, tag=f"fax {i}"), originator=f"+4930{i:04d}"))
        while len(faxes) < FAXES:
            faxes.append(simulator.add_inbound(make_tiff(1, tag=f"fax {len(faxes)}")))
        killer.join(timeout=600)
    finally:
        done.set()
        killer.join(timeout=120)

    try:
        for node in nodes:
            if not node.running:
                node.start()
        with Journal.open(tmp_path / "observer", url=postgres_url, password=PG_PASSWORD) as journal:

            def settled() -> bool:
                jobs = [job for job in journal.jobs.recent(10 * MAILS) if job.source == "smtp"]
                spooled = journal.query("SELECT COUNT(*) AS n FROM smtp_mails WHERE state = 'spooled'")[0]["n"]
                return (len(jobs) >= MAILS and spooled == 0 and all(job.state.is_final for job in jobs)
                        and not simulator.inbox)

            wait_until(settled, timeout=300, what="every mail sent and every fax collected")
            jobs = [job for job in journal.jobs.recent(10 * MAILS) if job.source == "smtp"]
            inbound = journal.inbound.all()
            # How many sends a kill left in flight (made 'unknown', then reconciled), for the summary.
            adopted = sum(any(to == "unknown" for _f, to, _d in journal.jobs.events(job.id)) for job in jobs)
    finally:
        for node in nodes:
            node.stop()

    # 0 lost, 0 duplicated: FAX.de holds exactly one job per accepted mail.
    per_number = Counter(r.address for job in simulator.jobs for r in job.recipients)
    assert {_number(i): per_number[_number(i)] for i in range(MAILS)} == {_number(i): 1 for i in range(MAILS)}
    assert sum(per_number.values()) == MAILS
    # Each journaled job ended as sent (delivered, or confirmed by FAX.de's -77 after a node died
    # mid-SendJob); none was dropped or refused.
    assert Counter(job.state.value for job in jobs) <= Counter({"delivered": MAILS, "confirmed": MAILS})
    # Each fax once on disk, once in the journal, deleted on FAX.de.
    stored = sorted((tmp_path / "in").glob("*.tif"))
    assert len(stored) == FAXES, [p.name for p in stored]
    assert sorted(r.fax_id for r in inbound) == sorted(f.fax_id for f in faxes)
    assert all(r.state.value == "deleted" for r in inbound)
    logs = "".join(node.log.read_text(errors="replace") for node in nodes)
    assert "Traceback" not in logs, logs[-5000:]
    assert PG_PASSWORD not in logs and PASSWORD not in logs
    assert restarted
    print(f"{NODES} nodes, {len(kills)} kills ({Counter(kills)}), {cuts} connection cuts, PostgreSQL restarted, {MAILS} mails,"
          f" {FAXES} faxes, {adopted} send(s) left in flight by a kill and reconciled: 0 lost, 0 duplicated")
