"""The hotfolder's pure rules, table by table: names, grouping, sidecars, lists, requests, texts."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from faxbridge.edges.hotfolder import files
from faxbridge.edges.hotfolder.instructions import (
    Refusal,
    UnitFiles,
    parse_recipient_list,
    parse_sidecar,
    prepare_request,
)
from faxbridge.edges.hotfolder.names import (
    NameRecipient,
    decode_name,
    display_name,
    encode_name,
    ignored,
    recipient_from_name,
    with_suffix,
)
from faxbridge.edges.hotfolder.outcome import error_text
from faxbridge.edges.hotfolder.plan import Unit, plan_units
from faxbridge.config import HotfolderConfig
from faxbridge.errors import NumberError
from faxbridge.model import JobType, Recipient
from faxbridge.numbers import NumberPolicy

POLICY = NumberPolicy()
NUMBER = "+494012345678"


@pytest.mark.parametrize(
    ("name", "skip"),
    [
        ("Invoice.pdf", False),
        ("+494012345678_Invoice 42.pdf", False),
        ("Offer.yaml", False),
        (".hidden.pdf", True),
        (".~lock.Offer.doc#", True),
        ("~$Offer.doc", True),
        ("~WRL0001.tmp", True),
        ("scan.pdf.part", True),
        ("report.PDF.PART", True),
        ("download.pdf.crdownload", True),
        ("upload.pdf.filepart", True),
        ("copy.tmp", True),
        ("Offer.pdf~", True),
        ("Thumbs.db", True),
        ("desktop.ini", True),
        ("Invoice.error.txt", True),
        ("Invoice.status.csv", True),
        ("FAXBRIDGE-PAUSED.txt", True),
        ("", True),
    ],
)
def test_ignored_names(name: str, skip: bool) -> None:
    assert ignored(name) is skip


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("+494012345678_Invoice 42", NameRecipient("+494012345678")),
        ("0049 40 12345678 - Invoice", NameRecipient("0049 40 12345678")),
        ("0049 40 12345678 – Rechnung", NameRecipient("0049 40 12345678")),  # en dash
        ("040 1234567_Invoice", NameRecipient("040 1234567")),
        ("+49 (0)40 1234567_x", NameRecipient("+49 (0)40 1234567")),
        ("+494012345678 [INV-42] Invoice", NameRecipient("+494012345678", "INV-42")),
        ("+494012345678[INV 42]_Invoice", NameRecipient("+494012345678", "INV 42")),
        ("+494012345678", NameRecipient("+494012345678")),
        # Read as written, with the shorter reading beside it: the instructions refuse the name
        # when both are valid numbers, rather than guess.
        ("0049 40 1234567 2024 Invoice", NameRecipient("0049 40 1234567 2024", "", "0049 40 1234567")),
        ("040 1234567 Invoice", NameRecipient("040 1234567", "", "040")),
        ("040 1234567 [INV-42] Invoice", NameRecipient("040 1234567", "INV-42", "040")),
        ("040 1234567 - 4711 Mueller", NameRecipient("040 1234567")),  # " - " ends it
        ("040-1234567 – 4711", NameRecipient("040-1234567")),
        # Not a number: the next source of recipients decides.
        ("Invoice 42", None),
        ("2024-01-15 Invoice", None),
        ("01.02.2024_Invoice", None),
        ("0001", None),
        ("0_report", None),
        ("040x123456_Invoice", None),
    ],
)
def test_recipient_from_the_file_name(stem: str, expected: NameRecipient | None) -> None:
    assert recipient_from_name(stem) == expected


@pytest.mark.parametrize(
    ("name", "suffix", "expected"),
    [
        ("Invoice.pdf", " (2)", "Invoice (2).pdf"),
        ("Invoice.v2.pdf", " (2)", "Invoice.v2 (2).pdf"),
        ("README", " (3)", "README (3)"),
        ("Invoice.pdf", "", "Invoice.pdf"),
    ],
)
def test_with_suffix(name: str, suffix: str, expected: str) -> None:
    assert with_suffix(name, suffix) == expected


def test_names_that_are_not_utf8_are_shown_as_cp1252_and_kept_exactly() -> None:
    raw = os.fsdecode(b"Rechnung M\xfcller.pdf")
    assert display_name(raw) == "Rechnung Müller.pdf"
    assert display_name("two\nlines\x7f.pdf") == "two_lines_.pdf"
    assert encode_name(raw).startswith("b64:") and decode_name(encode_name(raw)) == raw
    assert encode_name("Müller.pdf") == "Müller.pdf" == decode_name("Müller.pdf")


# -- grouping ----------------------------------------------------------------------------


def _units(ready: set[str], waiting: set[str] = frozenset(), bundles: dict | None = None) -> list[Unit]:
    return plan_units(ready, waiting, bundles or {})


def test_plan_a_document_takes_its_sidecars() -> None:
    assert _units({"a.pdf", "a.yaml", "a.csv", "b.pdf"}) == [
        Unit("a.pdf", ("a.pdf",), ("a.csv", "a.yaml")),
        Unit("b.pdf", ("b.pdf",), ()),
    ]


def test_plan_a_document_waits_for_a_sidecar_still_being_written() -> None:
    assert _units({"a.pdf"}, {"a.yaml"}) == []
    assert _units({"a.yaml"}, {"a.pdf"}) == []


def test_plan_a_lonely_sidecar_waits_for_its_document() -> None:
    assert _units({"a.yaml", "list.csv"}) == []


def test_plan_a_bundle_takes_its_files_and_they_never_go_alone() -> None:
    bundles = {"batch.yaml": ("x.pdf", "y.tif")}
    assert _units({"batch.yaml", "x.pdf", "y.tif", "z.pdf"}, bundles=bundles) == [
        Unit("batch.yaml", ("x.pdf", "y.tif"), ("batch.yaml",)),
        Unit("z.pdf", ("z.pdf",), ()),
    ]
    # y.tif not there yet (or still being written): x.pdf waits with the bundle
    assert _units({"batch.yaml", "x.pdf"}, bundles=bundles) == []
    assert _units({"batch.yaml", "x.pdf"}, {"y.tif"}, bundles) == []


def test_plan_a_bundle_with_its_namesake_document_sends_that_first() -> None:
    bundles = {"letter.yaml": ("terms.pdf",)}
    assert _units({"letter.yaml", "letter.pdf", "terms.pdf"}, bundles=bundles) == [
        Unit("letter.pdf", ("letter.pdf", "terms.pdf"), ("letter.yaml",)),
    ]


def test_plan_problems_become_units_so_they_reach_failed() -> None:
    [unreadable] = _units({"broken.yaml"}, bundles={"broken.yaml": None})
    assert unreadable == Unit("broken.yaml", (), ("broken.yaml",))
    [twins] = _units({"a.pdf", "a.tif", "a.yaml"})
    assert twins.documents == ("a.pdf", "a.tif") and "share the sidecar" in twins.problem
    [too_many] = _units({"b.yaml", "1.pdf", "2.pdf", "3.pdf", "b.pdf"}, bundles={"b.yaml": ("1.pdf", "2.pdf", "3.pdf")})
    assert "at most 3" in too_many.problem


# -- sidecars and lists ------------------------------------------------------------------


def test_a_sidecar_with_every_key() -> None:
    sidecar = parse_sidecar(
        b"recipients: ['040 1234567', {number: '+49 30 1234567', reference: B}]\n"
        b"reference: A\noptions: {STATIONID: ACME}\nsend_at: 2030-01-02T08:00:00+01:00\n"
        b"text: Hello\njob_type: FAX\nfiles: [a.pdf, b.pdf]\n",
        "x.yaml",
    )
    assert sidecar.recipients == (Recipient("040 1234567", "A"), Recipient("+49 30 1234567", "B"))
    assert sidecar.options == {"STATIONID": "ACME"}
    assert sidecar.send_at == dt.datetime(2030, 1, 2, 7, 0, tzinfo=dt.timezone.utc)
    assert (sidecar.text, sidecar.job_type, sidecar.files) == ("Hello", JobType.FAX, ("a.pdf", "b.pdf"))


def test_a_sidecar_time_without_zone_is_local_time() -> None:
    sidecar = parse_sidecar(b"send_at: '2030-01-02 08:00'\n", "x.yaml")
    assert sidecar.send_at == dt.datetime(2030, 1, 2, 8, 0).astimezone().astimezone(dt.timezone.utc)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"recipient: +494012345678\n", "put numbers in quotes"),
        (b"recipient: 040123\n", "put numbers in quotes"),
        (b"recipent: '040 1234567'\n", "did you mean 'recipient'"),
        (b"recipient: '1'\nrecipients: ['2']\n", "not both"),
        (b"recipients: []\n", "expected a list"),
        (b"recipients: [{fax: '1'}]\n", "expected {number"),
        (b"send_at: 2030-01-02\n", "a date alone"),
        (b"send_at: tomorrow\n", "expected a date and time"),
        (b"job_type: letter\n", "expected one of fax, sms"),
        (b"files: [a.pdf, b.pdf, c.pdf, d.pdf]\n", "at most 3"),
        (b"files: [../secret.pdf]\n", "not a file name in this folder"),
        (b"options: STATIONID\n", "expected keys"),
        (b"- a\n- b\n", "expected keys like recipient"),
        (b"recipient: [unclosed\n", "not valid YAML"),
        (b"!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_sidecar_refusals_name_the_problem(text: bytes, problem: str) -> None:
    with pytest.raises(Refusal) as caught:
        parse_sidecar(text, "x.yaml")
    assert problem in str(caught.value) and caught.value.action


def test_an_empty_sidecar_changes_nothing() -> None:
    assert parse_sidecar(b"", "x.yaml").recipients == ()


@pytest.mark.parametrize(
    ("data", "entries"),
    [
        (b"040 1234567\n+49 30 1234567,REF\n", [(1, "040 1234567", ""), (2, "+49 30 1234567", "REF")]),
        (b"Fax;Referenz\r\n040 1234567;A\r\n\r\n# a comment\r\n030 1234567;B\r\n",
         [(2, "040 1234567", "A"), (5, "030 1234567", "B")]),
        ("\ufeffNummer\t\n040 1234567\tMüller\n".encode(), [(2, "040 1234567", "Müller")]),
        ("040 1234567,M\xfcller\n".encode("cp1252"), [(1, "040 1234567", "Müller")]),
        (b"alice@example.com,A\n", [(1, "alice@example.com", "A")]),
    ],
)
def test_recipient_lists(data: bytes, entries: list[tuple[int, str, str]]) -> None:
    assert [(e.line, e.address, e.reference) for e in parse_recipient_list(data, "l.csv")] == entries


@pytest.mark.parametrize("data", [b"", b"Fax\n\n", b"\x00\x01binary"])
def test_an_empty_or_binary_list_is_refused(data: bytes) -> None:
    with pytest.raises(Refusal):
        parse_recipient_list(data, "l.csv")


# -- the request -------------------------------------------------------------------------


def _unit(tmp_path: Path, name: str = "doc.pdf", yaml: bytes | None = None, csv: bytes | None = None) -> UnitFiles:
    (tmp_path / name).write_bytes(b"%PDF-1.4 ...")
    sidecar = list_ = None
    if yaml is not None:
        (tmp_path / "doc.yaml").write_bytes(yaml)
        sidecar = ("doc.yaml", tmp_path / "doc.yaml")
    if csv is not None:
        (tmp_path / "doc.csv").write_bytes(csv)
        list_ = ("doc.csv", tmp_path / "doc.csv")
    return UnitFiles(((name, tmp_path / name),), sidecar, list_)


def _folder(**keys: object) -> HotfolderConfig:
    return HotfolderConfig(path=Path("/srv/fax"), **keys)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "yaml", "csv", "fixed", "recipients", "source"),
    [
        ("+4930123456_x.pdf", b"recipient: '040 1234567'\n", b"0891234567\n", "+49211123456",
         [("+49401234567", "")], "sidecar"),
        ("+4930123456_x.pdf", b"reference: R\n", b"0891234567\n0401234567,OWN\n", "+49211123456",
         [("+49891234567", "R"), ("+49401234567", "OWN")], "list"),
        ("+4930123456 [F] x.pdf", b"options: {STATIONID: X}\n", None, "+49211123456",
         [("+4930123456", "F")], "file name"),
        ("x.pdf", None, None, "+49211123456", [("+49211123456", "")], "folder"),
    ],
)
def test_recipients_come_from_the_first_source_that_names_any(
    tmp_path: Path, name: str, yaml: bytes | None, csv: bytes | None, fixed: str,
    recipients: list[tuple[str, str]], source: str,
) -> None:
    prepared = prepare_request(_unit(tmp_path, name, yaml, csv), _folder(recipient=fixed), POLICY)
    assert [(r.address, r.reference) for r in prepared.request.recipients] == recipients
    assert prepared.recipient_source == source


def test_folder_options_meet_sidecar_options(tmp_path: Path) -> None:
    folder = _folder(recipient=NUMBER, options=(("STATIONID", "ACME"), ("FAXRETRY", "3")), text="Note")
    prepared = prepare_request(_unit(tmp_path, yaml=b"options: {STATIONID: SALES}\n"), folder, POLICY)
    assert prepared.request.options == (("STATIONID", "SALES"), ("FAXRETRY", "3"))
    assert prepared.request.text == "Note"
    # A sidecar choosing another job type drops folder options that do not apply to it.
    email = prepare_request(
        _unit(tmp_path, yaml=b"job_type: email\nrecipient: a@example.com\noptions: {MAILFROM: f@example.com}\n"),
        folder, POLICY,
    )
    assert email.request.job_type is JobType.EMAIL
    assert email.request.options == (("MAILFROM", "f@example.com"),)


@pytest.mark.parametrize(
    ("name", "yaml", "csv", "problem"),
    [
        ("x.pdf", None, None, "no recipient"),
        ("+4990012345678_x.pdf", None, None, "premium-rate"),
        ("x.pdf", b"recipient: '0900 1234567'\n", None, "premium-rate"),
        ("x.pdf", None, b"040 1234567\n0137 123456\nnonsense\n", "doc.csv line 2"),
        ("x.pdf", b"options: {SMSFROM: X}\n", None, "applies to job type sms only"),
        ("x.pdf", b"options: {STATIONID: 'way too long for a fax station id'}\n", None, "at most 20"),
        ("x.pdf", b"recipient: '040 1234567'\nreference: 'a,b'\n", None, "must not contain"),
        # Which digits are the number? Both readings are valid: refused, even with a folder recipient.
        ("040 1234567 4711 Mueller.pdf", None, None, "'040 1234567 4711' and '040 1234567'"),
        ("0049 40 1234567 2024 Invoice.pdf", None, None, "which digits are the number"),
        ("+49 40 123 456 78 [INV-42] Invoice.pdf", None, None, "which digits are the number"),
        ("+494012345678 4711 Mueller.pdf", None, None, "which digits are the number"),
    ],
)
def test_request_refusals(tmp_path: Path, name: str, yaml: bytes | None, csv: bytes | None, problem: str) -> None:
    with pytest.raises((Refusal, NumberError)) as caught:
        prepare_request(_unit(tmp_path, name, yaml, csv), _folder(recipient="+49211123456"
                                                                  if name[0] in "0+" else None), POLICY)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("040 1234567 Invoice.pdf", "+49401234567"),  # "040" alone is no number: not ambiguous
        ("040 1234567_4711 Mueller.pdf", "+49401234567"),
        ("040 1234567 - 4711 Mueller.pdf", "+49401234567"),
        ("0049 40 12345678 [INV-42] Invoice.pdf", "+494012345678"),
    ],
)
def test_numbers_in_names_that_say_where_they_end(tmp_path: Path, name: str, number: str) -> None:
    prepared = prepare_request(_unit(tmp_path, name), _folder(), POLICY)
    assert [r.address for r in prepared.request.recipients] == [number]


def test_letters_need_no_recipient_and_sms_send_text_files(tmp_path: Path) -> None:
    letter = prepare_request(_unit(tmp_path, "letter.pdf"), _folder(job_type=JobType.ILETTER), POLICY)
    assert letter.request.recipients == () and letter.recipient_source == "document"
    (tmp_path / "+4917612345678_hi.txt").write_text("Hallo!\n")
    unit = UnitFiles((("+4917612345678_hi.txt", tmp_path / "+4917612345678_hi.txt"),))
    sms = prepare_request(unit, _folder(job_type=JobType.SMS), POLICY)
    assert (sms.request.text, sms.request.documents) == ("Hallo!", ())
    with pytest.raises(Refusal, match="SMS folder sends text files"):
        prepare_request(_unit(tmp_path, "+4917612345678_x.pdf"), _folder(job_type=JobType.SMS), POLICY)


# -- files and texts ---------------------------------------------------------------------


def test_suffixes_keep_a_unit_together_and_never_overwrite(tmp_path: Path) -> None:
    assert files.choose_suffix(tmp_path, ["a.pdf", "a.yaml"], "a", "x") == ""
    (tmp_path / "a.yaml").write_text("")
    assert files.choose_suffix(tmp_path, ["a.pdf", "a.yaml"], "a", "x") == " (2)"
    (tmp_path / "a (2).error.txt").write_text("")
    assert files.choose_suffix(tmp_path, ["a.pdf", "a.yaml"], "a", "x") == " (3)"


def test_a_claim_and_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"1")
    (tmp_path / "a.yaml").write_bytes(b"2")
    claim = files.claim(tmp_path, "t1", "a.pdf", ["a.pdf"], ["a.yaml", "gone.csv"])
    assert claim is not None and [f.claimed for f in claim.files] == ["a.pdf", "a.yaml"]
    assert files.read_claim(claim.dir) == claim and files.present(claim)
    assert files.claim(tmp_path, "t2", "a.pdf", ["a.pdf"], []) is None  # already taken
    assert not (tmp_path / files.CLAIM_AREA / "t2").exists()
    (claim.dir / files.MANIFEST).write_text("{garbage")  # lost in a power cut
    damaged = files.read_claim(claim.dir)
    assert damaged is not None and not files.present(damaged)
    assert files.put_back(damaged) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.pdf", "a.yaml"]
    assert not claim.dir.exists()


def test_a_single_document_is_claimed_without_a_manifest(tmp_path: Path) -> None:
    # One mkdir and one rename: the manifest tripled the cost of claiming a burst (issue 7).
    token = files.claim_token("t1", "a.pdf", ["a.pdf"], [])
    assert token.endswith(files.SINGLE)
    (tmp_path / "a.pdf").write_bytes(b"1")
    claim = files.claim(tmp_path, token, "a.pdf", ["a.pdf"], [])
    assert claim is not None and not (claim.dir / files.MANIFEST).exists()
    assert files.read_claim(claim.dir) == claim and files.present(claim)
    # Anything else keeps its manifest: a sidecar, or a name that is not valid text on disk.
    assert files.claim_token("t2", "b.pdf", ["b.pdf"], ["b.yaml"]) == "t2"
    assert files.claim_token("t3", "c\udce4.pdf", ["c\udce4.pdf"], []) == "t3"
    assert files.claim_token("t4", "d.pdf", ["d.pdf", "d.tif"], []) == "t4"
    # A token that says "single" for a unit that is not still gets a manifest (it wins).
    (tmp_path / "e.pdf").write_bytes(b"2")
    (tmp_path / "e.yaml").write_bytes(b"3")
    bundle = files.claim(tmp_path, "t5" + files.SINGLE, "e.pdf", ["e.pdf"], ["e.yaml"])
    assert bundle is not None and files.read_claim(bundle.dir) == bundle


def test_a_single_document_claim_being_refused_stays_recognisable(tmp_path: Path) -> None:
    # Once its document is in failed/, the claim must still say what it held: a crash before the
    # error file is written is finished at the next start, not forgotten as an empty claim.
    (tmp_path / "a.pdf").write_bytes(b"1")
    claim = files.claim(tmp_path, files.claim_token("t1", "a.pdf", ["a.pdf"], []), "a.pdf", ["a.pdf"], [])
    assert claim is not None
    intent = {"failed_dir": str(tmp_path / "failed"), "suffix": "", "reason": "r", "action": "a"}
    files.write_refusal(claim, intent)
    (tmp_path / "failed").mkdir()
    os.rename(claim.path(claim.files[0]), tmp_path / "failed" / "a.pdf")
    assert files.read_claim(claim.dir) == claim and files.read_refusal(claim.dir) == intent


@pytest.mark.parametrize("count", [3, 40])  # below and above the batch size that uses syncfs
def test_claiming_a_batch_gives_each_unit_its_own_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    for i in range(count):
        (tmp_path / f"{i}.pdf").write_bytes(b"%PDF")
    (tmp_path / "0.yaml").write_bytes(b"reference: R\n")
    fsynced: list[str] = []
    real_fsync_dir = files.fsync_dir
    monkeypatch.setattr(files, "fsync_dir", lambda path: (fsynced.append(str(path)), real_fsync_dir(path)))
    original_move = files._move_in

    def move_in(folder: Path, token: str, key: str, *rest: object) -> object:
        if key == "2.pdf":
            raise PermissionError(13, "Permission denied")
        return original_move(folder, token, key, *rest)

    monkeypatch.setattr(files, "_move_in", move_in)
    units = [(f"t{i}", f"{i}.pdf", [f"{i}.pdf"], ["0.yaml"] if i == 0 else []) for i in range(count)]
    units.append(("gone", "missing.pdf", ["missing.pdf"], []))
    results = files.claim_all(tmp_path, units)
    assert [f.original for f in results[0].files] == ["0.pdf", "0.yaml"]  # type: ignore[union-attr]
    assert isinstance(results[2], PermissionError) and (tmp_path / "2.pdf").exists()
    assert results[-1] is None and not (tmp_path / files.CLAIM_AREA / "gone").exists()
    claimed = [r for r in results if isinstance(r, files.Claim)]
    assert len(claimed) == count - 1 and all(files.read_claim(c.dir) == c for c in claimed)
    # Made durable before the caller journals them: an fsync per claim, or one syncfs for a burst.
    if count < files._SYNCFS_FROM:
        assert {str(c.dir) for c in claimed} <= set(fsynced) and str(tmp_path) in fsynced
    else:
        assert fsynced == []


def test_the_error_text_says_what_happened_and_what_to_do() -> None:
    text = error_text(
        ["Invoice.pdf"], "FAX.de SendJob result 9: Recipient is blacklisted", "Do not send again.",
        code=9, job_id=7, faxde_job_id=881, folder=Path("/srv/fax"),
        now=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    )
    assert text == (
        'faxbridge did not send "Invoice.pdf".\n\n'
        "What happened: FAX.de SendJob result 9: Recipient is blacklisted\n"
        "FAX.de result: 9 (RECIPIENT_BLACKLISTED) - Recipient is blacklisted\n\n"
        "What to do: Do not send again.\n\n"
        "faxbridge job: 7 (FAX.de JobId 881)\nFolder: /srv/fax\nTime: 2030-01-02 03:04:05 UTC\n"
    )


# -- placing files: idempotent and crash-safe -----------------------------------------------


def _journaled_claim(tmp_path: Path, journal: object, name: str = "a", token: str = "") -> tuple[object, object]:
    from faxbridge.edges.hotfolder.outcome import SOURCE, job_meta
    from faxbridge.model import Document, SendRequest

    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.pdf").write_bytes(b"%PDF-1.4 " + name.encode())
    (folder / f"{name}.yaml").write_bytes(b"reference: R\n")
    claim = files.claim(folder, token or f"t-{name}", f"{name}.pdf", [f"{name}.pdf"], [f"{name}.yaml"])
    assert claim is not None
    config = HotfolderConfig(path=folder, sent_dir=folder / "sent", failed_dir=folder / "failed")
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),), (Document(f"{name}.pdf", claim.dir / f"{name}.pdf"),))
    job, _ = journal.jobs.add(  # type: ignore[attr-defined]
        request, source=SOURCE, source_ref=claim.ref, content_key=name, meta=job_meta(claim, config, name)
    )
    return job, claim


def test_placing_resumes_after_a_crash_half_way_and_never_overwrites(tmp_path: Path) -> None:
    import asyncio

    from faxbridge.edges.hotfolder.outcome import Outcomes
    from faxbridge.journal import Journal
    from faxbridge.model import Accepted, JobStatusReport, StatusRow

    with Journal.open(tmp_path / "state") as journal:
        job, claim = _journaled_claim(tmp_path, journal)
        sent = tmp_path / "out" / "sent"
        sent.mkdir()
        (sent / "a.pdf").write_bytes(b"someone else's")
        journal.jobs.begin_submit(job.id)
        journal.jobs.mark_submitted(job.id, Accepted(881, 1, 1), next_poll_at=0)
        # A crash after the intent was journaled and the first file moved:
        journal.jobs.update_meta(job.id, placing={"dir": str(sent), "suffix": " (2)"})
        os.rename(claim.dir / "a.pdf", sent / "a (2).pdf")

        outcomes = Outcomes(journal, spawn=lambda coro: None)
        asyncio.run(outcomes.move_to_sent(journal.jobs.get(job.id)))
        asyncio.run(outcomes.move_to_sent(journal.jobs.get(job.id)))  # again: nothing changes
        assert sorted(p.name for p in sent.iterdir()) == ["a (2).pdf", "a (2).yaml", "a.pdf"]
        assert (sent / "a.pdf").read_bytes() == b"someone else's"
        assert journal.jobs.get(job.id).meta["placed"] == {"dir": str(sent), "suffix": " (2)"}

        rows = b'"RECIPIENT","JOBTYPE","RESULT"\r\n"+494012345678","FAX","OK"\r\n'
        journal.jobs.mark_finished(job.id, JobStatusReport(True, "OK", status_file=rows, rows=(StatusRow(NUMBER, "FAX", "OK"),)))
        asyncio.run(outcomes.report(journal.jobs.get(job.id)))
        asyncio.run(outcomes.report(journal.jobs.get(job.id)))  # a retried report is harmless
        assert (sent / "a (2).status.csv").read_text("utf-8-sig").splitlines()[1].startswith('"+494012345678","FAX","OK"')
        assert not claim.dir.exists()


def test_a_cancelled_job_moves_from_sent_to_failed_with_the_reason(tmp_path: Path) -> None:
    import asyncio

    from faxbridge.edges.hotfolder.outcome import Outcomes
    from faxbridge.journal import Journal
    from faxbridge.model import Accepted

    with Journal.open(tmp_path / "state") as journal:
        job, claim = _journaled_claim(tmp_path, journal, "b")
        journal.jobs.begin_submit(job.id)
        journal.jobs.mark_submitted(job.id, Accepted(882, 1, 1), next_poll_at=0)
        outcomes = Outcomes(journal, spawn=lambda coro: None)
        asyncio.run(outcomes.move_to_sent(journal.jobs.get(job.id)))
        journal.jobs.mark_cancelled(job.id, "CancelJob 882")
        asyncio.run(outcomes.report(journal.jobs.get(job.id)))
        failed = tmp_path / "out" / "failed"
        assert sorted(p.name for p in failed.iterdir()) == ["b.error.txt", "b.pdf", "b.yaml"]
        assert "cancelled by the operator (CancelJob 882)" in (failed / "b.error.txt").read_text()
        assert not list((tmp_path / "out" / "sent").iterdir())


def test_placing_in_sent_fsyncs_the_journal_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each placing note fsynced the journal on the loop: in a burst of accepted jobs, a third of
    # the loop's time went there (bench.hotfolder_burst), and every other edge waited meanwhile.
    import asyncio
    import threading

    from faxbridge.edges.hotfolder.outcome import Outcomes
    from faxbridge.journal import Journal
    from faxbridge.model import Accepted

    with Journal.open(tmp_path / "state") as journal:
        job, _claim = _journaled_claim(tmp_path, journal)
        journal.jobs.begin_submit(job.id)
        journal.jobs.mark_submitted(job.id, Accepted(881, 1, 1), next_poll_at=0)
        synced_on: list[str] = []
        original = journal.sync

        def sync() -> None:
            synced_on.append(threading.current_thread().name)
            original()

        monkeypatch.setattr(journal, "sync", sync)
        outcomes = Outcomes(journal, spawn=lambda coro: None)

        async def place() -> str:
            await outcomes.move_to_sent(journal.jobs.get(job.id))
            return threading.current_thread().name

        loop_thread = asyncio.run(place())
        assert journal.jobs.get(job.id).meta["placed"]["dir"] == str(tmp_path / "out" / "sent")
        assert synced_on and loop_thread not in synced_on


def test_jobs_accepted_together_are_placed_in_one_batch_without_taking_each_others_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of accepted jobs is moved to sent/ together (one commit, one fsync per folder:
    # bench.hotfolder_burst); two of them with the same name must not both choose "a.pdf".
    import asyncio

    from faxbridge.edges.hotfolder.outcome import Outcomes
    from faxbridge.journal import Journal
    from faxbridge.model import Accepted

    with Journal.open(tmp_path / "state") as journal:
        first, _ = _journaled_claim(tmp_path, journal, "a")
        second, _ = _journaled_claim(tmp_path, journal, "a", "t-a2")  # "a.pdf" dropped again once taken
        third, third_claim = _journaled_claim(tmp_path, journal, "c")
        for i, job in enumerate((first, second, third)):
            journal.jobs.begin_submit(job.id)
            journal.jobs.mark_submitted(job.id, Accepted(900 + i, 1, 1), next_poll_at=0)
        (third_claim.dir / "c.pdf").unlink()  # someone deleted it: the others are placed anyway
        fsynced: list[Path] = []
        real_fsync_dir = files.fsync_dir
        monkeypatch.setattr(files, "fsync_dir", lambda path: (fsynced.append(Path(path)), real_fsync_dir(path)))
        commits = []
        real_update = journal.jobs.update_meta_many
        monkeypatch.setattr(journal.jobs, "update_meta_many",
                            lambda updates, **kw: (commits.append(len(updates)), real_update(updates, **kw))[1])

        outcomes = Outcomes(journal, spawn=lambda coro: None)
        asyncio.run(outcomes.move_to_sent(*(journal.jobs.get(j.id) for j in (first, second, third))))
        sent = tmp_path / "out" / "sent"
        assert sorted(p.name for p in sent.iterdir()) == ["a (2).pdf", "a (2).yaml", "a.pdf", "a.yaml", "c.yaml"]
        suffixes = sorted(journal.jobs.get(j.id).meta["placed"]["suffix"] for j in (first, second))
        assert suffixes == ["", " (2)"]
        assert commits == [3, 3]  # the intents, then the outcomes: one commit each for the batch
        assert fsynced.count(sent) == 1
