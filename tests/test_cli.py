"""The command line end to end: real subprocesses, a real config file, the simulator over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faxbridge.simulator import Fault, FaultKind
from faxbridge.simulator.samples import make_pdf

from conftest import PASSWORD, wait_until


def faxbridge(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "faxbridge", *args], capture_output=True,
                            text=True, timeout=60, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "Angebot 7.pdf"
    path.write_bytes(make_pdf(2))
    return path


def test_send_prints_the_job_and_the_simulator_has_the_exact_bytes(make_config, simulator, pdf) -> None:
    config = make_config()
    out = faxbridge("send", "-c", str(config), "--to", "040 / 123456", "--option", "STATIONID=ACME",
                    "--ref", "A-7", "--json", str(pdf))
    result = json.loads(out.stdout)
    assert result["state"] == "submitted" and result["recipients"] == ["+4940123456[A-7]"]
    assert (result["recipients_count"], result["page_count"]) == (1, 2)
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == pdf.read_bytes() and call.params["SendFilename1"] == pdf.name
    assert call.params["Options"] == "STATIONID=ACME"
    assert result["faxde_job_id"] == simulator.jobs[0].job_id


def test_send_wait_polls_to_the_end_and_prints_the_report(make_config, simulator, pdf) -> None:
    simulator.polls_until_done = 2
    out = faxbridge("send", "-c", str(make_config()), "--to", "+49 40 123456", "--wait", str(pdf))
    assert "job 1: delivered" in out.stdout
    assert "+4940123456  OK  pages=2" in out.stdout
    assert len(simulator.calls_for("JobStatus")) == 3


def test_an_sms_from_text_only(make_config, simulator) -> None:
    out = faxbridge("send", "-c", str(make_config()), "--type", "sms", "--to", "+49 171 1234567",
                    "--text", "Ihr Termin morgen um 9 Uhr", "--json")
    assert json.loads(out.stdout)["state"] == "submitted"
    [call] = simulator.calls_for("SendJob")
    assert call.params["JobType"] == 1 and call.params["SendText"] == "Ihr Termin morgen um 9 Uhr"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to", "0900 123456"], "premium-rate"),
        (["--to", "+44 20 7946 0000"], "allowed_countries"),
        (["--to", "123"], "123"),
        ([], "needs --to"),
    ],
)
def test_refused_numbers_exit_non_zero_with_one_line_and_no_sendjob(make_config, simulator, pdf, args, message) -> None:
    out = faxbridge("send", "-c", str(make_config()), *args, str(pdf), check=False)
    assert out.returncode == 1
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert simulator.calls_for("SendJob") == []


def test_a_bad_document_is_refused_before_paying(make_config, simulator, tmp_path) -> None:
    fake = tmp_path / "scan.pdf"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    out = faxbridge("send", "-c", str(make_config()), "--to", "040 123456", str(fake), check=False)
    assert out.returncode == 1 and "named .pdf but is a PNG image" in out.stderr
    assert simulator.calls_for("SendJob") == []


def test_a_provider_rejection_exits_3_with_the_reason(make_config, simulator, pdf) -> None:
    simulator.set_refusal("+4940123456", -5)
    out = faxbridge("send", "-c", str(make_config()), "--to", "040 123456", "--json", str(pdf), check=False)
    assert out.returncode == 3
    result = json.loads(out.stdout)
    assert result["state"] == "rejected" and result["error_code"] == -5
    assert "Recipient number blocked" in result["error"]


def test_status_cancel_and_jobs(make_config, simulator, pdf) -> None:
    config = str(make_config())
    faxbridge("send", "-c", config, "--to", "040 123456", "--at", "2031-01-01T08:00+01:00", str(pdf))
    assert simulator.calls_for("SendJob")[0].params["SendDateTime"].isoformat() == "2031-01-01T07:00:00+00:00"
    status = json.loads(faxbridge("status", "-c", config, "1", "--json").stdout)
    assert status["state"] == "submitted"
    assert "cancelled" in faxbridge("cancel", "-c", config, "1").stdout
    assert len(simulator.calls_for("CancelJob")) == 1
    listing = faxbridge("jobs", "-c", config).stdout
    assert "cancelled" in listing and "+4940123456" in listing
    assert json.loads(faxbridge("jobs", "-c", config, "--json").stdout)[0]["state"] == "cancelled"


def test_the_same_send_twice_is_refused_unless_forced(make_config, simulator, pdf) -> None:
    config = str(make_config())
    faxbridge("send", "-c", config, "--to", "040 123456", str(pdf))
    again = faxbridge("send", "-c", config, "--to", "040 123456", str(pdf), check=False)
    assert again.returncode == 1 and "job 1" in again.stderr
    simulator.duplicate_window = 0  # FAX.de refuses identical jobs for a while too (-77)
    faxbridge("send", "-c", config, "--to", "040 123456", "--force", str(pdf))
    assert len(simulator.calls_for("SendJob")) == 2


def test_check_config_reports_the_key_path(tmp_path, make_config) -> None:
    good = make_config()
    assert "OK" in faxbridge("check-config", "-c", str(good)).stdout
    bad = make_config(hotfolders=[{"path": str(tmp_path), "job_type": "letter"}])
    out = faxbridge("check-config", "-c", str(bad), check=False)
    assert out.returncode == 1
    assert "hotfolders[0].job_type: expected one of fax, sms, email, iletter, iletter-color, qsign; got 'letter'" in out.stderr


def test_a_missing_config_is_one_clear_line(tmp_path) -> None:
    out = faxbridge("jobs", "-c", str(tmp_path / "nope.yaml"), check=False)
    assert out.returncode == 1 and "nope.yaml" in out.stderr and "Traceback" not in out.stderr


def test_the_password_never_appears_in_debug_output(make_config, simulator, pdf, tmp_path) -> None:
    simulator.polls_until_done = 1
    config = str(make_config())
    outputs = [
        faxbridge("send", "-c", config, "-v", "--to", "040 123456", "--wait", str(pdf)),
        faxbridge("status", "-c", config, "-v", "1"),
    ]
    simulator.password = "something-else"  # now every call fails: errors are logged too
    outputs.append(faxbridge("send", "-c", config, "-v", "--to", "040 654321", str(pdf), check=False))
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "DEBUG" in text  # the test really ran at debug level
    assert PASSWORD not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file() and path.suffix != ".sqlite3" and "sqlite3" not in path.name:
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_send_takes_a_copy_so_the_file_may_go_at_once(make_config, simulator, pdf, run_daemon, tmp_path) -> None:
    # An ERP writes a temporary PDF, calls `faxbridge send` and deletes it. FAX.de is down at that
    # moment: the job waits, and the daemon sends it later — from faxbridge's own copy.
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob", calls=frozenset({1})))
    config = make_config()
    original = pdf.read_bytes()
    out = faxbridge("send", "-c", str(config), "--to", "+49 40 123456", "--json", str(pdf), check=False)
    assert json.loads(out.stdout)["state"] == "queued", out.stdout + out.stderr
    pdf.unlink()
    outbox = tmp_path / "state" / "cli-outbox"
    [copy_dir] = list(outbox.iterdir())
    daemon = run_daemon(config)
    wait_until(lambda: len(simulator.calls_for("SendJob")) == 2, what="the queued job sent by the daemon")
    assert simulator.calls_for("SendJob")[1].params["SendFile1"] == original
    assert simulator.calls_for("SendJob")[1].params["SendFilename1"] == pdf.name
    wait_until(lambda: not copy_dir.exists(), what="the copy removed once the job is final")
    daemon.stop()
    out = faxbridge("status", "-c", str(config), "1", "--json")
    assert json.loads(out.stdout)["state"] == "delivered"


def test_a_send_that_is_refused_leaves_no_copy(make_config, simulator, pdf, tmp_path) -> None:
    config = make_config()
    faxbridge("send", "-c", str(config), "--to", "040 123456", str(pdf))
    out = faxbridge("send", "-c", str(config), "--to", "040 123456", str(pdf), check=False)  # a duplicate
    assert out.returncode != 0 and "not sending them twice" in out.stderr
    assert len(list((tmp_path / "state" / "cli-outbox").iterdir())) == 1  # the first job's, until it ends
