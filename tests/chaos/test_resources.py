"""Resource bounds under load: over hundreds of jobs (documents, mails, received faxes of 200 kB each)
the daemon's memory levels off instead of growing per job, and it holds no more file descriptors at
the end than after the first hundred. FAXBRIDGE_CHAOS_JOBS scales the run (`make chaos`: 1000).
(The journal's own bound, journal.retention, is test_retention.py's.)"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from rig import Campaign, Scale, journal_db

JOBS = int(os.environ.get("FAXBRIDGE_CHAOS_JOBS", "400"))
BATCH = 100
SIZE = 200_000  # bytes a document, mail attachment, received fax: a leak of one a job shows at once


def rss_kb(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match
    return int(match.group(1))


def open_fds(pid: int) -> list[str]:
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed while we looked
    return sorted(fds)


@pytest.mark.timeout(60 + JOBS * 0.3)
def test_memory_levels_off_and_no_file_descriptor_leaks_under_load(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path, Scale(), seed=7, record_limit=50, document_size=SIZE)
    campaign.simulator.polls_until_done = 0
    try:
        # glibc moves its mmap threshold up as big buffers come and go, and RSS then steps by
        # megabytes at random: a fixed threshold keeps the allocator's noise out of the figures
        # (a leaked document stays resident either way).
        process, log = campaign.start_daemon(MALLOC_MMAP_THRESHOLD_="131072")
        readings: list[tuple[int, int, int]] = []  # (jobs, RSS kB, fds)
        fds_after_warm_up: list[str] = []
        done = 0
        while done < JOBS:
            for _ in range(BATCH):
                if done % 10 == 9:
                    mail = campaign.new_mail()
                    while not mail.acked:
                        campaign.try_mail(mail)
                elif done % 10 == 4:
                    campaign.add_fax()
                else:
                    campaign.drop_document()
                done += 1
            wait_for_rest(campaign, process, log)
            readings.append((done, rss_kb(process.pid), len(open_fds(process.pid))))
            if len(readings) == 1:  # every pool and listener opened by now
                fds_after_warm_up = open_fds(process.pid)
        print("\njobs, RSS (MB), open fds:", [(n, round(kb / 1024, 1), fds) for n, kb, fds in readings])
        # Memory levels off: over the second half of the run it grows by less than 10 MB — what a
        # daemon keeps per job is small and capped (4096 parsed requests and number checks are
        # cached); a document, SendJob body, fax image or mail kept per job (200 kB each here)
        # would add 40 MB and more. The allocator's own steps stay well inside the margin.
        half = len(readings) // 2
        warm_jobs, warm_rss = readings[half - 1][0], max(kb for _, kb, _ in readings[:half])
        end_jobs, end_rss, end_fds = readings[-1]
        growth = (end_rss - warm_rss) / 1024
        print(f"second half: {growth:+.1f} MB over {end_jobs - warm_jobs} jobs"
              f" ({growth * 1024 / (end_jobs - warm_jobs):+.1f} kB a job)")
        assert growth < 10, readings
        assert end_fds <= readings[0][2] + 2, (fds_after_warm_up, open_fds(process.pid))
        with journal_db(campaign.state_dir) as db:
            # (confirmed: an answer later than faxbridge's 1 s timeout on a loaded machine, reconciled)
            assert db.execute("SELECT COUNT(*) FROM jobs WHERE state NOT IN ('delivered', 'confirmed')"
                              ).fetchone()[0] == 0
    finally:
        campaign.close()


def wait_for_rest(campaign: Campaign, process, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (reason := campaign.unsettled()) is not None:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, reason
        time.sleep(0.1)
