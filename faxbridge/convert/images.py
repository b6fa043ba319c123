"""Photos and scans (JPEG, PNG, GIF, WebP, HEIC/HEIF, TIFF, BMP) → one PDF of fax-sized pages.

Each image is turned upright (EXIF orientation, mirrored ones too), put on white where it is
transparent, scaled down to what a fax transmits (about 200 dpi on the page) and fitted into the
page with margins by img2pdf. An image that needs none of that is embedded as it is (img2pdf copies
JPEG data unchanged, PNG without re-compression loss). The pixel count is checked from the header,
before anything is decoded, so a decompression bomb costs nothing; a JPEG is decoded at the reduced
scale libjpeg offers (``draft``), so a 12 MP photo needs a few MB, not 36.

Blocking: call it from a worker thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageSequence, UnidentifiedImageError

from faxbridge.convert import ConversionError
from faxbridge.convert.settings import ColourMode, Paper

IMAGE_SUFFIXES: Final = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".heic", ".heif", ".hif",
     ".tif", ".tiff", ".bmp"}
)  # fmt: skip

# The image size is checked here, from the header, before decoding (MAX_SOURCE_PIXELS and
# MAX_DECODED_PIXELS); Pillow's own check would only warn below twice its limit, and a warning is
# a log line in the daemon, not a refusal.
Image.MAX_IMAGE_PIXELS = None
# A 200 MP phone photo is real; 30 000 × 30 000 (900 MP) is a bomb.
MAX_SOURCE_PIXELS: Final = 250_000_000
# What may be decoded at full size (a JPEG is decoded at 1/2 … 1/8 scale): 60 MP RGB is 180 MB.
MAX_DECODED_PIXELS: Final = 60_000_000

# Fax "fine" resolution is 204 × 196 dpi (ITU-T T.4); more detail than 200 dpi is never transmitted.
FAX_DPI: Final = 200
MARGIN_MM: Final = 10.0  # fax machines do not print to the edge; 10 mm keeps everything legible
_PAPER_MM: Final = {Paper.A4: (210.0, 297.0), Paper.LETTER: (215.9, 279.4)}
_LOSSY_FORMATS: Final = frozenset({"JPEG", "MPO", "HEIF", "AVIF"})
# EXIF orientation (TIFF 6.0 tag 274) → the transposition that makes the picture upright; the
# table ImageOps.exif_transpose uses, applied here after reducing (a reduced copy has no EXIF).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageOptions:
    paper: Paper = Paper.A4
    colour: ColourMode = ColourMode.COLOR
    max_pages: int = 200


def images_to_pdf(sources: Sequence[tuple[str, Path]], target: Path, options: ImageOptions) -> int:
    """Write one PDF with every page of every image, in order; returns the page count.

    ``sources``: (the name the sender gave it, the file). Raises ConversionError naming the image.
    """
    import img2pdf  # only images need it; keeps start-up light

    pages: list[bytes] = []
    for name, path in sources:
        for page in _page_images(name, path, options):
            pages.append(page)
            if len(pages) > options.max_pages:
                raise ConversionError(
                    f"{name}: more than {options.max_pages} pages (documents.max_pages)",
                    action="Split the images into several mails or drops.",
                )
    if not pages:
        raise ConversionError(f"{sources[0][0]}: the image has no pages")
    width_mm, height_mm = _PAPER_MM[options.paper]
    layout = img2pdf.get_layout_fun(
        pagesize=(img2pdf.mm_to_pt(width_mm), img2pdf.mm_to_pt(height_mm)),
        border=(img2pdf.mm_to_pt(MARGIN_MM), img2pdf.mm_to_pt(MARGIN_MM)),
        fit=img2pdf.FitMode.into,
        auto_orient=True,  # a landscape photo goes on a landscape page, as large as it can be
    )
    try:
        # nodate and the internal engine (pikepdf would add a random /ID): the same image gives the
        # same bytes, so a resent photo is a recognised duplicate.
        pdf = img2pdf.convert(pages, layout_fun=layout, nodate=True, rotation=img2pdf.Rotation.none,
                              engine=img2pdf.Engine.internal)
    except Exception as exc:  # img2pdf raises its own and Pillow's errors for data it cannot embed
        names = ", ".join(name for name, _ in sources)
        raise ConversionError(f"{names}: the image cannot be put into a PDF ({type(exc).__name__})") from None
    target.write_bytes(pdf)
    return len(pages)


def _page_images(name: str, path: Path, options: ImageOptions) -> Iterator[bytes]:
    """Each page of one image file, upright and fax-sized, encoded for img2pdf."""
    _register_heif()
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ConversionError(f"{name}: not an image faxbridge can read (damaged, or another type)") from None
    except OSError as exc:
        raise ConversionError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    with image:
        width, height = image.size
        if width * height > MAX_SOURCE_PIXELS:
            raise ConversionError(
                f"{name}: {width} × {height} pixels ({width * height / 1e6:.0f} megapixels) is too large"
                f" to convert; at most {MAX_SOURCE_PIXELS // 1_000_000} megapixels",
                action="Send a smaller image (a photo as the camera took it is fine).",
            )
        # GIF and WebP may be animated: their first picture is the document. TIFF pages are pages.
        frames = ImageSequence.Iterator(image) if image.format == "TIFF" else iter([image])
        try:
            for frame in frames:
                yield _fax_page(name, frame, options)
        except ConversionError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            # Pillow's words for broken data ("image file is truncated", "broken data stream").
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConversionError(f"{name}: the image is damaged and cannot be converted ({detail})") from None


def _fax_page(name: str, frame: Image.Image, options: ImageOptions) -> bytes:
    """One frame upright, on white, at most fax resolution, in the colour mode asked for."""
    box = _printable_pixels(options.paper, frame.size)
    scale = min(box[0] / frame.size[0], box[1] / frame.size[1], 1.0)
    orientation = frame.getexif().get(0x0112, 1)  # EXIF Orientation (TIFF tag 274)
    passthrough = _embeddable_as_is(frame, scale, orientation, options)
    if passthrough is not None:
        frame.load()  # decoded once all the same: damaged data must be refused here, not at FAX.de
        return passthrough
    if frame.format == "JPEG":
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale at once, never smaller than asked for.
        wanted = (max(1, math.ceil(frame.size[0] * scale)), max(1, math.ceil(frame.size[1] * scale)))
        frame.draft("L" if options.colour is not ColourMode.COLOR else "RGB", wanted)
    decoded = frame.size[0] * frame.size[1]
    if decoded > MAX_DECODED_PIXELS:
        raise ConversionError(
            f"{name}: {frame.size[0]} × {frame.size[1]} pixels is too large to convert"
            f" ({decoded / 1e6:.0f} megapixels; at most {MAX_DECODED_PIXELS // 1_000_000} for this type)",
            action="Send the image as JPEG, or smaller.",
        )
    lossy = frame.format in _LOSSY_FORMATS
    frame.load()
    page = _on_white(frame)
    factor = min(page.size[0] // box[0], page.size[1] // box[1])
    if factor >= 2 and page.mode in ("L", "RGB"):
        # A box-filter reduction first (cheap): turning the picture then copies a small one, so a
        # 12 MP PNG or HEIC costs one full-size buffer, not three.
        page = page.reduce(factor)
    if orientation in _UPRIGHT:
        page = page.transpose(_UPRIGHT[orientation])  # all eight orientations, mirrored ones included
    box = _printable_pixels(options.paper, page.size)
    # Within a tenth of the page's fax resolution is close enough (fine mode is 204 dpi): JPEG's own
    # 1/2 scale often lands there, and a resample to shave off 2 % cost more than the decode.
    if page.size[0] > box[0] * 1.1 or page.size[1] > box[1] * 1.1:
        page.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    if options.colour is ColourMode.BW:
        # A threshold, not dithering: text stays crisp, and dither patterns are what group 4
        # compresses worst. CCITT group 4 is how faxes are coded; img2pdf embeds it as it is.
        page.convert("L").convert("1", dither=Image.Dither.NONE).save(buffer, format="TIFF", compression="group4", dpi=(FAX_DPI, FAX_DPI))
    else:
        page = page.convert("L" if options.colour is ColourMode.GREY or page.mode in ("L", "1") else "RGB")
        if lossy:
            page.save(buffer, format="JPEG", quality=88, dpi=(FAX_DPI, FAX_DPI))
        else:
            page.save(buffer, format="PNG", dpi=(FAX_DPI, FAX_DPI))
    return buffer.getvalue()


def _embeddable_as_is(frame: Image.Image, scale: float, orientation: int, options: ImageOptions) -> bytes | None:
    """The file's own bytes when img2pdf can embed them unchanged: a single upright JPEG or PNG
    picture, no larger than a fax transmits, without transparency, in colour mode "color"."""
    if options.colour is not ColourMode.COLOR or scale < 1.0 or orientation != 1:
        return None
    if frame.format == "JPEG" and frame.mode in ("RGB", "L"):
        pass
    elif frame.format == "PNG" and frame.mode in ("RGB", "L") and "transparency" not in frame.info:
        pass
    else:
        return None
    filename = getattr(frame, "filename", "")
    return Path(filename).read_bytes() if filename else None


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent parts become white paper (a transparent PNG is black in many PDF viewers)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("I").point(lambda v: v / 256).convert("L")
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image


def _printable_pixels(paper: Paper, size: tuple[int, int]) -> tuple[int, int]:
    """The page's printable area at fax resolution, turned like the image (img2pdf auto_orient)."""
    width_mm, height_mm = _PAPER_MM[paper]
    short = round((width_mm - 2 * MARGIN_MM) / 25.4 * FAX_DPI)
    long = round((height_mm - 2 * MARGIN_MM) / 25.4 * FAX_DPI)
    return (long, short) if size[0] > size[1] else (short, long)


_heif_registered = False


def _register_heif() -> None:
    """HEIC/HEIF (iPhone photos) through pillow-heif, registered once and only when needed."""
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True
