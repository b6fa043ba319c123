"""The send report PDF: its text (read back with pypdf) names the hash, FAX.de's result and RemoteId,
and claims only what FAX.de confirmed."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any

import pypdf

from faxbridge import sendreport
from faxbridge.faxde.client import FaxDeClient
from faxbridge.journal import Journal
from faxbridge.model import Document, Job, JobState, JobType, Recipient, SendRequest
from faxbridge.numbers import NumberPolicy
from faxbridge.outbound import Outbound, OutboundSettings, number_check
from faxbridge.provider import ProviderCalls
from faxbridge.simulator import Simulator
from faxbridge.simulator.samples import make_pdf

from conftest import ACCOUNT, PASSWORD, wait_until

NUMBER = "+494012345678"
FAST = OutboundSettings(initial_delay=0.01, max_delay=0.05, status_interval=0.01, status_max_interval=0.02)


def send(simulator: Simulator, tmp_path: Path, *, finish: bool) -> tuple[Job, bytes]:
    """Send one fax through the simulator; return the journaled job and its report's bytes."""
    document = tmp_path / "Rechnung Müller.pdf"
    document.write_bytes(make_pdf(2, tag="report"))

    async def main() -> tuple[Job, bytes]:
        client = FaxDeClient(account=ACCOUNT, password=PASSWORD, wsdl=simulator.wsdl_url, timeout=5,
                             connect_timeout=1)
        calls = ProviderCalls(client, concurrency=1)
        with Journal.open(tmp_path / "state") as journal:
            outbound = Outbound(journal, calls, settings=FAST, check_recipient=number_check(NumberPolicy()))
            try:
                request = SendRequest(JobType.FAX, (Recipient(NUMBER, "INV-7"),),
                                      (Document(document.name, document),))
                job = await outbound.submit(request, source="cli", source_ref="r",
                                            meta={"label": document.name, "sender": "alice@example.com"})
                job = await outbound.send_now(job.id)
                while finish and not job.state.is_final:
                    await outbound.poll_due()
                    await asyncio.sleep(0.01)
                    job = journal.jobs.get(job.id)
                # Thread seam as in the daemon: rendering blocks.
                return job, await asyncio.to_thread(sendreport.render, job, journal)
            finally:
                await outbound.stop(5)
                await calls.close()

    return asyncio.run(main())


def text_of(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1  # one page per job
    return " ".join(reader.pages[0].extract_text().split())


def test_a_delivered_job_reports_hash_result_remote_id_and_transmitted(simulator: Simulator, tmp_path: Path) -> None:
    simulator.polls_until_done = 0
    job, pdf = send(simulator, tmp_path, finish=True)
    assert job.state is JobState.DELIVERED
    text = text_of(pdf)
    digest = hashlib.sha256((tmp_path / "Rechnung Müller.pdf").read_bytes()).hexdigest()
    assert f"SHA-256 {digest}" in text
    assert "Transmitted" in text and "result: OK" in text
    assert f"FAX.de JobId {job.faxde_job_id}" in text
    [row] = sendreport.parse_status_file(job.status_file)
    assert row.remote_id and f"RemoteId: {row.remote_id}" in text
    assert "Rechnung Müller.pdf" in text and "alice@example.com" in text and f"{NUMBER}[INV-7]" in text
    assert "Page 1" in text
    # The thumbnail is an image on the page.
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    assert len(page.images) == 1


def test_a_job_only_accepted_claims_handed_over_not_transmitted(simulator: Simulator, tmp_path: Path) -> None:
    simulator.polls_until_done = 1000  # FAX.de has not finished it
    job, pdf = send(simulator, tmp_path, finish=False)
    assert job.state is JobState.SUBMITTED
    text = text_of(pdf)
    assert "Handed over to FAX.de" in text and "not confirmed" in text
    assert "Transmitted" not in text and "transmitted" not in text.replace("transmission", "")


def test_the_hash_is_the_one_journaled_even_when_the_file_is_gone(simulator: Simulator, tmp_path: Path) -> None:
    simulator.polls_until_done = 0
    job, _ = send(simulator, tmp_path, finish=True)
    digest = hashlib.sha256((tmp_path / "Rechnung Müller.pdf").read_bytes()).hexdigest()
    (tmp_path / "Rechnung Müller.pdf").unlink()
    with Journal.open(tmp_path / "state") as journal:
        text = text_of(sendreport.render(journal.jobs.get(job.id), journal))
    assert f"SHA-256 {digest}" in text and "Page 1" not in text


def test_every_state_has_a_sentence_and_only_ok_rows_say_transmitted() -> None:
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),))
    for state in JobState:
        job: Any = Job(id=1, state=state, source="cli", source_ref="x", request=request, content_key="k")
        sentence = sendreport.outcome_sentence(job)
        assert sentence
        if state not in (JobState.DELIVERED, JobState.PARTIAL):
            assert not sentence.startswith("Transmitted"), state


def test_a_hotfolder_with_report_pdf_writes_name_report_pdf_beside_the_original(
    tmp_path: Path, simulator: Simulator, make_config: Any, run_daemon: Any
) -> None:
    simulator.polls_until_done = 0
    folder = tmp_path / "out"
    folder.mkdir()
    run_daemon(make_config(hotfolders=[{"path": str(folder), "settle_time": "0.15s", "report_pdf": True}]))
    pdf = make_pdf(1, tag="beside")
    (folder / f"{NUMBER}_Angebot.pdf").write_bytes(pdf)
    report = folder / "sent" / f"{NUMBER}_Angebot.report.pdf"
    wait_until(report.exists, what="the send report in sent/")
    text = text_of(report.read_bytes())
    assert f"SHA-256 {hashlib.sha256(pdf).hexdigest()}" in text and "result: OK" in text
    assert "Page 1" in text  # the thumbnail of the original, found in sent/
    assert (folder / "sent" / f"{NUMBER}_Angebot.status.csv").exists()
