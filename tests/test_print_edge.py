"""The print edge without CUPS: the real backend program (as CUPS would start it) and the daemon's
print socket, for the refusals, duplicates, reports and the backend's exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faxbridge.edges.printing import intake
from faxbridge.edges.printing.backend import CUPS_BACKEND_CANCEL, CUPS_BACKEND_OK, CUPS_BACKEND_RETRY, hand_over
from faxbridge.edges.printing.wire import PrintHeader
from faxbridge.config import parse_config, PrintConfig
from faxbridge.errors import ConfigError
from faxbridge.journal import Journal
from faxbridge.model import JobState
from faxbridge.simulator import Fault, FaultKind, Simulator
from conftest import wait_until
from test_smtp_support import RelayServer, relay, smtp_section  # noqa: F401 (fixture)
from textpdf import text_pdf, write_text_pdf


@pytest.fixture
def printing(make_config: Callable[..., Path], run_daemon: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    def start(**print_section: Any) -> Any:
        section = {"socket": str(tmp_path / "print.sock"), **print_section}
        return run_daemon(make_config(print=section))
    return start


def backend(tmp_path: Path, pdf: bytes, *, title: str = "doc", options: str = "", user: str = "alice",
            job: str = "7") -> subprocess.CompletedProcess[str]:
    """The backend as CUPS runs it: its arguments, DEVICE_URI, the document on stdin."""
    env = {**os.environ, "DEVICE_URI": f"faxbridge:{tmp_path / 'print.sock'}", "PRINTER": "fax",
           "FINAL_CONTENT_TYPE": "application/vnd.cups-pdf"}
    return subprocess.run(
        [sys.executable, "-I", "-m", "faxbridge.edges.printing.backend", job, user, title, "1", options],
        input=pdf.decode("latin-1"), env=env, capture_output=True, text=True, encoding="latin-1", timeout=60,
        check=False,
    )


def sendjobs(simulator: Simulator) -> list[Any]:
    return simulator.calls_for("SendJob")


def failed_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "print-failed"


def print_jobs(tmp_path: Path) -> list[Any]:
    with Journal.open(tmp_path / "state") as journal:
        return [j for j in journal.jobs.recent(100) if j.source == "print"]


@pytest.mark.timeout(60)
def test_backend_exit_codes(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    pdf = text_pdf([["hello"]])
    down = backend(tmp_path, pdf, options="fax-number=+4930123456")
    assert down.returncode == CUPS_BACKEND_RETRY
    assert "ERROR: faxbridge is not taking print jobs" in down.stderr
    printing()
    ok = backend(tmp_path, pdf, options="fax-number=+4930123456")
    assert ok.returncode == CUPS_BACKEND_OK, ok.stderr
    assert "INFO: faxbridge job 1" in ok.stderr
    refused = backend(tmp_path, pdf, job="8")
    assert refused.returncode == CUPS_BACKEND_CANCEL
    assert "ERROR: faxbridge refused the job: no recipient" in refused.stderr
    # the same CUPS job again (CUPS retried after a lost answer): journaled once
    again = backend(tmp_path, pdf, options="fax-number=+4930123456")
    assert again.returncode == CUPS_BACKEND_OK and "faxbridge job 1" in again.stderr
    wait_until(lambda: len(sendjobs(simulator)) == 1, what="one SendJob")
    assert len(print_jobs(tmp_path)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("pages", "options", "title", "message"),
    [
        ([["@@NUMBER +4930111@@"], ["@@SPLIT@@ no number"]], "", "doc", "page 2: the letter on page 2 has no @@NUMBER"),
        ([["@@NUMBER +49301234567@@ @@SUBJECT A@@"], ["@@SUBJECT B@@"]], "", "doc", "page 2: conflicting codes"),
        ([["@@NUMBER +49301234567@@"], ["@@NUMBER 0900 1234567@@"]], "", "doc", "page 2: @@NUMBER 0900 1234567@@"),
        ([["@@NUMBER +49301234567@@"]], "fax-number=+49401234567", "doc", "conflicting recipients: the option"),
        ([[], []], "", "scan", "no text layer (a scan?) on page 1, 2"),
        ([["text"]], "fax-number=+49900123456", "doc", "recipient"),
    ],
)
def test_bad_input_is_refused_whole_and_kept(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path,
                                             pages: list[list[str]], options: str, title: str, message: str) -> None:
    printing()
    done = backend(tmp_path, text_pdf(pages), options=options, title=title)
    assert done.returncode == CUPS_BACKEND_CANCEL
    assert message in done.stderr
    (error,) = failed_dir(tmp_path).glob("*.error.txt")
    assert message in " ".join(error.read_text().split())
    assert "printed by alice" in error.read_text()
    assert error.with_name(error.name.replace(".error.txt", ".pdf")).read_bytes() == text_pdf(pages)
    assert print_jobs(tmp_path) == [] and sendjobs(simulator) == []


@pytest.mark.timeout(60)
def test_a_broken_pdf_is_refused_and_kept(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    printing()
    broken = b"%PDF-1.4\n" + b"\x00garbage" * 50
    done = backend(tmp_path, broken, options="fax-number=+4930123456")
    assert done.returncode == CUPS_BACKEND_CANCEL
    assert "not a readable PDF" in done.stderr
    (kept,) = failed_dir(tmp_path).glob("*.pdf")
    assert kept.read_bytes() == broken
    assert not any((tmp_path / "state" / "print" / "letters").iterdir())


@pytest.mark.timeout(60)
def test_users_not_allowed_are_refused(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    printing(allowed_users=["alice"])
    done = backend(tmp_path, text_pdf([["x"]]), options="fax-number=+4930123456", user="mallory")
    assert done.returncode == CUPS_BACKEND_CANCEL
    assert "'mallory' may not send faxes" in done.stderr
    assert backend(tmp_path, text_pdf([["x"]]), options="fax-number=+4930123456").returncode == CUPS_BACKEND_OK


@pytest.mark.timeout(60)
def test_serial_job_with_a_duplicate_says_which_letters_went(
        printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    printing()
    first = [["Invoice 1", "@@NUMBER +49301111111@@"]]
    assert backend(tmp_path, text_pdf(first), job="1").returncode == CUPS_BACKEND_OK
    serial = first + [["Invoice 2", "@@NUMBER +49402222222@@"]]
    done = backend(tmp_path, text_pdf(serial), job="2")
    # letter 2 went; letter 1 is the same fax as job 1's and was held back
    assert done.returncode == CUPS_BACKEND_OK
    assert "not sent: letter 1:" in done.stderr
    (error,) = failed_dir(tmp_path).glob("*.error.txt")
    text = error.read_text()
    assert "letter 1 (page 1): NOT sent" in text and "letter 2 (page 2): queued as faxbridge job 2" in text
    assert list(failed_dir(tmp_path).glob("*-letter1.pdf"))
    wait_until(lambda: len(sendjobs(simulator)) == 2, what="two SendJobs")


@pytest.mark.timeout(60)
def test_a_rejected_letter_lands_in_failed_with_its_reason(
        printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    simulator.set_faults(Fault(FaultKind.RESULT, operation="SendJob", code=-5))
    printing()
    assert backend(tmp_path, text_pdf([["@@NUMBER +49301111111@@ hi"]])).returncode == CUPS_BACKEND_OK
    wait_until(lambda: list(failed_dir(tmp_path).glob("*.error.txt")), what="the error file")
    (error,) = failed_dir(tmp_path).glob("*.error.txt")
    assert "Recipient number blocked" in error.read_text() or "-5" in error.read_text()
    letter = error.with_name(error.name.replace(".error.txt", ".pdf"))
    assert letter.read_bytes().startswith(b"%PDF")
    (job,) = print_jobs(tmp_path)
    assert job.state is JobState.REJECTED and job.meta["sender"] == "alice"
    assert not any((tmp_path / "state" / "print" / "letters").iterdir())


@pytest.mark.timeout(60)
def test_a_delivered_letter_leaves_the_spool(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    printing()
    assert backend(tmp_path, text_pdf([["@@NUMBER +49301111111@@ hi"]])).returncode == CUPS_BACKEND_OK
    wait_until(lambda: print_jobs(tmp_path) and print_jobs(tmp_path)[0].state.is_final, what="the job to end")
    wait_until(lambda: not any((tmp_path / "state" / "print" / "letters").iterdir()), what="the spool to empty")
    assert not list(failed_dir(tmp_path).iterdir())


@pytest.mark.timeout(60)
def test_the_print_user_gets_a_report_mail(make_config: Callable[..., Path], run_daemon: Callable[..., Any],
                                           simulator: Simulator, relay: RelayServer, tmp_path: Path) -> None:
    run_daemon(make_config(
        smtp=smtp_section(relay.port),
        print={"socket": str(tmp_path / "print.sock"), "report_to": {"*": "{user}@example.com"}},
    ))
    pdf = text_pdf([["@@NUMBER +49301111111@@ @@SUBJECT Invoice 4711@@ hi"]])
    assert backend(tmp_path, pdf, user="bob").returncode == CUPS_BACKEND_OK
    (mail,) = relay.sink.wait_for(1, timeout=30)
    assert mail.rcpt_tos == ["bob@example.com"]
    assert mail.message["Subject"] == "Fax delivered: Invoice 4711"


@pytest.mark.timeout(60)
def test_codes_choose_sms_and_a_send_time(printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    printing()
    pdf = text_pdf([["@@NUMBER +49 151 23456789@@ @@TYPE sms@@", "Your parcel is ready for pickup."],
                    ["@@NUMBER +49301111111@@ @@SENDAT 2030-01-02T08:00+00:00@@ A later fax"]])
    done = backend(tmp_path, pdf)
    assert done.returncode == CUPS_BACKEND_OK, done.stderr
    wait_until(lambda: len(sendjobs(simulator)) == 2, what="two SendJobs")
    by_type = {c.params["JobType"]: c for c in sendjobs(simulator)}
    sms, fax = by_type[1], by_type[0]
    assert sms.params["Recipient"] == "+4915123456789"
    assert sms.params["SendText"] == "Your parcel is ready for pickup."
    assert not sms.params.get("SendFile1")
    assert fax.params["SendDateTime"].year == 2030


@pytest.mark.timeout(60)
def test_leftovers_of_a_crash_are_cleared_and_journaled_letters_kept(
        printing: Callable[..., Any], simulator: Simulator, tmp_path: Path) -> None:
    spool = tmp_path / "state" / "print"
    (spool / "incoming").mkdir(parents=True)
    (spool / "letters").mkdir()
    half_taken = spool / "incoming" / "fax-9-0123456789ab.pdf"  # never answered "ok": CUPS has it
    half_taken.write_bytes(text_pdf([["x"]]))
    orphan = spool / "letters" / "fax-9-0123456789ab-1.pdf"  # never journaled
    orphan.write_bytes(text_pdf([["x"]]))
    simulator.set_faults(Fault(FaultKind.HTTP_500, operation="SendJob"))  # the letter waits in the spool
    running = printing()
    assert backend(tmp_path, text_pdf([["@@NUMBER +49301111111@@"]])).returncode == CUPS_BACKEND_OK
    (kept,) = (spool / "letters").iterdir()
    running.stop()
    assert not half_taken.exists() and not orphan.exists()
    printing()  # started again: the journaled letter stays for its job
    assert kept.exists()


def test_socket_is_private(printing: Callable[..., Any], tmp_path: Path) -> None:
    printing()
    assert (tmp_path / "print.sock").stat().st_mode & 0o777 == 0o600


def test_option_and_title_numbers() -> None:
    assert intake.option_numbers("fax-number=+4930123,+4940456 number-up=1") == ["+4930123", "+4940456"]
    assert intake.option_numbers("'fax-number=+49 30 123' finishings=3") == ["+4930123"]
    assert intake.option_numbers("job-uuid=x") == []
    assert intake.title_numbers("fax:+49 30 1234567") == ["+49301234567"]
    assert intake.title_numbers("Microsoft Word - Offer FAX: 030 123; 040 456") == ["030123", "040456"]
    assert intake.title_numbers("Microsoft Word - fax_+4930123456.docx") == ["+4930123456"]
    assert intake.title_numbers("invoice.pdf") == []
    assert intake.title_numbers("faxes 2024") == []


def test_print_section_config(tmp_path: Path) -> None:
    base = {"faxde": {"account": "1", "password": "x"}, "state_dir": str(tmp_path)}
    config = parse_config({**base, "print": None}, tmp_path)
    assert config.print == PrintConfig(spool_dir=tmp_path / "print", failed_dir=tmp_path / "print-failed")
    relay = {"domains": {"fax.example.com": "fax"}, "allowed_senders": ["*@example.com"], "relay": "127.0.0.1:25"}
    with pytest.raises(ConfigError, match=r"^print.report_to: needs smtp.relay"):
        parse_config({**base, "print": {"report_to": {"alice": "a@example.com"}}}, tmp_path)
    config = parse_config({**base, "smtp": relay,
                           "print": {"report_to": {"alice": "a@example.com", "*": "{user}@example.com"},
                                     "allowed_users": ["alice", "bob"], "control_codes": False}}, tmp_path)
    assert config.print is not None and config.print.report_to["*"] == "{user}@example.com"
    with pytest.raises(ConfigError, match=r"^print.report_to.alice: expected a mail address"):
        parse_config({**base, "smtp": relay, "print": {"report_to": {"alice": "nobody"}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"^print.socket: .* too long for a Unix socket"):
        parse_config({**base, "print": {"socket": "/run/" + "x" * 120}}, tmp_path)
    with pytest.raises(ConfigError, match=r"^print.socks"):
        parse_config({**base, "print": {"socks": "/x"}}, tmp_path)


def test_hand_over_reports_a_missing_daemon(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        hand_over(str(tmp_path / "nothing.sock"), PrintHeader(job="1", user="a", title="t"), io.BytesIO(b"%PDF"))


def test_no_text_layer_with_option_is_fine(tmp_path: Path) -> None:
    scan = write_text_pdf(tmp_path / "scan.pdf", [[]])
    (letter,) = intake.plan_job(scan, "fax-number=+49301234567", "scan", control_codes=True,
                                check=lambda number, purpose: number)
    assert letter.recipients == ("+49301234567",) and letter.pages == 1
