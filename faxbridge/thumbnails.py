"""Page images of PDF and TIFF documents (blocking: callers run them in a worker thread) and their cache.

PDF pages are rendered with pypdfium2, TIFF pages read with Pillow; both give a PNG of a given width.
``ThumbnailCache`` keeps rendered pages in a folder of the state dir, bounded in total size, so a
list of 50 faxes is rendered once and not again on every visit.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

from PIL import Image, ImageSequence

from faxbridge.errors import FaxbridgeError

# A fax page is at most A4 at 200 dpi (1728 px wide); nothing asks for more than that.
MAX_WIDTH = 1728


def _kind(path: Path) -> str:
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(b"%PDF"):
        return "pdf"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    raise FaxbridgeError(f"{path.name} is neither a PDF nor a TIFF; no page image can be made of it")


def page_count(path: Path) -> int:
    """How many pages ``path`` (PDF or TIFF) has."""
    if _kind(path) == "pdf":
        import pypdfium2

        pdf = pypdfium2.PdfDocument(str(path))
        try:
            return len(pdf)
        finally:
            pdf.close()
    with Image.open(path) as image:
        return getattr(image, "n_frames", 1)


def page_png(path: Path, page: int, width: int) -> bytes:
    """Page ``page`` (1-based) of the PDF or TIFF at ``path`` as a PNG ``width`` pixels wide.

    Raises FaxbridgeError for a page that is not there or a file that cannot be read."""
    if not 1 <= width <= MAX_WIDTH:
        raise FaxbridgeError(f"a page image is 1–{MAX_WIDTH} pixels wide, not {width}")
    try:
        image = _render_pdf(path, page, width) if _kind(path) == "pdf" else _read_tiff(path, page)
    except FaxbridgeError:
        raise
    except Exception as exc:  # a damaged file: say so, do not crash the page that shows it
        raise FaxbridgeError(f"page {page} of {path.name} cannot be rendered: {exc}") from exc
    if image.width != width:
        # Fax TIFFs are often 204×98 dpi (half height): scale to the page's real proportions.
        dpi = image.info.get("dpi") or (1, 1)
        aspect = (float(dpi[0]) / float(dpi[1])) if dpi[1] else 1.0
        height = max(1, round(image.height * aspect * width / image.width))
        # reducing_gap: shrink by whole factors first (cheap), then filter the last step; a
        # 1728 px fax page becomes a thumbnail in milliseconds, not tens of them.
        image = image.convert("L").resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=3)  # page images are small; speed over the last few bytes
    return out.getvalue()


def _render_pdf(path: Path, page: int, width: int) -> Image.Image:
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(path))
    try:
        if not 1 <= page <= len(pdf):
            raise FaxbridgeError(f"{path.name} has {len(pdf)} page(s), not a page {page}")
        pdf_page = pdf[page - 1]
        scale = width / pdf_page.get_width()
        image = pdf_page.render(scale=scale, grayscale=True).to_pil()
        pdf_page.close()
        return image
    finally:
        pdf.close()


def _read_tiff(path: Path, page: int) -> Image.Image:
    with Image.open(path) as tiff:
        frames = getattr(tiff, "n_frames", 1)
        if not 1 <= page <= frames:
            raise FaxbridgeError(f"{path.name} has {frames} page(s), not a page {page}")
        frame = ImageSequence.Iterator(tiff)[page - 1]
        image = frame.convert("L")
        image.info["dpi"] = frame.info.get("dpi", (1, 1))
        return image


class ThumbnailCache:
    """Rendered page PNGs in ``folder``, named by the file's identity, at most ``max_bytes`` in all
    (the least recently used go first)."""

    def __init__(self, folder: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def page_png(self, path: Path, page: int, width: int) -> bytes:
        """Blocking, like ``page_png``: from the cache, or rendered and kept."""
        stat = path.stat()
        key = hashlib.sha256(f"{path}\0{stat.st_mtime_ns}\0{stat.st_size}\0{page}\0{width}".encode()).hexdigest()
        cached = self.folder / f"{key}.png"
        try:
            data = cached.read_bytes()
            os.utime(cached)  # recently used: trimmed last
            return data
        except FileNotFoundError:
            pass
        data = page_png(path, page, width)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{threading.get_ident()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, cached)
        self._trim(keep=cached)
        return data

    def _trim(self, keep: Path) -> None:
        """Oldest first until within the bound; never the page just rendered."""
        with self._lock:
            entries = []
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".png"):
                    stat = entry.stat()
                    entries.append((stat.st_mtime, stat.st_size, entry.path))
            total = sum(size for _, size, _ in entries)
            for _, size, name in sorted(entries):
                if total <= self.max_bytes:
                    break
                if name == str(keep):
                    continue
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass  # another thread trimmed it
                total -= size
