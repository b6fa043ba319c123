"""Inbound faxes end to end: the simulator's inbox over HTTP, real multi-page TIFFs, real folders.

Each test fills the simulator's inbox, runs collection (one run as `faxbridge receive --once` does it,
or the daemon's scheduled job) and looks at what is on disk, in the journal and in the simulator's
record of calls.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest

from faxbridge import cli_inbox as inbox
from faxbridge.config import load_config
from faxbridge.daemon import make_provider
from faxbridge.inbound import LOCK_NAME, RunReport
from faxbridge.journal import Journal
from faxbridge.journal.inbound import InboundState
from faxbridge.simulator import Fault, Simulator
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import wait_until
from journal_backend import open_journal

SALES = "+494012345"


@pytest.fixture
def inbound_config(tmp_path: Path, make_config: Callable[..., Path]) -> Callable[..., Path]:
    """``inbound_config(**inbound)``: a config whose inbound section writes under tmp_path/in."""

    def make(**inbound: Any) -> Path:
        return make_config(inbound={"output": str(tmp_path / "in"), "interval": "200ms", **inbound})

    return make


def collect(config_path: Path) -> RunReport:
    """One run, as `faxbridge receive --once` does it."""
    return asyncio.run(inbox.receive(load_config(config_path), once=True))


def tiffs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tif"))


def index_rows(folder: Path) -> list[dict[str, str]]:
    text = (folder / "received.csv").read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def journal_of(tmp_path: Path) -> Journal:
    return open_journal(tmp_path / "state")


def test_faxes_land_byte_identical_in_their_route_folders_with_metadata(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    config = inbound_config(routes=[{"called_number": SALES, "output": str(tmp_path / "sales"), "pdf": True}])
    first = simulator.add_inbound(make_tiff(3, tag="first"), originator="+4930111222", remote_id="ACME GmbH")
    second = simulator.add_inbound(make_tiff(2, tag="second"), called_number=SALES, originator="",
                                   received_at=dt.datetime(2024, 1, 31, 23, 59, 58, tzinfo=dt.timezone.utc))
    third = simulator.add_inbound(make_tiff(5, tag="third"), originator="+4989333", remote_id="Evil/../x")

    report = collect(config)

    assert (report.fetched, report.stored, report.deleted, report.error) == (3, 3, 3, None)
    assert report.end == "inbox empty"
    assert simulator.inbox == []
    default, sales = tmp_path / "in", tmp_path / "sales"
    assert [p.read_bytes() for p in tiffs(default)] == [first.image, third.image]
    assert [p.read_bytes() for p in tiffs(sales)] == [second.image]
    assert not list(default.glob("*.pdf")), "PDFs only where the route asks for them"
    assert sorted(p.name for p in default.iterdir() if p.name.startswith(".")) == []  # no temp files left

    [sales_tif] = tiffs(sales)
    assert sales_tif.name.endswith(f"_unknown_{second.fax_id}.tif")
    meta = json.loads(sales_tif.with_suffix(".json").read_text())
    assert meta == {
        "fax_id": second.fax_id, "called_number": SALES,
        "received": "2024-01-31T23:59:58+00:00", "originator": "", "remote_id": "",
        "pages": 2, "pages_counted": 2, "file": sales_tif.name, "pdf": sales_tif.with_suffix(".pdf").name,
        "size": len(second.image), "sha256": hashlib.sha256(second.image).hexdigest(),
        "route": SALES, "note": "",
    }
    pdf = pypdf.PdfReader(sales_tif.with_suffix(".pdf"))
    assert len(pdf.pages) == 2
    for page in pdf.pages:  # 64×32 pixels at 204×196 dpi: the whole image, nothing cropped
        assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx(
            (64 / 204 * 72, 32 / 196 * 72), abs=0.01)

    rows = index_rows(default)
    assert [(r["FaxId"], r["Pages"], r["Originator"], r["RemoteId"]) for r in rows] == [
        (str(first.fax_id), "3", "+4930111222", "ACME GmbH"),
        (str(third.fax_id), "5", "+4989333", "Evil/../x"),
    ]
    assert [r["File"] for r in rows] == [p.name for p in tiffs(default)]
    assert "Evil_.._x" not in "".join(p.name for p in tiffs(default))  # not in the template
    assert [r["FaxId"] for r in index_rows(sales)] == [str(second.fax_id)]

    with journal_of(tmp_path) as journal:
        records = {r.fax_id: r for r in journal.inbound.all()}
    assert {r.state for r in records.values()} == {InboundState.DELETED}
    assert records[second.fax_id].path == str(sales_tif)

    # FAX.de's order: the oldest fax, its deletion, the next …, "no new faxes".
    operations = [c.operation for c in simulator.calls]
    assert operations == ["RequestReceived", "DeleteReceived"] * 3 + ["RequestReceived"]
    for call in simulator.calls_for("DeleteReceived"):
        [path] = [p for p in tiffs(default) + tiffs(sales) if p.stem.endswith(f"_{call.params['FaxId']}")]
        assert path.stat().st_ctime <= call.started_at.timestamp(), "deleted before the file was in place"


class WatchingProvider:
    """The real FAX.de client, with a look at the disk each time DeleteReceived is about to go out."""

    def __init__(self, provider: Any, output: Path) -> None:
        self.provider = provider
        self.output = output
        self.seen_at_delete: list[tuple[int, bool, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)

    def _look(self, fax_id: int) -> None:
        [tif] = list(self.output.glob(f"*_{fax_id}.tif")) or [None]
        indexed = tif is not None and str(fax_id) in (self.output / "received.csv").read_text()
        self.seen_at_delete.append((fax_id, tif is not None and tif.stat().st_size > 0, indexed))

    async def delete_received(self, fax_id: int) -> None:
        self._look(fax_id)
        await self.provider.delete_received(fax_id)


def test_the_daemon_collects_on_schedule_and_deletes_only_files_in_place(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path], run_daemon: Callable[..., Any]
) -> None:
    config_path = inbound_config()
    watcher = WatchingProvider(make_provider(load_config(config_path)), tmp_path / "in")
    daemon = run_daemon(config_path, provider=watcher)
    faxes = [simulator.add_inbound(make_tiff(n, tag=str(n)), originator=f"+49301234{n}") for n in (1, 4)]
    wait_until(lambda: not simulator.inbox, what="the inbox to be emptied")
    faxes.append(simulator.add_inbound(make_tiff(2, tag="later")))  # the next scheduled run takes it
    [edge] = [e for e in daemon.daemon.edges if e.name == "inbox"]
    # DeleteReceived is journaled after FAX.de answers it: wait for the journal too, not only FAX.de.
    wait_until(lambda: not simulator.inbox and len(watcher.seen_at_delete) == 3
               and edge.status()["faxes"] == {"deleted": 3}, what="the later fax")

    assert watcher.seen_at_delete == [(fax.fax_id, True, True) for fax in faxes]
    assert [p.read_bytes() for p in tiffs(tmp_path / "in")] == [fax.image for fax in faxes]
    assert edge.health() is None and edge.last_error is None


def test_an_unwritable_folder_leaves_the_faxes_on_the_server(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Running as root, permissions would not stop a write: a regular file where the folder should
    # be does, for anyone (mkdir and open both fail with ENOTDIR/EEXIST).
    blocker = tmp_path / "in"
    blocker.write_text("not a folder")
    config = inbound_config()
    faxes = [simulator.add_inbound(make_tiff(2, tag=str(n))) for n in range(2)]

    with caplog.at_level(logging.ERROR, logger="faxbridge.inbound"):
        first, second = collect(config), collect(config)

    for report in (first, second):
        assert report.end == "error" and report.deleted == 0
        assert f"cannot write fax {faxes[0].fax_id} into {blocker}" in (report.error or "")
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"], "one error line per run"
    assert simulator.calls_for("DeleteReceived") == []
    assert [f.fax_id for f in simulator.inbox] == [f.fax_id for f in faxes]
    assert blocker.read_text() == "not a folder"

    blocker.unlink()  # the operator fixes it; the next run catches up, with no duplicates
    report = collect(config)
    assert (report.stored, report.deleted, report.error) == (2, 2, None)
    assert [p.read_bytes() for p in tiffs(tmp_path / "in")] == [f.image for f in faxes]
    assert simulator.inbox == []


def test_the_daemon_reports_an_unwritable_folder_for_health(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path], run_daemon: Callable[..., Any]
) -> None:
    (tmp_path / "sales").write_text("a file, not a folder")
    config = inbound_config(routes=[{"called_number": SALES, "output": str(tmp_path / "sales")}])
    fax = simulator.add_inbound(make_tiff(1), called_number=SALES)
    daemon = run_daemon(config)
    [edge] = [e for e in daemon.daemon.edges if e.name == "inbox"]
    problem = wait_until(edge.health, what="the inbox edge to report a problem")
    assert f"cannot write fax {fax.fax_id} into {tmp_path / 'sales'}" in problem
    assert [f.fax_id for f in simulator.inbox] == [fax.fax_id]
    assert simulator.calls_for("DeleteReceived") == []


def test_a_corrupt_payload_is_quarantined_left_on_the_server_and_released_by_the_operator(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    config = inbound_config()
    good = simulator.add_inbound(make_tiff(2, tag="good"))
    corrupt = simulator.add_inbound(make_pdf(1), originator="+4930999", pages=1)  # not a TIFF
    behind = simulator.add_inbound(make_tiff(1, tag="behind"))

    report = collect(config)
    assert (report.stored, report.quarantined, report.end, report.blocked_by) == (1, 1, "blocked", corrupt.fax_id)
    quarantine = tmp_path / "in" / "quarantine"
    [payload] = quarantine.glob("*.bin")
    assert payload.read_bytes() == corrupt.image
    assert json.loads(payload.with_suffix(".json").read_text())["quarantined"].startswith(
        "the fax image is not a TIFF but a PDF file")
    assert f"--release {corrupt.fax_id}" in (quarantine / f"{payload.stem}.error.txt").read_text()
    assert [f.fax_id for f in simulator.inbox] == [corrupt.fax_id, behind.fax_id]
    assert [c.params["FaxId"] for c in simulator.calls_for("DeleteReceived")] == [good.fax_id]

    again = collect(config)  # FAX.de hands out the same fax: no second copy, still blocked
    assert (again.fetched, again.quarantined, again.blocked_by) == (1, 0, corrupt.fax_id)
    assert "faxbridge receive --release" in (again.error or "")
    assert len(list(quarantine.iterdir())) == 3

    record = asyncio.run(inbox.release(load_config(config), corrupt.fax_id))
    assert record.state is InboundState.DELETED and "released from quarantine" in record.note
    assert payload.read_bytes() == corrupt.image  # the copy stays

    after = collect(config)
    assert (after.stored, after.deleted, after.error) == (1, 1, None)
    assert simulator.inbox == []
    assert [p.read_bytes() for p in tiffs(tmp_path / "in")] == [good.image, behind.image]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (b"", "empty fax image"),
        (make_tiff(3)[:150], "the TIFF is damaged"),
    ],
    ids=["empty", "truncated"],
)
def test_other_bad_payloads_are_quarantined_too(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path], image: bytes, reason: str
) -> None:
    fax = simulator.add_inbound(image, pages=3)
    report = collect(inbound_config())
    assert report.blocked_by == fax.fax_id and reason in (report.error or "")
    [payload] = [p for p in (tmp_path / "in" / "quarantine").iterdir() if p.suffix in (".tif", ".bin")]
    assert payload.read_bytes() == image
    assert [f.fax_id for f in simulator.inbox] == [fax.fax_id]
    with journal_of(tmp_path) as journal:
        assert journal.inbound.get(fax.fax_id).state is InboundState.QUARANTINED


def test_a_page_count_mismatch_is_noted_and_the_fax_kept(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    fax = simulator.add_inbound(make_tiff(3), pages=4)
    report = collect(inbound_config())
    assert (report.stored, report.deleted) == (1, 1)
    [tif] = tiffs(tmp_path / "in")
    assert tif.read_bytes() == fax.image
    meta = json.loads(tif.with_suffix(".json").read_text())
    assert (meta["pages"], meta["pages_counted"]) == (4, 3)
    assert meta["note"] == "FAX.de says 4 page(s), the TIFF has 3"
    with journal_of(tmp_path) as journal:
        assert journal.inbound.get(fax.fax_id).note == "FAX.de says 4 page(s), the TIFF has 3"


@pytest.mark.parametrize("kind", ["http_500", "drop_after"])
def test_a_failed_delete_is_retried_on_the_next_run_without_a_second_file(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path], kind: str
) -> None:
    # http_500: FAX.de did not delete. drop_after: it did, but the answer was lost (the retry then
    # hears 5 "Unknown fax id", which means the same: gone).
    config = inbound_config()
    fax = simulator.add_inbound(make_tiff(2))
    simulator.set_faults(Fault(kind, operation="DeleteReceived", calls=frozenset({1})))
    report = collect(config)
    assert (report.stored, report.deleted, report.end) == (1, 0, "error")
    assert f"DeleteReceived for fax {fax.fax_id} failed" in (report.error or "")
    with journal_of(tmp_path) as journal:
        record = journal.inbound.get(fax.fax_id)
        assert (record.state, record.delete_attempts) == (InboundState.STORED, 1)

    simulator.clear_calls()
    report = collect(config)
    assert (report.deleted, report.error, report.end) == (1, None, "inbox empty")
    assert [c.operation for c in simulator.calls] == ["DeleteReceived", "RequestReceived"]
    assert simulator.inbox == []
    assert [p.read_bytes() for p in tiffs(tmp_path / "in")] == [fax.image]
    assert len(index_rows(tmp_path / "in")) == 1
    with journal_of(tmp_path) as journal:
        assert journal.inbound.get(fax.fax_id).state is InboundState.DELETED


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    fax = simulator.add_inbound(make_tiff(1))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / f"{fax.fax_id}.tif").write_bytes(b"someone else's file")
    (folder / f"{fax.fax_id}-2.json").write_text("{}")  # -2 is taken by a sidecar name
    collect(inbound_config(filename="{fax_id}.tif"))
    assert (folder / f"{fax.fax_id}.tif").read_bytes() == b"someone else's file"
    assert (folder / f"{fax.fax_id}-3.tif").read_bytes() == fax.image
    assert (folder / f"{fax.fax_id}-2.json").read_text() == "{}"


def test_large_faxes_are_fetched_whole_and_the_size_limit_quarantines(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    big = make_tiff(1, width=8192, height=9 * 1024)  # 9.4 MB: more than lxml's default text-node limit
    fax = simulator.add_inbound(big)
    report = collect(inbound_config(max_size="20MB"))
    assert (report.stored, report.deleted) == (1, 1)
    assert [p.read_bytes() == big for p in tiffs(tmp_path / "in")] == [True]

    over = simulator.add_inbound(big)
    report = collect(inbound_config(max_size="5MB"))
    assert report.blocked_by == over.fax_id
    assert "9.4 MB is larger than the limit of 5.0 MB (inbound.max_size)" in (report.error or "")
    assert [f.fax_id for f in simulator.inbox] == [over.fax_id]
    assert fax.fax_id != over.fax_id


def test_one_collector_at_a_time_across_processes(
    tmp_path: Path, simulator: Simulator, inbound_config: Callable[..., Path]
) -> None:
    config = inbound_config()
    simulator.add_inbound(make_tiff(1))
    (tmp_path / "state").mkdir(exist_ok=True)
    fd = os.open(tmp_path / "state" / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a daemon in the middle of a run holds it
        report = asyncio.run(inbox.receive(load_config(config), once=True, wait_for_lock=0.2))
    finally:
        os.close(fd)
    assert report.end == "busy" and "another faxbridge process" in (report.error or "")
    assert simulator.calls == [] and len(simulator.inbox) == 1
    assert collect(config).deleted == 1



class MailSink:
    """A relay that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def mail_sink() -> Any:
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)  # its own thread: fine in tests
    controller.start()
    yield sink, port
    controller.stop()


def test_a_route_with_mail_to_mails_the_fax_through_the_relay(
    tmp_path: Path, simulator: Simulator, make_config: Callable[..., Path], mail_sink: Any
) -> None:
    sink, port = mail_sink
    config = make_config(
        inbound={"output": str(tmp_path / "in"), "routes": [
            {"called_number": SALES, "output": str(tmp_path / "sales"), "pdf": True,
             "mail_to": ["sales@example.com", "boss@example.com"]}]},
        smtp={"listen": "127.0.0.1:0", "domains": {"fax.example.com": "fax"}, "allowed_senders": ["*@example.com"],
              "relay": f"127.0.0.1:{port}", "report_from": "faxbridge@example.com"},
    )
    mailed = simulator.add_inbound(make_tiff(2), called_number=SALES, originator="+4930111",
                                   remote_id="ACME\r\nBcc: x@evil.example")
    simulator.add_inbound(make_tiff(1, tag="no route"))  # inbound.output: no mail

    report = collect(config)  # queues durably before DeleteReceived; delivers before it returns

    assert (report.stored, report.deleted, report.error) == (2, 2, None)
    wait_until(lambda: sink.messages, what="the mail at the relay")
    [(rcpt, data)] = sink.messages
    assert sorted(rcpt) == ["boss@example.com", "sales@example.com"]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["From"] == "faxbridge@example.com"
    assert message["Subject"] == "Fax from +4930111 (ACME Bcc: x@evil.example), 2 page(s)"
    assert "Bcc" not in message
    [attachment] = list(message.iter_attachments())
    [pdf] = (tmp_path / "sales").glob("*.pdf")
    assert attachment.get_filename() == pdf.name
    assert attachment.get_content() == pdf.read_bytes()
    assert str(mailed.fax_id) in pdf.name

    collect(config)  # nothing new: no second mail
    assert len(sink.messages) == 1
