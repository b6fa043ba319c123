"""Office files to PDF with the real LibreOffice; bombs, passwords, hangs and crashes end in plain refusals, and the next file converts."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader

from faxbridge.convert import ConversionError
from faxbridge.convert.office import OFFICE_SUFFIXES, OfficeConverter

REAL_SOFFICE = shutil.which("soffice") or "/usr/bin/soffice"

# -- documents made here ------------------------------------------------------------------------------

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/document.xml" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/></Relationships>'
)


def docx_bytes(pages: list[str]) -> bytes:
    """A minimal WordprocessingML package: one paragraph per page, a page break between them."""
    paragraphs = []
    for number, text in enumerate(pages):
        page_break = '<w:r><w:br w:type="page"/></w:r>' if number else ""
        paragraphs.append(f'<w:p>{page_break}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>')
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{W}">'
                f'<w:body>{"".join(paragraphs)}</w:body></w:document>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        archive.writestr("word/document.xml", document)
    return buffer.getvalue()


def rtf_bytes(pages: list[str]) -> bytes:
    r"""RTF with \page between pages; non-ASCII letters as \uN? escapes, as Word writes them."""
    def escape(text: str) -> str:
        return "".join(ch if ord(ch) < 128 else f"\\u{ord(ch)}?" for ch in text)
    return ("{\\rtf1\\ansi\\deff0 " + "\\page ".join(f"{escape(text)}\\par " for text in pages) + "}").encode()


def ole_compound_file(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE compound file ([MS-CFB] version 3, 512-byte sectors) with ``streams`` in its root.

    Sector 0 is the FAT, sector 1 the directory, the streams follow; every stream is at least 4096
    bytes long so that none lives in a mini stream. The directory's red-black tree is all black, the
    first stream the root's child and each next one the right sibling of the one before (names sorted
    by length, then upper-cased, as [MS-CFB] 2.6.4 orders them).
    """
    end, free, fat_sector, no_stream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    names = sorted(streams, key=lambda name: (len(name), name.upper()))
    assert len(names) <= 3 and all(len(streams[name]) >= 4096 for name in names)
    fat = [fat_sector, end]
    body = b""
    starts = {}
    for name in names:
        data = streams[name] + b"\x00" * (-len(streams[name]) % 512)
        count = len(data) // 512
        starts[name] = len(fat)
        fat += [len(fat) + i + 1 for i in range(count - 1)] + [end]
        body += data
    assert len(fat) <= 128

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\x00").encode("utf-16-le") if name else b""
        return (encoded.ljust(64, b"\x00") + struct.pack("<HBBIII", len(encoded), kind, 1, no_stream, right, child)
                + b"\x00" * 16 + struct.pack("<IQQIQ", 0, 0, 0, start, size))

    directory = entry("Root Entry", 5, no_stream, 1, end, 0)
    for index, name in enumerate(names, start=1):
        right = index + 1 if index < len(names) else no_stream
        directory += entry(name, 2, right, no_stream, starts[name], len(streams[name]))
    directory += entry("", 0, no_stream, no_stream, 0, 0) * (4 - 1 - len(names))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16
              + struct.pack("<HHHHH6xIIIIIIIII", 0x3E, 3, 0xFFFE, 9, 6, 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<I", 0) + struct.pack("<I", free) * 108)
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat) + struct.pack("<I", free) * (128 - len(fat))
    return header + fat_bytes + directory + body


ODF_NAMESPACES = " ".join(f'xmlns:{prefix}="urn:oasis:names:tc:opendocument:xmlns:{name}:1.0"' for prefix, name in [
    ("office", "office"), ("style", "style"), ("fo", "xsl-fo-compatible"), ("text", "text"),
    ("table", "table"), ("draw", "drawing"), ("svg", "svg-compatible"), ("presentation", "presentation")])


def flat_odf(kind: str, pages: list[str]) -> str:
    """A flat (single-XML) OpenDocument text, spreadsheet or presentation: one page, sheet or slide per entry."""
    styles = ""
    if kind == "text":
        styles = ('<office:automatic-styles><style:style style:name="NewPage" style:family="paragraph">'
                  '<style:paragraph-properties fo:break-before="page"/></style:style></office:automatic-styles>')
        body = "".join(f'<text:p text:style-name="{"NewPage" if number else "Standard"}">{text}</text:p>'
                       for number, text in enumerate(pages))
    elif kind == "spreadsheet":
        body = "".join(f'<table:table table:name="Blatt{number}"><table:table-row><table:table-cell '
                       f'office:value-type="string"><text:p>{text}</text:p></table:table-cell></table:table-row>'
                       f'</table:table>' for number, text in enumerate(pages, start=1))
    else:
        body = "".join(f'<draw:page draw:name="Folie{number}"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" '
                       f'svg:height="4cm"><draw:text-box><text:p>{text}</text:p></draw:text-box></draw:frame>'
                       f'</draw:page>' for number, text in enumerate(pages, start=1))
    return (f'<?xml version="1.0" encoding="UTF-8"?><office:document {ODF_NAMESPACES} office:version="1.2" '
            f'office:mimetype="application/vnd.oasis.opendocument.{kind}">{styles}'
            f'<office:body><office:{kind}>{body}</office:{kind}></office:body></office:document>')


def encrypted_docx_bytes() -> bytes:
    """What Word writes for a DOCX saved with a password ([MS-OFFCRYPTO] 2.3.4.10, agile encryption):
    the package encrypted inside an OLE compound file, beside the EncryptionInfo that describes the key."""
    info = struct.pack("<HHI", 4, 4, 0x40) + (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption">'
        b'<keyData saltSize="16" blockSize="16" keyBits="256" hashSize="64" cipherAlgorithm="AES" '
        b'cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512" saltValue="AAAAAAAAAAAAAAAAAAAAAA=="/>'
        b'</encryption>')
    package = struct.pack("<Q", 8192) + os.urandom(8192)
    return ole_compound_file({"EncryptionInfo": info.ljust(4096, b"\x00"), "EncryptedPackage": package})


def encrypted_odt_bytes() -> bytes:
    """An ODT saved with a password: its manifest lists encryption data for content.xml."""
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml" manifest:size="900">'
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="AAAA">'
        '<manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="AAAA"/>'
        '<manifest:key-derivation manifest:key-derivation-name="PBKDF2" manifest:iteration-count="1024" '
        'manifest:salt="AAAA"/></manifest:encryption-data></manifest:file-entry></manifest:manifest>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", os.urandom(900))
    return buffer.getvalue()


def zip_encrypted_docx() -> bytes:
    """A .docx whose zip members are marked encrypted (general purpose flag bit 0), as `zip -e` makes them."""
    data = bytearray(docx_bytes(["Hallo"]))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.find(signature)
        while position != -1:
            data[position + flag_offset] |= 0x01
            position = data.find(signature, position + 4)
    return bytes(data)


def zip_bomb_docx(size: int) -> bytes:
    """A .docx whose document part is ``size`` bytes of zeros (deflate makes that ~1000× smaller)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\x00" * (1024 * 1024)
            for _ in range(size // len(block)):
                member.write(block)
    return buffer.getvalue()


def lying_zip_bomb_docx() -> bytes:
    """A .docx whose document part declares 1000 bytes but unpacks to 32 MiB: the sizes lie in both headers."""
    real = 32 * 1024 * 1024
    data = zip_bomb_docx(real)
    claimed = struct.pack("<I", 1000)
    # the uncompressed size follows CRC and compressed size: +22 in a local header, +24 in the central one
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = data.rfind(signature)
        assert data[position + offset:position + offset + 4] in (struct.pack("<I", real), b"\xff" * 4)
        data = data[:position + offset] + claimed + data[position + offset + 4:]
    return data


# -- a soffice that hangs, crashes or hands over to the real one ----------------------------------------

class FakeSoffice:
    """A `soffice` script: its mode file says hang, crash, noload or real (exec the real soffice)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "soffice"
        self.calls = directory / "calls"
        self.child = directory / "child"
        self.mode_file = directory / "mode"
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$1" >> "{self.calls}"\n'  # -env:UserInstallation=<the profile>
            f'case "$(cat "{self.mode_file}")" in\n'
            f'  hang) sleep 600 & echo "$$ $!" > "{self.child}.part"; mv "{self.child}.part" "{self.child}"; wait ;;\n'
            "  crash) kill -SEGV $$ ;;\n"
            '  noload) echo "Error: source file could not be loaded"; exit 0 ;;\n'
            f'  *) exec "{REAL_SOFFICE}" "$@" ;;\n'
            "esac\n")
        self.path.chmod(0o755)
        self.mode("real")

    def mode(self, mode: str) -> None:
        self.mode_file.write_text(mode + "\n")

    def call_count(self) -> int:
        return len(self.calls.read_text().split()) if self.calls.exists() else 0

    def profiles(self) -> list[str]:
        return self.calls.read_text().split() if self.calls.exists() else []

    def hung_pids(self) -> list[int]:
        return [int(pid) for pid in self.child.read_text().split()]


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def pdf_pages_text(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficeConverter]:
    """One real converter for the module, so that only its first conversion pays for the new profile."""
    office = OfficeConverter(tmp_path_factory.mktemp("office-work"), workers=2)
    yield office
    office.close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeSoffice, OfficeConverter]]:
    script = FakeSoffice(tmp_path / "bin")
    office = OfficeConverter(tmp_path / "work", soffice=str(script.path), timeout=90)
    yield script, office
    office.close()


# -- what LibreOffice converts ----------------------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("suffix", "make"), [(".docx", docx_bytes), (".rtf", rtf_bytes)], ids=["docx", "rtf"])
def test_real_documents_become_pdfs_with_their_pages_and_words(
        converter: OfficeConverter, tmp_path: Path, suffix: str, make: Callable[[list[str]], bytes]) -> None:
    source = tmp_path / f"-Angebot Müller{suffix}"  # a leading '-' must not reach soffice as an option
    source.write_bytes(make(PAGES))
    target = tmp_path / "out" / "Angebot.fax.pdf"
    converter.convert(source, target)
    pages = pdf_pages_text(target)
    assert len(pages) == 2
    assert "Grüße aus Köln" in pages[0] and "Привет" in pages[1]
    assert source.exists()  # the original is the converter's input, never consumed


PAGES = ["Seite eins: Grüße aus Köln", "Seite zwei: Привет"]


@pytest.fixture(scope="module")
def saved_by_libreoffice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """.odt .doc .ods .xlsx .xls .odp .pptx files as LibreOffice saves them, made from flat ODF written here."""
    directory = tmp_path_factory.mktemp("saved-by-libreoffice")
    profile = (directory / "profile").as_uri()
    files = {}
    for kind, flat_suffix, targets in [("text", ".fodt", [".odt", ".doc"]), ("spreadsheet", ".fods", [".ods", ".xlsx", ".xls"]),
                                       ("presentation", ".fodp", [".odp", ".pptx"])]:
        flat = directory / f"{kind}{flat_suffix}"
        flat.write_text(flat_odf(kind, PAGES))
        for target in targets:
            subprocess.run([REAL_SOFFICE, f"-env:UserInstallation={profile}", "--headless", "--convert-to",
                            target[1:], "--outdir", str(directory), str(flat)],
                           check=True, capture_output=True, timeout=150)
            files[target] = directory / f"{kind}{target}"
    return files


@pytest.mark.timeout(400)
@pytest.mark.parametrize("suffix", [".odt", ".doc", ".ods", ".xlsx", ".xls", ".odp", ".pptx"])
def test_every_office_format_becomes_a_pdf_with_its_pages(
        converter: OfficeConverter, saved_by_libreoffice: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    target = tmp_path / "out.pdf"
    converter.convert(saved_by_libreoffice[suffix], target)
    reader = PdfReader(target)
    assert len(reader.pages) == 2  # a page, sheet or slide each
    assert "Grüße aus Köln" in reader.pages[0].extract_text()
    assert "Привет" in reader.pages[1].extract_text()
    if suffix in {".odp", ".pptx"}:
        box = reader.pages[0].mediabox
        assert box.width > box.height  # slides stay landscape


@pytest.mark.timeout(240)
def test_two_conversions_at_once_each_in_its_own_profile(converter: OfficeConverter, tmp_path: Path) -> None:
    sources = []
    for number in range(2):
        sources.append(tmp_path / f"letter{number}.docx")
        sources[-1].write_bytes(docx_bytes([f"Brief Nummer {number}"] * (number + 1)))
    errors: list[BaseException] = []

    def convert(source: Path) -> None:
        try:
            converter.convert(source, source.with_suffix(".pdf"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for number, source in enumerate(sources):
        pages = pdf_pages_text(source.with_suffix(".pdf"))
        assert len(pages) == number + 1 and f"Brief Nummer {number}" in pages[0]


def test_suffixes_are_the_contract() -> None:
    assert OFFICE_SUFFIXES == {".docx", ".odt", ".rtf", ".xlsx", ".ods", ".pptx", ".odp", ".doc", ".xls"}
    assert OfficeConverter(Path("/nonexistent")).available_suffixes() == OFFICE_SUFFIXES


def test_without_libreoffice_the_refusal_names_the_package(tmp_path: Path) -> None:
    office = OfficeConverter(tmp_path, soffice=str(tmp_path / "no" / "soffice"))
    assert not office.available()
    assert "libreoffice-writer-nogui" in office.missing_reason()
    assert office.available_suffixes() == frozenset()
    source = tmp_path / "letter.docx"
    source.write_bytes(docx_bytes(["Hallo"]))
    with pytest.raises(ConversionError, match="not installed.*libreoffice-writer-nogui"):
        office.convert(source, tmp_path / "letter.pdf")
    assert not (tmp_path / "letter.pdf").exists()


def test_a_format_that_is_not_office_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(ConversionError, match=r"\.jpg is not an Office format"):
        OfficeConverter(tmp_path).convert(source, tmp_path / "photo.pdf")


# -- refused before LibreOffice sees them ------------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("bomb.docx", lambda: zip_bomb_docx(64 * 1024 * 1024), "zip bomb"),
        ("liar.docx", lying_zip_bomb_docx, "damaged"),
        ("secret.docx", encrypted_docx_bytes, "password-protected"),
        ("secret.odt", encrypted_odt_bytes, "password-protected"),
        ("zip-secret.docx", zip_encrypted_docx, "password-protected"),
        ("broken.xlsx", lambda: b"PK\x03\x04 this zip ends here", "damaged"),
    ],
    ids=["zip-bomb", "lying-zip-bomb", "password-docx", "password-odt", "encrypted-zip", "not-a-zip"],
)
def test_bad_containers_are_refused_without_running_libreoffice_and_the_next_converts(
        fake: tuple[FakeSoffice, OfficeConverter], tmp_path: Path, name: str, make: Callable[[], bytes],
        reason: str) -> None:
    script, office = fake
    source = tmp_path / name
    source.write_bytes(make())
    with pytest.raises(ConversionError, match=reason) as caught:
        office.convert(source, tmp_path / "refused.pdf")
    if reason == "password-protected":
        assert "without a password" in caught.value.action
    assert script.call_count() == 0
    assert not (tmp_path / "refused.pdf").exists()

    good = tmp_path / "good.docx"
    good.write_bytes(docx_bytes(["Nach dem Fehler"]))
    office.convert(good, tmp_path / "good.pdf")
    assert script.call_count() == 1
    assert "Nach dem Fehler" in pdf_pages_text(tmp_path / "good.pdf")[0]


# -- LibreOffice hangs, crashes, cannot load ------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_a_hung_conversion_is_killed_whole_and_the_next_converts(tmp_path: Path) -> None:
    # The timeout has to let the real conversion afterwards finish on a busy machine, cold profile included.
    script = FakeSoffice(tmp_path / "bin")
    office = OfficeConverter(tmp_path / "work", soffice=str(script.path), timeout=20)
    source = tmp_path / "letter.docx"
    source.write_bytes(docx_bytes(["Zweiter Versuch"]))
    office.convert(source, tmp_path / "first.pdf")
    profile = Path(script.profiles()[0].removeprefix("-env:UserInstallation=file://"))
    assert profile.is_dir()
    script.mode("hang")
    with pytest.raises(ConversionError, match="did not finish converting the document within 20 seconds"):
        office.convert(source, tmp_path / "letter.pdf")
    shell, sleeper = script.hung_pids()
    assert gone(shell) and gone(sleeper)  # the script and the child it started: the whole group
    assert not (tmp_path / "letter.pdf").exists()
    assert not profile.exists()  # a killed run's profile may be half-written: the slot starts afresh

    script.mode("real")
    office.convert(source, tmp_path / "letter.pdf")
    assert "Zweiter Versuch" in pdf_pages_text(tmp_path / "letter.pdf")[0]
    office.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("mode", "reason"),
    [("crash", "stopped unexpectedly"), ("noload", "could not open the .docx file")],
)
def test_a_crash_or_a_failed_load_is_a_plain_refusal_and_the_next_converts(
        fake: tuple[FakeSoffice, OfficeConverter], tmp_path: Path, mode: str, reason: str) -> None:
    script, office = fake
    source = tmp_path / "letter.docx"
    source.write_bytes(docx_bytes(["Nach dem Absturz"]))
    script.mode(mode)
    with pytest.raises(ConversionError, match=reason):
        office.convert(source, tmp_path / "letter.pdf")
    script.mode("real")
    office.convert(source, tmp_path / "letter.pdf")
    assert "Nach dem Absturz" in pdf_pages_text(tmp_path / "letter.pdf")[0]


def test_close_stops_a_running_conversion_and_reaps_it(tmp_path: Path) -> None:
    script = FakeSoffice(tmp_path / "bin")
    script.mode("hang")
    office = OfficeConverter(tmp_path / "work", soffice=str(script.path), timeout=50)
    source = tmp_path / "letter.docx"
    source.write_bytes(docx_bytes(["Hallo"]))
    errors: list[BaseException] = []

    def convert() -> None:
        try:
            office.convert(source, tmp_path / "letter.pdf")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=convert)
    thread.start()
    while not script.child.exists():  # the script writes it once its child runs: the conversion hangs now
        thread.join(0.01)
        assert thread.is_alive()
    office.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ConversionError)
    assert "shut down" in str(errors[0])
    assert all(gone(pid) for pid in script.hung_pids())
    with pytest.raises(ConversionError, match="shutting down"):
        office.convert(source, tmp_path / "letter.pdf")


def test_converters_on_one_work_dir_never_share_a_profile(tmp_path: Path) -> None:
    script = FakeSoffice(tmp_path / "bin")
    script.mode("noload")  # soffice is run (and records its profile) but converts nothing: quick
    source = tmp_path / "letter.docx"
    source.write_bytes(docx_bytes(["Hallo"]))
    daemon = OfficeConverter(tmp_path / "work", soffice=str(script.path))
    cli = OfficeConverter(tmp_path / "work", soffice=str(script.path))
    for office in (daemon, cli):
        with pytest.raises(ConversionError):
            office.convert(source, tmp_path / "letter.pdf")
    first, second = script.profiles()
    assert first != second
    daemon.close()
    cli.close()
    restarted = OfficeConverter(tmp_path / "work", soffice=str(script.path))
    with pytest.raises(ConversionError):
        restarted.convert(source, tmp_path / "letter.pdf")
    restarted.close()
    assert script.profiles()[-1] == first  # the profiles a converter made stay warm for the next one
