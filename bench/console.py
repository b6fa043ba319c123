"""The web console: the job list with 100 000 jobs journaled, 50 cold thumbnails, and its idle memory.

The real daemon (``faxbridge run``, bench.common.DaemonProcess) with the console on a free port,
against the simulator in its own process; requests log in through the form as a browser would.

* job list: a journal filled with ``--jobs`` jobs (jobs.add, as the edges journal them) before the
  daemon starts; then ``--requests`` GETs of /jobs — the first page, pages deep in the list by
  keyset (``before=``), and filtered ones (state, sender, a search by number) — p50/p95 of each
  answer as the client sees it. Target: p95 ≤ 200 ms.
* thumbnails: 50 received faxes (2-page fine-resolution G4 TIFFs, 1728 px wide) journaled; the
  /inbound page and its 50 page-1 images fetched as a browser does (6 connections), the cache cold.
  Target: ≤ 1 s.
* memory: idle RSS of the daemon with the console and without it (same config otherwise), 2 s
  after READY. Target: the console adds ≤ 10 MB.

    .venv/bin/python -m bench.console [--jobs 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import io
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import daemon_config, daemon_process, free_port, percentile, simulator_process

NUMBER = "+494012345678"
PASSWORD = "bench-console-pw"


def _console(port: int) -> dict[str, object]:
    from faxbridge.edges.http.console.auth import hash_password

    return {"listen": f"127.0.0.1:{port}",
            "users": [{"name": "bench", "password_hash": hash_password(PASSWORD), "role": "admin"}]}


def _fill_jobs(state: Path, count: int) -> None:
    from faxbridge.journal import Journal
    from faxbridge.model import Document, JobType, Recipient, SendRequest

    with Journal.open(state) as journal:
        for i in range(count):
            request = SendRequest(JobType.FAX, (Recipient(f"+4940{1000000 + i}"),),
                                  (Document(f"invoice-{i:06d}.pdf", state / f"missing-{i}.pdf"),))
            journal.jobs.add(request, source="hotfolder" if i % 3 else "smtp", source_ref=str(i),
                             content_key=f"k{i}", meta={"label": f"invoice-{i:06d}.pdf",
                                                        "sender": f"user{i % 50}@example.com"},
                             durable=False)
        journal.sync()


def _fax_tiff() -> bytes:
    from PIL import Image, ImageDraw

    pages = []
    for page in range(2):
        image = Image.new("1", (1728, 2200), 1)
        draw = ImageDraw.Draw(image)
        for line in range(40):
            draw.text((120, 150 + line * 48), f"Line {line} of page {page + 1}: order 4711, 40 units", fill=0)
        pages.append(image)
    out = io.BytesIO()
    pages[0].save(out, "TIFF", compression="group4", dpi=(204, 196), save_all=True, append_images=pages[1:])
    return out.getvalue()


def _fill_faxes(state: Path, count: int) -> None:
    import datetime as dt

    from faxbridge.journal import Journal
    from faxbridge.journal.inbound import InboundState
    from faxbridge.model import InboundFax

    tiff = _fax_tiff()
    folder = state.parent / "received"
    folder.mkdir(exist_ok=True)
    with Journal.open(state) as journal:
        for i in range(count):
            path = folder / f"fax-{i}.tif"
            path.write_bytes(tiff[:-1] + bytes([tiff[-1]]))  # each its own file: nothing cached by name
            fax = InboundFax(5000 + i, "+4930555000", dt.datetime.now(dt.timezone.utc), f"+4930{i:06d}", "", 2, b"")
            journal.inbound.record(fax, state=InboundState.STORED, path=str(path), size=len(tiff), sha256="")


def _login(base: str) -> requests.Session:
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{base}/login").text).group(1)
    answer = session.post(f"{base}/login", data={"csrf": token, "username": "bench", "password": PASSWORD},
                          allow_redirects=False)
    answer.raise_for_status()
    return session


def measure(jobs: int, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp, simulator_process() as url:
        work = Path(tmp)
        state = work / "state"
        started = time.perf_counter()
        _fill_jobs(state, jobs)
        _fill_faxes(state, 50)
        fill_s = time.perf_counter() - started
        port = free_port()
        config = daemon_config(url, work, console=_console(port))
        with daemon_process(config, work) as daemon:
            time.sleep(2.0)
            rss_with = daemon.rss_mb()
            base = f"http://127.0.0.1:{port}"
            session = _login(base)
            # Thumbnails first, while the cache is cold.
            started = time.perf_counter()
            page = session.get(f"{base}/inbound").text
            images = re.findall(r'src="(/inbound/\d+/page-1\.png)"', page)
            cookies = session.cookies.get_dict()

            def fetch(path: str) -> int:
                answer = requests.get(base + path, cookies=cookies, timeout=30)
                answer.raise_for_status()
                return len(answer.content)

            with ThreadPoolExecutor(6) as pool:  # a browser's connections per host
                list(pool.map(fetch, images))
            thumbs_s = time.perf_counter() - started
            # The job list.
            ids = [int(m) for m in re.findall(r'href="/jobs/(\d+)"', session.get(f"{base}/jobs").text)]
            newest = max(ids)
            queries = [{}, {"state": "queued"}, {"sender": "user7@example.com"}, {"q": "401000123"},
                       {"source": "smtp"}]
            latencies: list[float] = []
            for i in range(count):
                params: dict[str, object] = dict(queries[i % len(queries)])
                if i % 2:
                    params["before"] = newest - (i * 997) % max(jobs, 1)  # deep in the list
                started = time.perf_counter()
                answer = session.get(f"{base}/jobs", params=params)
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()
            rss_after = daemon.rss_mb()
        # The same daemon without the console, for its share of idle memory.
        without = {key: value for key, value in config.items() if key != "console"}
        (work / "notify.sock").unlink(missing_ok=True)
        with daemon_process(without, work) as daemon:
            time.sleep(2.0)
            rss_without = daemon.rss_mb()
    return {"jobs": jobs, "fill_s": fill_s, "requests": count, "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "thumbs": len(images), "thumbs_s": thumbs_s,
            "rss_with_mb": rss_with, "rss_without_mb": rss_without, "rss_added_mb": rss_with - rss_without,
            "rss_after_mb": rss_after}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the journal")
    parser.add_argument("--requests", type=int, default=200, help="GETs of /jobs to time")
    args = parser.parse_args(argv)
    r = measure(args.jobs, args.requests)
    print(f"console: /jobs with {r['jobs']:.0f} jobs: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms"
          f" (target ≤ 200 ms; {r['requests']:.0f} requests; journal filled in {r['fill_s']:.0f} s)")
    print(f"console: /inbound with {r['thumbs']:.0f} page-1 images, cold cache: {r['thumbs_s']:.2f} s (target ≤ 1 s)")
    print(f"console: idle RSS {r['rss_with_mb']:.1f} MB with, {r['rss_without_mb']:.1f} MB without:"
          f" +{r['rss_added_mb']:.1f} MB (target ≤ 10 MB); {r['rss_after_mb']:.1f} MB after the requests")
    return r


if __name__ == "__main__":
    main()
