"""DOCX → PDF, cold and warm, through OfficeConverter beside a plain `soffice --headless --convert-to pdf` of the same file.

Cold is a converter's first conversion (its slot's LibreOffice profile does not exist yet) against
plain soffice with a HOME it has never seen (its default profile is made on that run too). Warm is
every later conversion of one converter against plain soffice with a HOME it has used before. The
document is a three-page DOCX made here (text only, so fonts and not images dominate). Each figure
is the median of ``--runs`` runs, one at a time; the ratio is OfficeConverter's time over the plain
command's (1.0 = no cost beyond LibreOffice itself: ours adds the copy into a scratch directory, the
zip check, the process-group reaping and opening the PDF with pypdf).

    .venv/bin/python -m bench.office_convert [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from faxbridge.convert.office import OfficeConverter

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_LOREM = ("Sehr geehrte Damen und Herren, anbei erhalten Sie unser Angebot über die Lieferung von "
          "Büromaterial für das kommende Quartal. Bitte prüfen Sie die Positionen und Preise. ")


def sample_docx(pages: int = 3) -> bytes:
    """A minimal WordprocessingML document: ``pages`` pages of paragraphs, a page break between them."""
    body = []
    for page in range(pages):
        for paragraph in range(12):
            page_break = '<w:r><w:br w:type="page"/></w:r>' if page and not paragraph else ""
            body.append(f'<w:p>{page_break}<w:r><w:t xml:space="preserve">{page + 1}.{paragraph + 1} '
                        f'{_LOREM * 2}</w:t></w:r></w:p>')
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{_W}">'
                f'<w:body>{"".join(body)}</w:body></w:document>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'))
        archive.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Target="word/document.xml" Type='
            '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
            '</Relationships>'))
        archive.writestr("word/document.xml", document)
    return buffer.getvalue()


def plain_soffice(source: Path, home: Path, outdir: Path) -> float:
    """Seconds for `soffice --headless --convert-to pdf` as a person types it (its profile under HOME)."""
    started = time.perf_counter()
    subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(outdir), str(source)],
                   env=dict(os.environ, HOME=str(home)), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if not (outdir / (source.stem + ".pdf")).is_file():
        raise RuntimeError("plain soffice wrote no PDF")
    return elapsed


def ours(converter: OfficeConverter, source: Path, target: Path) -> float:
    started = time.perf_counter()
    converter.convert(source, target)
    return time.perf_counter() - started


def measure(runs: int) -> dict[str, float]:
    import pypdf  # noqa: F401 - the daemon has it loaded long before its first conversion; not a cost to count
    with tempfile.TemporaryDirectory(prefix="bench-office-") as tmp:
        work = Path(tmp)
        source = work / "Angebot.docx"
        source.write_bytes(sample_docx())
        times: dict[str, list[float]] = {"ours_cold": [], "plain_cold": [], "ours_warm": [], "plain_warm": []}
        # Cold, interleaved and in turns first, so that load from elsewhere on the machine hits both alike.
        for run in range(runs):
            converter = OfficeConverter(work / f"cold-{run}")
            try:
                if run % 2:
                    times["plain_cold"].append(plain_soffice(source, work / f"home-cold-{run}", work / f"p-{run}"))
                times["ours_cold"].append(ours(converter, source, work / f"cold-{run}.pdf"))
                if not run % 2:
                    times["plain_cold"].append(plain_soffice(source, work / f"home-cold-{run}", work / f"p-{run}"))
            finally:
                converter.close()
        # Warm: one converter and one HOME, each warmed by one conversion first.
        converter = OfficeConverter(work / "warm")
        warm_home = work / "home-warm"
        try:
            ours(converter, source, work / "warm-0.pdf")
            plain_soffice(source, warm_home, work / "plain-warm")
            for run in range(runs):
                if run % 2:
                    times["plain_warm"].append(plain_soffice(source, warm_home, work / "plain-warm"))
                times["ours_warm"].append(ours(converter, source, work / f"warm-{run + 1}.pdf"))
                if not run % 2:
                    times["plain_warm"].append(plain_soffice(source, warm_home, work / "plain-warm"))
        finally:
            converter.close()
        shutil.rmtree(work, ignore_errors=True)
    result = {name: statistics.median(values) for name, values in times.items()}
    result.update({f"{name}_min": min(values) for name, values in times.items()})
    result["cold_ratio"] = result["ours_cold"] / result["plain_cold"]
    result["warm_ratio"] = result["ours_warm"] / result["plain_warm"]
    result["runs"] = runs
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="conversions per figure (the median is shown)")
    args = parser.parse_args(argv)
    r = measure(args.runs)
    for kind in ("cold", "warm"):
        print(f"DOCX → PDF {kind} (3 pages, median of {args.runs}): OfficeConverter {r[f'ours_{kind}']:.2f} s "
              f"(min {r[f'ours_{kind}_min']:.2f}), plain soffice {r[f'plain_{kind}']:.2f} s "
              f"(min {r[f'plain_{kind}_min']:.2f}), ratio {r[f'{kind}_ratio']:.2f}×")
    return r


if __name__ == "__main__":
    main()
