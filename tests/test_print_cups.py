"""Print to fax through a real cupsd: a private scheduler (its own ServerRoot, spool and domain
socket in tmp_path, the distribution's filters), the queue installed with `faxbridge cups install`,
jobs printed with `lp`, and the simulator checking what FAX.de would receive."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2
import pytest

from faxbridge.cli import main as cli_main
from faxbridge.journal import Journal
from faxbridge.simulator import Simulator
from conftest import wait_until
from textpdf import write_text_pdf

pytestmark = [
    pytest.mark.skipif(shutil.which("cupsd") is None or shutil.which("lp") is None, reason="CUPS is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private cupsd runs its backends as root only when started as root"),
]

SERVER_BIN_LINKS = ("filter", "daemon", "monitor", "notifier", "driver", "cgi-bin")


@dataclass
class Cupsd:
    root: Path
    socket: Path
    backend_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CUPS_SERVER": str(self.socket)}

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=30, check=False)

    def lp(self, *args: str) -> str:
        done = self.run("lp", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.split("request id is ")[1].split()[0]  # "fax-3"

    def job_state(self, job: str) -> tuple[str, str]:
        """(job-state, job-printer-state-message) as the scheduler reports them over IPP."""
        host = urllib.parse.quote(str(self.socket), safe="")  # a domain socket, as CUPS spells it in a URI
        done = self.run("ipptool", "-tv", f"ipp://{host}/jobs/{job.rsplit('-', 1)[1]}", str(self._get_job))
        state = message = ""
        for line in done.stdout.splitlines():
            line = line.strip()
            if line.startswith("job-state (enum) = "):
                state = line.split(" = ", 1)[1]
            elif line.startswith("job-printer-state-message (textWithoutLanguage) = "):
                message = line.split(" = ", 1)[1]
        return state, message

    @property
    def _get_job(self) -> Path:
        path = self.root / "get-job.test"
        if not path.exists():
            path.write_text(
                '{ OPERATION Get-Job-Attributes GROUP operation-attributes-tag\n'
                ' ATTR charset attributes-charset utf-8\n ATTR naturalLanguage attributes-natural-language en\n'
                ' ATTR uri job-uri $uri\n ATTR name requesting-user-name root\n'
                ' ATTR keyword requested-attributes job-state,job-printer-state-message\n'
                ' STATUS successful-ok\n DISPLAY job-state\n DISPLAY job-printer-state-message }\n'
            )
        return path


@pytest.fixture
def cupsd() -> Iterator[Cupsd]:
    """A private cupsd: nothing of the system's CUPS is touched (its filters are linked in).

    Not in tmp_path: cupsd runs the filters as user lp, who cannot enter pytest's 0700 folders."""
    root = Path(tempfile.mkdtemp(prefix="faxbridge-cups-"))
    root.chmod(0o755)
    for name in ("conf", "bin/backend", "spool", "cache", "state", "log"):
        (root / name).mkdir(parents=True)
    for name in SERVER_BIN_LINKS:
        if Path("/usr/lib/cups", name).exists():
            (root / "bin" / name).symlink_to(Path("/usr/lib/cups", name))
    socket = root / "state" / "cups.sock"
    (root / "conf" / "cupsd.conf").write_text(
        f"Listen {socket}\nLogLevel debug\nBrowsing No\nWebInterface No\n"
        # CUPS tries a job again JobRetryInterval seconds after the backend asked for a retry.
        "JobRetryInterval 1\nJobRetryLimit 1000\nPreserveJobFiles No\n"
        "<Location />\nOrder allow,deny\nAllow all\n</Location>\n"
    )
    (root / "conf" / "cups-files.conf").write_text(
        f"ServerRoot {root / 'conf'}\nServerBin {root / 'bin'}\nDataDir /usr/share/cups\n"
        f"RequestRoot {root / 'spool'}\nCacheDir {root / 'cache'}\nStateDir {root / 'state'}\n"
        f"TempDir {root / 'spool'}\nAccessLog {root / 'log/access_log'}\nErrorLog {root / 'log/error_log'}\n"
        f"PageLog {root / 'log/page_log'}\nSystemGroup root\n"
    )
    process = subprocess.Popen(
        ["cupsd", "-f", "-c", str(root / "conf/cupsd.conf"), "-s", str(root / "conf/cups-files.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = Cupsd(root, socket, root / "bin" / "backend", process)
    try:
        wait_until(lambda: process.poll() is not None or server.run("lpstat", "-r").stdout.startswith("scheduler is running"),
                   what="cupsd to start")
        assert process.poll() is None, (root / "log/error_log").read_text()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def print_setup(cupsd: Cupsd, make_config: Callable[..., Path], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config with a print section, and the queue `fax` installed with the documented command."""
    config = make_config(print={"socket": str(tmp_path / "run" / "print.sock")})
    monkeypatch.setenv("CUPS_SERVER", str(cupsd.socket))
    assert cli_main(["cups", "install", "--queue", "fax", "-c", str(config),
                     "--backend-dir", str(cupsd.backend_dir)]) == 0
    assert (cupsd.backend_dir / "faxbridge").stat().st_mode & 0o777 == 0o700
    return config


def sendjobs(simulator: Simulator) -> list[Any]:
    return simulator.calls_for("SendJob")


def sent_pages(call: Any, tmp_path: Path) -> list[str]:
    """The text of each page of the document FAX.de received."""
    pdf = pypdfium2.PdfDocument(call.params["SendFile1"])
    try:
        texts = []
        for index in range(len(pdf)):
            textpage = pdf[index].get_textpage()
            texts.append(textpage.get_text_range())
        return texts
    finally:
        pdf.close()


def recipients(call: Any) -> list[str]:
    if call.params.get("Recipient"):
        return [call.params["Recipient"]]
    return call.params["RecipientFile"].decode().split()


def wait_done(cupsd: Cupsd, job: str) -> None:
    wait_until(lambda: cupsd.job_state(job)[0] == "completed", timeout=30, what=f"CUPS job {job} to complete")


@pytest.mark.timeout(120)
def test_number_from_option_title_and_codes(print_setup: Path, cupsd: Cupsd, simulator: Simulator,
                                            run_daemon: Callable[..., Any], tmp_path: Path) -> None:
    run_daemon(print_setup)
    plain = write_text_pdf(tmp_path / "plain.pdf", [["Offer for you"], ["page two"]])

    job = cupsd.lp("-d", "fax", "-o", "fax-number=+49301234567,+49405551234", str(plain))
    wait_until(lambda: len(sendjobs(simulator)) == 1, timeout=30, what="the SendJob for the option")
    call = sendjobs(simulator)[0]
    assert recipients(call) == ["+49301234567", "+49405551234"]
    assert call.params["SendFilename1"] == "plain.pdf"  # lp's title, the file name
    assert sent_pages(call, tmp_path) == ["Offer for you", "page two"]
    wait_done(cupsd, job)

    cupsd.lp("-d", "fax", "-t", "fax:+49 30 7654321", str(plain))
    wait_until(lambda: len(sendjobs(simulator)) == 2, timeout=30, what="the SendJob for the title")
    assert recipients(sendjobs(simulator)[1]) == ["+49307654321"]

    coded = write_text_pdf(tmp_path / "coded.pdf", [
        ["Invoice 4711", ("@@NUMBER +49 89\u00a0123 4567@@", 3.0, 1.0), ("@@SUBJECT Invoice 4711@@", 3.0, 1.0),
         "Dear customer"],
        ["Terms and conditions"],
    ])
    cupsd.lp("-d", "fax", str(coded))
    wait_until(lambda: len(sendjobs(simulator)) == 3, timeout=30, what="the SendJob for the codes")
    call = sendjobs(simulator)[2]
    assert recipients(call) == ["+49891234567"]
    pages = sent_pages(call, tmp_path)
    assert len(pages) == 2 and pages[1] == "Terms and conditions"
    assert not any("@@" in page or "NUMBER" in page or "4711" in page for page in pages)


@pytest.mark.timeout(120)
def test_postscript_goes_through_the_cups_filters(print_setup: Path, cupsd: Cupsd, simulator: Simulator,
                                                   run_daemon: Callable[..., Any], tmp_path: Path) -> None:
    run_daemon(print_setup)
    pdf = write_text_pdf(tmp_path / "letter.pdf", [["A PostScript letter"], ["its second page"]])
    postscript = tmp_path / "letter.ps"
    subprocess.run(["pdftops", str(pdf), str(postscript)], check=True, timeout=60)
    assert postscript.read_bytes().startswith(b"%!PS")
    job = cupsd.lp("-d", "fax", "-t", "fax:+4930123456", str(postscript))
    wait_until(lambda: len(sendjobs(simulator)) == 1, timeout=60, what="the SendJob for the PostScript job")
    call = sendjobs(simulator)[0]
    assert call.params["SendFile1"].startswith(b"%PDF")
    assert [" ".join(page.split()) for page in sent_pages(call, tmp_path)] == ["A PostScript letter", "its second page"]
    wait_done(cupsd, job)


@pytest.mark.timeout(120)
def test_serial_fax_of_three_letters(print_setup: Path, cupsd: Cupsd, simulator: Simulator,
                                     run_daemon: Callable[..., Any], tmp_path: Path) -> None:
    run_daemon(print_setup)
    serial = write_text_pdf(tmp_path / "serial.pdf", [
        ["Invoice A", "@@NUMBER +49 30 1111111@@"], ["Invoice A, page 2"],
        ["Invoice B", "@@TO: +49 40 2222222@@"],
        ["Invoice C", "@@nummer +49 89 3333333@@"], ["Invoice C, page 2"], ["Invoice C, page 3"],
    ])
    job = cupsd.lp("-d", "fax", "-t", "invoices", str(serial))
    wait_until(lambda: len(sendjobs(simulator)) == 3, timeout=60, what="three SendJobs")
    wait_done(cupsd, job)
    got = {recipients(c)[0]: sent_pages(c, tmp_path) for c in sendjobs(simulator)}
    # A page with a code is sent as its image (the code whited out), so it has no text left;
    # the other pages are copied as printed.
    assert got == {
        "+49301111111": ["", "Invoice A, page 2"],
        "+49402222222": [""],
        "+49893333333": ["", "Invoice C, page 2", "Invoice C, page 3"],
    }
    with Journal.open(tmp_path / "state") as journal:
        jobs = [j for j in journal.jobs.recent(10) if j.source == "print"]
    assert sorted(j.meta["pages"] for j in jobs) == ["page 3", "pages 1-2", "pages 4-6"]
    assert {j.meta["sender"] for j in jobs} == {"root"}


@pytest.mark.timeout(120)
def test_job_printed_while_the_daemon_is_down_goes_once_it_starts(
        print_setup: Path, cupsd: Cupsd, simulator: Simulator, run_daemon: Callable[..., Any], tmp_path: Path) -> None:
    document = write_text_pdf(tmp_path / "late.pdf", [["printed while faxbridge was stopped"]])
    job = cupsd.lp("-d", "fax", "-o", "fax-number=+4930123456", str(document))
    # The backend found no daemon and asked CUPS to retry: the job waits in CUPS.
    wait_until(lambda: "CUPS will try again" in cupsd.job_state(job)[1], timeout=30, what="a retry")
    assert cupsd.job_state(job)[0] in ("pending", "pending-held", "processing")
    assert sendjobs(simulator) == []
    run_daemon(print_setup)
    wait_until(lambda: len(sendjobs(simulator)) == 1, timeout=60, what="the SendJob after the start")
    assert sent_pages(sendjobs(simulator)[0], tmp_path) == ["printed while faxbridge was stopped"]
    wait_done(cupsd, job)


@pytest.mark.timeout(120)
def test_no_recipient_fails_the_print_job_and_keeps_the_document(
        print_setup: Path, cupsd: Cupsd, simulator: Simulator, run_daemon: Callable[..., Any], tmp_path: Path) -> None:
    run_daemon(print_setup)
    document = write_text_pdf(tmp_path / "letter.pdf", [["A letter without any number"]])
    job = cupsd.lp("-d", "fax", "-t", "Letter to nobody", str(document))
    message = wait_until(lambda: cupsd.job_state(job)[0] == "canceled" and cupsd.job_state(job)[1],
                         timeout=30, what="the print job to be cancelled")
    assert "no recipient" in message
    failed = tmp_path / "state" / "print-failed"
    errors = list(failed.glob("*.error.txt"))
    assert len(errors) == 1
    assert "no recipient" in errors[0].read_text()
    kept = errors[0].with_name(errors[0].name.removesuffix(".error.txt") + ".pdf")
    assert kept.read_bytes().startswith(b"%PDF")
    assert sendjobs(simulator) == []

    premium = write_text_pdf(tmp_path / "premium.pdf", [["@@NUMBER 0900 1234567@@ call us"]])
    job = cupsd.lp("-d", "fax", str(premium))
    message = wait_until(lambda: cupsd.job_state(job)[0] == "canceled" and cupsd.job_state(job)[1],
                         timeout=30, what="the premium-number job to be cancelled")
    assert "page 1" in message and "0900" in message
    assert sendjobs(simulator) == []


def test_install_and_uninstall(print_setup: Path, cupsd: Cupsd, make_config: Callable[..., Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    listed = cupsd.run("lpstat", "-v", "fax").stdout
    assert f"faxbridge:{print_setup.parent / 'run' / 'print.sock'}" in listed
    assert "printer-is-shared=false" in cupsd.run("lpoptions", "-p", "fax").stdout
    assert cli_main(["cups", "install", "--queue", "fax", "--shared", "-c", str(print_setup),
                     "--backend-dir", str(cupsd.backend_dir)]) == 0
    assert "printer-is-shared=true" in cupsd.run("lpoptions", "-p", "fax").stdout
    assert cli_main(["cups", "uninstall", "--queue", "fax", "--backend-dir", str(cupsd.backend_dir)]) == 0
    assert "fax" not in cupsd.run("lpstat", "-v").stdout
    assert not (cupsd.backend_dir / "faxbridge").exists()
    capsys.readouterr()
    assert cli_main(["cups", "install", "--queue", "no way", "-c", str(print_setup),
                     "--backend-dir", str(cupsd.backend_dir)]) == 1
    assert "queue name 'no way'" in capsys.readouterr().err
    # a config without a print section installs nothing and says why
    without = make_config()  # (rewrites the test's config.yaml)
    assert cli_main(["cups", "install", "--queue", "fax", "-c", str(without),
                     "--backend-dir", str(cupsd.backend_dir)]) == 1
    assert "has no print: section" in capsys.readouterr().err
