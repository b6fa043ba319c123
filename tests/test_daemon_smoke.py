"""The daemon starts against the simulator, sends a queued job, polls it to the end, and stops."""

from __future__ import annotations

from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from journal_backend import open_journal


def test_the_daemon_sends_and_finishes_a_job(tmp_path, simulator, make_config, run_daemon) -> None:
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(make_pdf(2))
    daemon = run_daemon(make_config())
    request = SendRequest(JobType.FAX, (Recipient("+494012345678"),), (Document("letter.pdf", pdf),))
    job = daemon.call(lambda: daemon.services.outbound.submit(request, source="test", source_ref="1"))
    with open_journal(tmp_path / "state") as journal:
        done = wait_until(lambda: journal.jobs.get(job.id).state.is_final and journal.jobs.get(job.id),
                          what="the job to finish")
    assert done.state is JobState.DELIVERED
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == pdf.read_bytes()
    assert call.params["SendFilename1"] == "letter.pdf"
