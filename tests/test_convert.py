"""Converters on real files made here with Pillow and pypdf: images, text, secured PDFs, the pipeline.

Orientation is checked on the PDF itself: the picture embedded in each page is read back and its
corners looked at, not our own idea of what we did.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pypdf
import pytest
from PIL import Image

from faxbridge.config import ConfigError, parse_config
from faxbridge.convert import ConversionError
from faxbridge.convert.images import ImageOptions, images_to_pdf
from faxbridge.convert.pdf import make_reproducible, unlock
from faxbridge.convert.pipeline import AS_IS, IMAGE, OFFICE, PDF, TEXT, WINMAIL, convert_documents, kind_of
from faxbridge.convert.settings import ColourMode, ConvertSettings, ImageGrouping, Paper
from faxbridge.convert.text import TextOptions, decode_text, text_to_pdf
from faxbridge.documents import DocumentLimits
from faxbridge.model import Document

A4 = (595.28, 841.89)
LETTER = (612.0, 792.0)
RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (255, 255, 255)


# -- sample images -------------------------------------------------------------------------------


def upright(width: int = 600, height: int = 800) -> Image.Image:
    """A picture that shows which way is up: red top-left, blue top-right, green bottom-left."""
    image = Image.new("RGB", (width, height), WHITE)
    qw, qh = width // 4, height // 4
    image.paste(RED, (0, 0, qw, qh))
    image.paste(BLUE, (width - qw, 0, width, qh))
    image.paste(GREEN, (0, height - qh, qw, height))
    return image


# What a camera stores for each EXIF orientation: the upright picture transformed so that
# applying the orientation (TIFF 6.0 tag 274; ImageOps.exif_transpose) gives it back.
STORED = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


def jpeg(path: Path, image: Image.Image, orientation: int = 1, quality: int = 92) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    STORED[orientation](image).save(path, format="JPEG", quality=quality, exif=exif.tobytes())
    return path


def page_images(pdf: bytes) -> list[tuple[pypdf.PageObject, Image.Image]]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    found = []
    for page in reader.pages:
        [embedded] = page.images
        found.append((page, embedded.image))
    return found


def xobjects(page: pypdf.PageObject) -> list[pypdf.generic.StreamObject]:
    """The image streams a page draws, as stored in the PDF."""
    return [ref.get_object() for ref in page["/Resources"]["/XObject"].values()]


def corner(image: Image.Image, where: str) -> tuple[int, int, int]:
    """The mean colour near a corner (a tenth of the picture in), tolerant of JPEG noise."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    x = w // 10 if "left" in where else w - w // 10
    y = h // 10 if "top" in where else h - h // 10
    box = rgb.crop((x - 3, y - 3, x + 3, y + 3)).resize((1, 1), Image.Resampling.BOX)
    return box.getpixel((0, 0))  # type: ignore[return-value]


def near(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 60 for a, b in zip(colour, expected))


def assert_upright(image: Image.Image) -> None:
    assert image.size[0] < image.size[1], image.size
    assert near(corner(image, "top-left"), RED)
    assert near(corner(image, "top-right"), BLUE)
    assert near(corner(image, "bottom-left"), GREEN)
    assert near(corner(image, "bottom-right"), WHITE)


def size_of(page: pypdf.PageObject) -> tuple[float, float]:
    return round(float(page.mediabox.width), 2), round(float(page.mediabox.height), 2)


def convert(tmp_path: Path, *files: Path, **options: object) -> bytes:
    target = tmp_path / "out.pdf"
    images_to_pdf([(f.name, f) for f in files], target, ImageOptions(**options))  # type: ignore[arg-type]
    return target.read_bytes()


# -- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [(600, 800), (3000, 4000)], ids=["small", "12MP"])
def test_every_exif_orientation_comes_out_upright_on_an_a4_page(tmp_path, orientation, size) -> None:
    path = jpeg(tmp_path / f"IMG_{orientation}.jpg", upright(*size), orientation)
    [(page, image)] = page_images(convert(tmp_path, path))
    assert size_of(page) == A4 and page.get("/Rotate", 0) == 0
    assert_upright(image)
    assert max(image.size) <= 2200  # at most fax resolution (200 dpi) on the page


def test_a_small_upright_jpeg_is_embedded_unchanged(tmp_path) -> None:
    path = jpeg(tmp_path / "small.jpg", upright(), 1)
    reader = pypdf.PdfReader(io.BytesIO(convert(tmp_path, path)))
    [stream] = xobjects(reader.pages[0])
    assert stream["/Filter"] == "/DCTDecode"
    assert stream.get_data() == path.read_bytes()  # lossless: the JPEG's own bytes (img2pdf)


def test_a_landscape_photo_goes_on_a_landscape_page(tmp_path) -> None:
    path = tmp_path / "wide.png"
    upright(1600, 900).save(path)
    [(page, image)] = page_images(convert(tmp_path, path))
    assert size_of(page) == (A4[1], A4[0])
    assert image.size[0] > image.size[1]


def test_transparent_png_is_put_on_white(tmp_path) -> None:
    image = Image.new("RGBA", (400, 600), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (150, 250, 250, 350))
    path = tmp_path / "logo.png"
    image.save(path)
    [(_, embedded)] = page_images(convert(tmp_path, path))
    assert embedded.convert("RGB").getpixel((5, 5)) == WHITE
    assert embedded.convert("RGB").getpixel((200, 300)) == (0, 0, 0)


@pytest.mark.parametrize("fmt, suffix", [("GIF", ".gif"), ("WEBP", ".webp"), ("HEIF", ".heic"), ("BMP", ".bmp")])
def test_other_formats_become_one_upright_page(tmp_path, fmt, suffix) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    path = tmp_path / f"photo{suffix}"
    upright().save(path, format=fmt, **({"quality": 95} if fmt in ("WEBP", "HEIF") else {}))
    [(page, image)] = page_images(convert(tmp_path, path))
    assert size_of(page) == A4
    assert_upright(image)


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg", "group4"])
def test_multi_page_tiff_of_any_compression_becomes_one_page_each(tmp_path, compression) -> None:
    mode = "1" if compression == "group4" else "RGB"
    frames = [upright().convert(mode) for _ in range(3)]
    path = tmp_path / "scan.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:], compression=compression)
    pages = page_images(convert(tmp_path, path))
    assert len(pages) == 3
    for page, image in pages:
        assert size_of(page) == A4
        assert image.size[0] < image.size[1]


def test_several_images_become_one_pdf_in_their_order(tmp_path) -> None:
    portrait = jpeg(tmp_path / "a.jpg", upright(), 6)  # stored landscape, shown portrait
    wide = tmp_path / "b.png"
    upright(900, 500).save(wide)
    pdf = convert(tmp_path, portrait, wide, portrait)
    sizes = [size_of(page) for page, _ in page_images(pdf)]
    assert sizes == [A4, (A4[1], A4[0]), A4]


def test_letter_paper_grey_and_black_and_white(tmp_path) -> None:
    path = jpeg(tmp_path / "a.jpg", upright(1200, 1600), 1)
    [(page, image)] = page_images(convert(tmp_path, path, paper=Paper.LETTER))
    assert size_of(page) == LETTER
    [(_, grey)] = page_images(convert(tmp_path, path, colour=ColourMode.GREY))
    assert grey.mode == "L"
    reader = pypdf.PdfReader(io.BytesIO(convert(tmp_path, path, colour=ColourMode.BW)))
    [embedded] = reader.pages[0].images
    assert embedded.image.mode == "1"
    [stream] = xobjects(reader.pages[0])
    assert "/CCITTFaxDecode" in str(stream["/Filter"])  # group 4, as faxes are coded


def test_the_same_image_gives_the_same_bytes(tmp_path) -> None:
    path = jpeg(tmp_path / "a.jpg", upright(3000, 4000), 6)
    assert convert(tmp_path, path) == convert(tmp_path, path)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: how decompression bombs look before decoding."""
    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(30_000, 30_000))
    with pytest.raises(ConversionError) as caught:
        convert(tmp_path, path)
    assert str(caught.value) == (
        "bomb.png: 30000 × 30000 pixels (900 megapixels) is too large to convert; at most 250 megapixels"
    )


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-an-image"])
def test_a_corrupt_jpeg_is_refused_in_plain_words(tmp_path, damage) -> None:
    good = jpeg(tmp_path / "good.jpg", upright(1200, 1600), 1).read_bytes()
    data = {
        "truncated": good[: len(good) // 2],
        "garbage": good[:600] + bytes(range(256)) * 40,
        "not-an-image": b"Hello, this is text\n" * 10,
    }[damage]
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ConversionError) as caught:
        convert(tmp_path, path)
    message = str(caught.value)
    assert message.startswith("photo.jpg: ")
    assert "damaged" in message or "cannot read" in message


# -- text ----------------------------------------------------------------------------------------

GERMAN = "Sehr geehrte Frau Müller,\nanbei die Gebühren für März: 12 € — Grüße aus Köln, Straße 5.\n"
RUSSIAN = "Здравствуйте! Прошу оплатить счёт до пятницы.\n"


@pytest.mark.parametrize(
    "text, encoding, expected",
    [
        (GERMAN, "utf-8", "utf-8"),
        (GERMAN, "utf-8-sig", "utf-8"),
        (GERMAN, "utf-16", "utf-16-le"),
        (GERMAN, "cp1252", "cp1252"),
        ("Größe: Straße, Äpfel, Übermut\n", "latin-1", "cp1252"),
        ("Müller\n", "cp1252", "cp1252"),
        (RUSSIAN, "cp1251", "cp1251"),
        (RUSSIAN, "koi8_r", "koi8_r"),
        (RUSSIAN, "utf-8", "utf-8"),
    ],
)
def test_text_charsets_are_read_right(text, encoding, expected) -> None:
    assert decode_text(text.encode(encoding)) == (text, expected)


@pytest.mark.parametrize("text, encoding", [(GERMAN, "cp1252"), (RUSSIAN, "koi8_r"), (GERMAN + RUSSIAN, "utf-16")])
def test_a_text_file_becomes_a_pdf_with_its_letters_right(tmp_path, text, encoding) -> None:
    source = tmp_path / "note.txt"
    source.write_bytes(text.encode(encoding))
    target = tmp_path / "note.pdf"
    assert text_to_pdf("note.txt", source, target, TextOptions()) == 1
    reader = pypdf.PdfReader(target)
    assert size_of(reader.pages[0]) == A4
    extracted = " ".join(reader.pages[0].extract_text().split())
    assert " ".join(text.split()) in extracted


def test_long_text_breaks_into_pages_and_a_form_feed_starts_one(tmp_path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("\n".join(f"Zeile {n}" for n in range(150)) + "\fLetzte Seite\n", encoding="utf-8")
    target = tmp_path / "list.pdf"
    pages = text_to_pdf("list.txt", source, target, TextOptions(paper=Paper.LETTER))
    reader = pypdf.PdfReader(target)
    assert pages == len(reader.pages) == 4  # 150 lines on 3 Letter pages, then the form feed's page
    assert size_of(reader.pages[0]) == LETTER
    assert reader.pages[-1].extract_text().strip() == "Letzte Seite"
    text_to_pdf("list.txt", source, tmp_path / "again.pdf", TextOptions(paper=Paper.LETTER))
    assert (tmp_path / "again.pdf").read_bytes() == target.read_bytes()  # byte-stable: duplicates found


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "the text file is empty"), (b"\n \n", "the text file is empty"),
     (b"\x7fELF\x02\x01\x01\x00\x00\x00", "named .txt but is binary data, not text")],
)
def test_empty_or_binary_text_is_refused(tmp_path, data, reason) -> None:
    source = tmp_path / "x.txt"
    source.write_bytes(data)
    with pytest.raises(ConversionError, match=reason):
        text_to_pdf("x.txt", source, tmp_path / "x.pdf", TextOptions())


# -- secured PDFs --------------------------------------------------------------------------------


def secured_pdf(path: Path, pages: int, algorithm: str, user_password: str = "") -> Path:
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    with open(path, "wb") as f:
        writer.write(f)
    return path


@pytest.mark.parametrize("algorithm", ["RC4-40", "RC4-128", "AES-128", "AES-256"])
def test_an_owner_password_pdf_is_rewritten_without_encryption(tmp_path, algorithm) -> None:
    source = secured_pdf(tmp_path / "bank.pdf", 3, algorithm)
    assert unlock("bank.pdf", source, tmp_path / "open.pdf") == 3
    reader = pypdf.PdfReader(tmp_path / "open.pdf")
    assert not reader.is_encrypted and len(reader.pages) == 3


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_a_pdf_that_needs_a_password_is_refused_saying_so(tmp_path, algorithm) -> None:
    source = secured_pdf(tmp_path / "secret.pdf", 1, algorithm, user_password="open-sesame")
    with pytest.raises(ConversionError) as caught:
        unlock("secret.pdf", source, tmp_path / "open.pdf")
    assert str(caught.value) == "secret.pdf: the PDF needs a password to open; FAX.de cannot open it"
    assert "open-sesame" not in str(caught.value) + caught.value.action


def test_a_dated_pdf_with_a_random_id_is_made_reproducible_in_place(tmp_path) -> None:
    """What LibreOffice writes differs run to run only in its date, /ID and /DocChecksum."""
    made = []
    for n, when in enumerate(["D:20261204161035Z", "D:20261204171102Z"]):
        writer = pypdf.PdfWriter()
        writer.add_blank_page(595, 842)
        writer.add_metadata({"/CreationDate": when, "/Title": "Brief"})
        buffer = io.BytesIO()
        writer.write(buffer)  # pypdf gives each write a random /ID
        data = buffer.getvalue().replace(b"trailer\n<<", b"trailer\n<<\n/DocChecksum /" + (b"%032X" % (n * 7919)))
        path = tmp_path / f"{n}.pdf"
        path.write_bytes(data)
        made.append((path, len(data)))
    assert made[0][0].read_bytes() != made[1][0].read_bytes()
    for path, size in made:
        make_reproducible(path)
        assert path.stat().st_size == size
        reader = pypdf.PdfReader(path, strict=True)
        assert len(reader.pages) == 1 and reader.metadata.title == "Brief"
    assert made[0][0].read_bytes() == made[1][0].read_bytes()


# -- the pipeline --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, settings, kind",
    [
        ("a.pdf", ConvertSettings(), PDF),
        ("a.PDF", ConvertSettings(), PDF),
        ("a.html", ConvertSettings(), AS_IS),
        ("a.tif", ConvertSettings(), AS_IS),
        ("a.tif", ConvertSettings(as_is=frozenset({"bmp"})), IMAGE),
        ("a.bmp", ConvertSettings(as_is=frozenset()), IMAGE),
        ("a.doc", ConvertSettings(), AS_IS),
        ("a.jpeg", ConvertSettings(), IMAGE),
        ("IMG_0001.HEIC", ConvertSettings(), IMAGE),
        ("a.webp", ConvertSettings(), IMAGE),
        ("a.txt", ConvertSettings(), TEXT),
        ("WINMAIL.DAT", ConvertSettings(), WINMAIL),
        ("other.dat", ConvertSettings(), None),
        ("a.zip", ConvertSettings(), None),
        ("a", ConvertSettings(), None),
    ],
)
def test_which_converter_a_name_needs(name, settings, kind) -> None:
    assert kind_of(name, settings) == kind


def test_office_files_go_to_libreoffice_and_doc_xls_when_configured() -> None:
    pytest.importorskip("faxbridge.convert.office")
    assert kind_of("a.docx", ConvertSettings()) == OFFICE
    assert kind_of("a.odt", ConvertSettings()) == OFFICE
    assert kind_of("a.doc", ConvertSettings(as_is=frozenset({"xls"}))) == OFFICE


def test_pipeline_combines_images_in_place_and_converts_the_rest(tmp_path) -> None:
    pdf_bytes = io.BytesIO()
    writer = pypdf.PdfWriter()
    writer.add_blank_page(595, 842)
    writer.write(pdf_bytes)
    (tmp_path / "1.pdf").write_bytes(pdf_bytes.getvalue())
    jpeg(tmp_path / "2.jpg", upright(), 6)
    (tmp_path / "3.txt").write_text("Hallo Welt\n", encoding="utf-8")
    upright().save(tmp_path / "4.png")
    arrived = [Document("Brief.pdf", tmp_path / "1.pdf"), Document("Foto 1.jpg", tmp_path / "2.jpg"),
               Document("Notiz.txt", tmp_path / "3.txt"), Document("Foto 2.png", tmp_path / "4.png")]
    converted, problems = convert_documents(arrived, tmp_path / "work", ConvertSettings(), DocumentLimits())
    assert problems == []
    assert [c.document.filename for c in converted] == ["Brief.pdf", "Foto 1 (+1 images).pdf", "Notiz.pdf"]
    assert [c.originals for c in converted] == [(arrived[0],), (arrived[1], arrived[3]), (arrived[2],)]
    assert not converted[0].is_converted and converted[1].is_converted
    assert converted[1].document.path.name == "Foto 1.fax.pdf"
    assert len(pypdf.PdfReader(converted[1].document.path).pages) == 2

    separate, _ = convert_documents(arrived, tmp_path / "work2", ConvertSettings(images=ImageGrouping.SEPARATE),
                                    DocumentLimits())
    assert [c.document.filename for c in separate] == ["Brief.pdf", "Foto 1.pdf", "Notiz.pdf", "Foto 2.pdf"]


def test_pipeline_names_every_document_it_cannot_convert(tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    (tmp_path / "b.zip").write_bytes(b"PK\x03\x04")
    arrived = [Document("a.jpg", tmp_path / "a.jpg"), Document("b.zip", tmp_path / "b.zip")]
    converted, problems = convert_documents(arrived, tmp_path / "work", ConvertSettings(), DocumentLimits())
    assert converted == []
    assert problems[0].startswith("b.zip: this type cannot be faxed; faxbridge takes PDF, TIF")
    assert problems[1].startswith("a.jpg: ")


# -- config --------------------------------------------------------------------------------------

FAXDE = {"faxde": {"account": "1", "password_env": "PW"}}


def test_convert_section_and_a_folders_own_keys(tmp_path) -> None:
    config = parse_config(
        {**FAXDE, "convert": {"paper": "Letter", "colour": "grey", "as_is": ["tif", "bmp"], "office_timeout": "30s"},
         "hotfolders": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b"), "convert": {"colour": "bw"}}]},
        tmp_path, environ={"PW": "x"},
    )
    assert config.convert == ConvertSettings(paper=Paper.LETTER, colour=ColourMode.GREY,
                                             as_is=frozenset({"tiff", "bmp"}), office_timeout=30.0)
    assert config.hotfolders[0].convert == config.convert
    assert config.hotfolders[1].convert.colour is ColourMode.BW
    assert config.hotfolders[1].convert.paper is Paper.LETTER


@pytest.mark.parametrize(
    "section, problem",
    [
        ({"paper": "a3"}, "convert.paper: expected one of a4, letter; got 'a3'"),
        ({"as_is": ["pdf"]}, "convert.as_is[0]: expected one of bmp, doc, tiff, xls; got 'pdf'"),
        ({"colur": "bw"}, "convert.colur: unknown key (did you mean 'colour'?)"),
        ({"office": "yes"}, "convert.office: expected true or false"),
    ],
)
def test_convert_config_errors_name_the_key(tmp_path, section, problem) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**FAXDE, "convert": section}, tmp_path, environ={"PW": "x"})
    assert str(caught.value).startswith(problem)


def test_an_iphone_heic_turned_by_exif_comes_out_upright_once(tmp_path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6  # pillow-heif stores it as the HEIF rotation and reads it back applied
    path = tmp_path / "IMG_0003.HEIC"
    STORED[6](upright()).save(path, format="HEIF", exif=exif.tobytes(), quality=90)
    [(page, image)] = page_images(convert(tmp_path, path))
    assert size_of(page) == A4
    assert_upright(image)
