"""The daemon as a service: systemd notify, SIGTERM during a slow SendJob, reload, health, metrics, unit file."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
from faxbridge.simulator import Fault, FaultKind
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from journal_backend import open_journal

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotifySocket:
    """What systemd would listen on: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[str] = []

    def wait_for(self, state: str, times: int = 1, timeout: float = 20) -> list[str]:
        self.sock.settimeout(timeout)
        while sum(state in message for message in self.received) < times:
            self.received.append(self.sock.recv(4096).decode())  # blocks until the daemon says something
        return self.received

    def close(self) -> None:
        self.sock.close()


def queue_job(state_dir: Path, pdf: Path, ref: str = "1") -> int:
    """Journal a job the way an edge would, before the daemon runs."""
    request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(pdf.name, pdf),))
    with open_journal(state_dir) as journal:
        job, _ = journal.jobs.add(request, source="test", source_ref=ref, content_key=ref)
        return job.id


def start_daemon(config: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, NotifySocket]:
    notify = NotifySocket(tmp_path / f"notify-{len(list(tmp_path.glob('notify-*')))}")
    process = subprocess.Popen(
        [sys.executable, "-m", "faxbridge", "run", "-c", str(config)],
        env={**os.environ, "NOTIFY_SOCKET": str(notify.path), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, notify


def reap(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "brief.pdf"
    path.write_bytes(make_pdf(1))
    return path


def test_ready_watchdog_and_stopping_reach_systemd(make_config, tmp_path) -> None:
    process, notify = start_daemon(make_config(), tmp_path, WATCHDOG_USEC="200000")
    try:
        messages = notify.wait_for("READY=1")
        assert any(m.startswith("READY=1") for m in messages)
        notify.wait_for("WATCHDOG=1", times=3)
        process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert process.wait(20) == 0
    finally:
        reap(process)
        notify.close()


def test_sigterm_during_a_slow_sendjob_records_the_outcome(make_config, simulator, tmp_path, pdf) -> None:
    config = make_config()
    job_id = queue_job(tmp_path / "state", pdf)
    simulator.set_faults(Fault(FaultKind.DELAY, operation="SendJob", seconds=1.5))
    process, notify = start_daemon(config, tmp_path)
    try:
        notify.wait_for("READY=1")
        with open_journal(tmp_path / "state") as journal:
            wait_until(lambda: journal.jobs.get(job_id).state is JobState.SUBMITTING, what="SendJob in flight")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        with open_journal(tmp_path / "state") as journal:
            job = journal.jobs.get(job_id)
        assert job.state is JobState.SUBMITTED and job.faxde_job_id == simulator.jobs[0].job_id
        assert "waiting for 1 SendJob call(s) in flight" in output
    finally:
        reap(process)
        notify.close()
    simulator.clear_faults()
    # a restart continues with status polling; nothing is sent again
    process, notify = start_daemon(config, tmp_path)
    try:
        notify.wait_for("READY=1")
        with open_journal(tmp_path / "state") as journal:
            wait_until(lambda: journal.jobs.get(job_id).state is JobState.DELIVERED, what="delivery")
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        reap(process)
        notify.close()
    assert len(simulator.calls_for("SendJob")) == 1


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_parse_as_prometheus_text_and_move_with_jobs(make_config, simulator, run_daemon, tmp_path, pdf) -> None:
    port = free_port()
    daemon = run_daemon(make_config(metrics={"listen": f"127.0.0.1:{port}"}))
    status, before = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    first = samples(before)
    assert first["faxbridge_up", ()] == 1.0
    delivered = ("faxbridge_jobs", (("state", "delivered"), ("type", "fax")))
    assert first[delivered] == 0.0
    request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(pdf.name, pdf),))
    job = daemon.call(lambda: daemon.services.outbound.submit(request, source="test", source_ref="m"))
    with open_journal(tmp_path / "state") as journal:
        wait_until(lambda: journal.jobs.get(job.id).state is JobState.DELIVERED, what="delivery")
    after = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
    assert after[delivered] == 1.0
    ok_calls = ("faxbridge_provider_calls_total", (("operation", "SendJob"), ("outcome", "ok")))
    assert after[ok_calls] == 1.0
    assert after["faxbridge_provider_call_duration_seconds_count", (("operation", "SendJob"),)] == 1.0
    assert get(f"http://127.0.0.1:{port}/nope")[0] == 404


def test_metrics_keep_every_digit(make_config, run_daemon) -> None:
    # Values were once formatted with {:g}: the start time read 1.79639e+09 (up to half an hour
    # off) and any counter past 999 999 was rounded to six digits.
    port = free_port()
    daemon = run_daemon(make_config(metrics={"listen": f"127.0.0.1:{port}"}))

    async def count_many() -> None:
        daemon.services.calls.stats.calls["JobStatus", "ok"] = 1_234_567

    daemon.call(count_many)  # on the daemon's loop, where the calls are counted
    found = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
    assert found["faxbridge_start_time_seconds", ()] == daemon.daemon.started_at
    assert found["faxbridge_provider_calls_total", (("operation", "JobStatus"), ("outcome", "ok"))] == 1_234_567


def test_the_status_server_answers_only_its_routes(make_config, run_daemon) -> None:
    port = free_port()
    run_daemon(make_config(metrics={"listen": f"127.0.0.1:{port}"}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 405
    else:
        raise AssertionError("POST /healthz was answered")
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "# TYPE faxbridge_provider_call_duration_seconds histogram" in body


def test_healthz_and_the_health_command_report_a_paused_account(make_config, simulator, run_daemon, tmp_path, pdf) -> None:
    port = free_port()
    config = make_config(metrics={"listen": f"127.0.0.1:{port}"})
    daemon = run_daemon(config)
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    health = subprocess.run([sys.executable, "-m", "faxbridge", "health", "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stderr
    simulator.password = "changed"
    request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document(pdf.name, pdf),))
    daemon.call(lambda: daemon.services.outbound.submit(request, source="test", source_ref="h"))
    wait_until(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 503, what="unhealthy")
    problems = json.loads(get(f"http://127.0.0.1:{port}/healthz")[1])["problems"]
    assert any("sending paused" in p and "wrong password" in p for p in problems)
    health = subprocess.run([sys.executable, "-m", "faxbridge", "health", "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert health.returncode == 1 and "sending paused" in health.stdout


def test_the_health_command_probes_faxde_without_a_daemon(make_config, simulator) -> None:
    config = make_config()
    ok = subprocess.run([sys.executable, "-m", "faxbridge", "health", "-c", str(config)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "password accepted" in ok.stdout
    simulator.password = "changed"
    bad = subprocess.run([sys.executable, "-m", "faxbridge", "health", "-c", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "wrong password" in bad.stdout
    assert simulator.calls_for("SendJob") == [] and simulator.calls_for("RequestReceived") == []


def test_reload_switches_to_a_valid_config_and_refuses_a_broken_one(make_config, run_daemon, caplog) -> None:
    config = make_config()
    daemon = run_daemon(config)
    assert daemon.daemon.config.status.interval == 0.1
    data = yaml.safe_load(config.read_text())
    data["status"]["interval"] = "500ms"
    config.write_text(yaml.safe_dump(data))
    daemon.loop.call_soon_threadsafe(daemon.daemon.request_reload)
    wait_until(lambda: daemon.daemon.reloads == 1 and daemon.daemon.ready.is_set(), what="reload")
    assert daemon.daemon.config.status.interval == 0.5
    config.write_text(config.read_text() + "\nbogus_key: 1\n")
    daemon.loop.call_soon_threadsafe(daemon.daemon.request_reload)
    wait_until(lambda: "reload refused" in caplog.text, what="the refusal")
    assert "bogus_key" in caplog.text
    assert daemon.daemon.reloads == 1 and daemon.daemon.ready.is_set()


def _unit_for_checks(tmp_path: Path) -> Path:
    unit = (ROOT / "systemd" / "faxbridge.service").read_text()
    # verify wants an executable ExecStart; use this checkout's own entry point
    exe = shutil.which("faxbridge") or str(Path(sys.executable).parent / "faxbridge")
    path = tmp_path / "faxbridge.service"
    path.write_text(unit.replace("/opt/faxbridge/bin/faxbridge", exe))
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(_unit_for_checks(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "faxbridge.service" not in result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(_unit_for_checks(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_the_service_takes_a_dropped_file_and_a_mail_and_stops_cleanly(make_config, simulator, tmp_path, pdf) -> None:
    import smtplib
    from email.message import EmailMessage

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    smtp_port = free_port()
    config = make_config(
        hotfolders=[{"path": str(outbox)}],
        smtp={"listen": f"127.0.0.1:{smtp_port}", "domains": {"fax.example.com": "fax"},
              "allowed_senders": ["*@example.com"]},
    )
    process, notify = start_daemon(config, tmp_path)
    try:
        notify.wait_for("READY=1")  # READY comes only once the hotfolder and the listener are up
        (outbox / "incoming.tmp").write_bytes(make_pdf(2, tag="drop"))
        (outbox / "incoming.tmp").rename(outbox / "+49 40 1234567_Angebot.pdf")
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "alice@example.com", "+493012345678@fax.example.com", "Hi"
        mail.set_content("Bitte faxen.")
        mail.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename="brief.pdf")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(mail)
        wait_until(lambda: len(simulator.calls_for("SendJob")) == 2, what="both SendJobs")
        wait_until(lambda: (outbox / "sent" / "+49 40 1234567_Angebot.pdf").exists(), what="the move to sent/")
        process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert process.wait(20) == 0
    finally:
        reap(process)
        notify.close()
    recipients = sorted(call.params["Recipient"] for call in simulator.calls_for("SendJob"))
    assert recipients == ["+493012345678", "+49401234567"]
