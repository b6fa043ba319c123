"""Photos per second and peak memory for 12 MP phone JPEGs turned into fax PDFs, beside the tools by hand.

Each path runs in a fresh process (a peak can only be measured once per process cleanly) over the
same photos (4000 × 3000, photo-like content, half of them turned by EXIF orientation 6):

* ``faxbridge``: convert.images.images_to_pdf, one photo per PDF, as a mailed or dropped photo is;
* ``img2pdf``: img2pdf.convert of the JPEG's bytes onto an A4 page by hand — the fastest possible,
  since it never decodes (but keeps 12 MP in the PDF, and cannot turn mirrored photos);
* ``pillow``: Pillow by hand — open, ImageOps.exif_transpose, save as PDF — what a quick script does.

Idle is read after the imports and one small warm-up conversion; the peak is over that idle.
Target (issue 16): faxbridge ≤ 150 MB over idle for a 12 MP JPEG.

    .venv/bin/python -m bench.photo_convert [--photos 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, reset_peak_rss, rss_mb

PATHS = ("faxbridge", "img2pdf", "pillow")
WIDTH, HEIGHT = 4000, 3000


def make_photos(folder: Path, count: int) -> list[Path]:
    """Photo-like 12 MP JPEGs: smooth gradients with fine noise compress as camera pictures do."""
    from PIL import Image, ImageFilter

    noise = Image.effect_noise((WIDTH, HEIGHT), 40).filter(ImageFilter.GaussianBlur(1))
    gradient = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    photos = []
    for i in range(count):
        image = Image.merge("RGB", (gradient, noise, gradient.rotate(90 * (i % 4), expand=False)))
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 2 else 1
        path = folder / f"IMG_{i:04d}.jpg"
        image.save(path, format="JPEG", quality=90, exif=exif.tobytes())
        photos.append(path)
    return photos


def run_path(path_kind: str, photos: list[Path], out: Path) -> dict[str, float]:
    """In this (fresh) process: warm up, read idle, convert every photo, read the peak."""
    convert = _converter(path_kind)
    convert(photos[0], out / "warm-up.pdf", small=True)
    idle = rss_mb()
    reset_peak_rss()
    started = time.perf_counter()
    sizes = []
    for i, photo in enumerate(photos):
        target = out / f"{path_kind}-{i}.pdf"
        convert(photo, target, small=False)
        sizes.append(target.stat().st_size)
    elapsed = time.perf_counter() - started
    return {"photos_per_s": len(photos) / elapsed, "idle_mb": idle, "extra_mb": peak_rss_mb() - idle,
            "pdf_kb": sum(sizes) / len(sizes) / 1000}


def _converter(path_kind: str):  # type: ignore[no-untyped-def]
    import io

    import img2pdf
    from PIL import Image, ImageOps

    from faxbridge.convert.images import ImageOptions, images_to_pdf

    def small_copy(photo: Path) -> Path:
        copy = photo.with_name("small.jpg")
        if not copy.exists():
            with Image.open(photo) as image:
                image.reduce(8).save(copy, format="JPEG")
        return copy

    def faxbridge(photo: Path, target: Path, small: bool) -> None:
        source = small_copy(photo) if small else photo
        images_to_pdf([(source.name, source)], target, ImageOptions())

    a4 = img2pdf.get_layout_fun((img2pdf.mm_to_pt(210), img2pdf.mm_to_pt(297)), fit=img2pdf.FitMode.into,
                                border=(img2pdf.mm_to_pt(10), img2pdf.mm_to_pt(10)), auto_orient=True)

    def by_img2pdf(photo: Path, target: Path, small: bool) -> None:
        source = small_copy(photo) if small else photo
        target.write_bytes(img2pdf.convert(source.read_bytes(), layout_fun=a4))

    def by_pillow(photo: Path, target: Path, small: bool) -> None:
        source = small_copy(photo) if small else photo
        with Image.open(source) as image:
            upright = ImageOps.exif_transpose(image)
            buffer = io.BytesIO()
            upright.save(buffer, format="PDF", resolution=200)
        target.write_bytes(buffer.getvalue())

    return {"faxbridge": faxbridge, "img2pdf": by_img2pdf, "pillow": by_pillow}[path_kind]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one path in this process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        folder = Path(args.folder)
        photos = sorted(folder.glob("IMG_*.jpg"))
        print(json.dumps(run_path(args.child, photos, folder)))
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        folder = Path(tmp)
        photos = make_photos(folder, args.photos)
        print(f"{len(photos)} photos of {WIDTH} × {HEIGHT}, {sum(p.stat().st_size for p in photos) / len(photos) / 1e6:.1f} MB"
              " each (JPEG q90, half turned by EXIF)", flush=True)
        results: dict[str, dict[str, float]] = {}
        for path_kind in PATHS:
            out = subprocess.run(
                [sys.executable, "-m", "bench.photo_convert", "--child", path_kind, "--folder", str(folder)],
                capture_output=True, text=True, check=True,
            )
            results[path_kind] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[path_kind]
            print(f"  {path_kind:<9} {r['photos_per_s']:5.2f} photos/s  peak {r['extra_mb']:6.1f} MB over idle"
                  f" ({r['idle_mb']:.0f} MB)  PDF {r['pdf_kb']:.0f} kB", flush=True)
    ours = results["faxbridge"]
    for reference in ("img2pdf", "pillow"):
        ours[f"speed_vs_{reference}"] = ours["photos_per_s"] / results[reference]["photos_per_s"]
        ours[f"memory_vs_{reference}"] = ours["extra_mb"] / max(results[reference]["extra_mb"], 0.1)
    return results


if __name__ == "__main__":
    main()
