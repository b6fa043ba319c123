"""The hotfolders' inotify reader: real events from tmp_path, read on a real event loop; and the
grouping rules staying linear for bursts (issue 7)."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path

import pytest

from faxbridge.adapters.hotfolder import inotify
from faxbridge.adapters.hotfolder.inotify import Inotify, kind_of, parse
from faxbridge.adapters.hotfolder.plan import plan_units


@pytest.mark.parametrize(
    ("mask", "kind"),
    [
        (inotify.IN_CLOSE_WRITE, "closed"),
        (inotify.IN_MOVED_TO, "moved_in"),
        (inotify.IN_MOVED_FROM, "gone"),
        (inotify.IN_DELETE, "gone"),
        (inotify.IN_CREATE, "created"),
        (inotify.IN_MODIFY, "modified"),
        (inotify.IN_CREATE | inotify.IN_ISDIR, None),  # sent/, failed/, .faxbridge/
        (inotify.IN_MOVED_TO | inotify.IN_ISDIR, None),
        (inotify.IN_IGNORED, None),
    ],
)
def test_what_each_event_means_to_a_hotfolder(mask: int, kind: str | None) -> None:
    assert kind_of(mask) == kind


def test_parse_reads_every_event_of_a_buffer() -> None:
    def event(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    buffer = event(1, inotify.IN_CLOSE_WRITE, b"a.pdf") + event(1, inotify.IN_DELETE_SELF, b"") + event(
        2, inotify.IN_MOVED_TO, "Müller.pdf".encode()) + event(1, inotify.IN_CREATE, b"\xfc.pdf")
    assert parse(buffer) == [
        (1, inotify.IN_CLOSE_WRITE, "a.pdf"),
        (1, inotify.IN_DELETE_SELF, ""),
        (2, inotify.IN_MOVED_TO, "Müller.pdf"),
        (1, inotify.IN_CREATE, os.fsdecode(b"\xfc.pdf")),  # not UTF-8: kept exactly
    ]


def _collect(tmp_path: Path, act, until, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """Watch tmp_path on a fresh loop, do ``act(folder)``, gather events until ``until(events)``."""
    events: list[tuple[str, str, float]] = []
    overflows: list[bool] = []

    async def main() -> Inotify:
        watcher = Inotify(lambda kind, folder, name: events.append((kind, name, time.monotonic())),
                          lambda: overflows.append(True))
        watcher.watch(str(tmp_path))
        await asyncio.to_thread(act, tmp_path)
        deadline = time.monotonic() + timeout
        while not until(events) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        watcher.close()
        return watcher

    asyncio.run(main())
    return events, overflows


def test_a_file_closed_right_after_a_move_out_is_reported_at_once(tmp_path: Path) -> None:
    # watchdog held every IN_MOVED_FROM 0.5 s to pair it, and the events behind it waited too: a
    # file dropped just after a claim (a rename out of the folder) was seen up to 0.5 s late.
    (tmp_path / "claimed.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "elsewhere").mkdir()
    marks: dict[str, float] = {}

    def act(folder: Path) -> None:
        os.rename(folder / "claimed.pdf", folder / "elsewhere" / "claimed.pdf")
        with open(folder / "next.pdf", "wb") as f:
            f.write(b"%PDF-1.4")
        marks["closed"] = time.monotonic()

    events, _ = _collect(tmp_path, act, lambda e: any(k == "closed" for k, _, _ in e))
    kinds = [(kind, name) for kind, name, _ in events]
    assert kinds == [("gone", "claimed.pdf"), ("created", "next.pdf"), ("modified", "next.pdf"),
                     ("closed", "next.pdf")]
    closed_at = next(t for kind, _, t in events if kind == "closed")
    assert closed_at - marks["closed"] < 0.2


def test_a_burst_of_renames_in_is_read_in_linear_time(tmp_path: Path) -> None:
    staging = tmp_path.parent / (tmp_path.name + "-staging")
    staging.mkdir()
    count = 5000
    for i in range(count):
        (staging / f"{i:05d}.pdf").write_bytes(b"x")

    def act(folder: Path) -> None:
        for i in range(count):
            os.rename(staging / f"{i:05d}.pdf", folder / f"{i:05d}.pdf")

    started = time.monotonic()
    events, overflows = _collect(tmp_path, act, lambda e: len(e) >= count, timeout=10)
    assert not overflows
    assert len(events) == count and {k for k, _, _ in events} == {"moved_in"}
    assert time.monotonic() - started < 5  # watchdog: 2.2 s for 5 000, 24 s for 20 000 (issue 7)


def test_the_watch_ends_with_its_folder_and_an_overflow_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    overflows: list[bool] = []

    async def main() -> None:
        watcher = Inotify(lambda *event: None, lambda: overflows.append(True))
        wd = watcher.watch(str(folder))
        assert watcher.alive(wd)
        folder.rmdir()
        deadline = time.monotonic() + 5
        while watcher.alive(wd) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert not watcher.alive(wd)
        # IN_Q_OVERFLOW comes with watch descriptor -1
        watcher._dispatch([(-1, inotify.IN_Q_OVERFLOW, "")])  # noqa: SLF001
        assert overflows == [True]
        with pytest.raises(FileNotFoundError):
            watcher.watch(str(folder))
        watcher.close()

    asyncio.run(main())


def test_grouping_a_burst_is_linear() -> None:
    # Looking up each document's namesakes in all names made 20 000 files cost minutes.
    ready = {f"scan-{i:05d}.pdf" for i in range(20_000)} | {"scan-00007.yaml"}
    waiting = {f"late-{i:05d}.pdf" for i in range(20_000)}
    started = time.monotonic()
    units = plan_units(ready, waiting, {"scan-00007.yaml": ()})
    assert time.monotonic() - started < 2
    assert len(units) == 20_000
    assert [u for u in units if u.key == "scan-00007.pdf"][0].sidecars == ("scan-00007.yaml",)
