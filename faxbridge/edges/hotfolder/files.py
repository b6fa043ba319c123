"""The file moves of a hotfolder: claiming a unit, and placing it in sent/ or failed/ afterwards.

Claim: the unit's files are renamed into ``FOLDER/.faxbridge/processing/<token>/`` — one
``rename(2)`` each, on the same file system, so exactly one taker wins and nobody sees half a
move. A manifest (``.claim.json``) is written first, and the folders are fsynced before the job is
journaled, so a crash at any point leaves either the files in the folder or a claim that the
next start finishes (claims.recover). A unit of one document and nothing else — nearly every
file an ERP prints into a folder — needs no manifest: its token ends in SINGLE, and the one file
in it is the document under its own name (the manifests cost a burst of 20 000 files 5 s: issue 7).
The journaled Document.path points into the claim, which stays put until FAX.de has accepted the
job; so a reconciling re-send still finds the bytes.

Everything here blocks (renames, fsyncs, copies): call it from a worker thread.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from faxbridge.edges.hotfolder.names import (
    ERROR_SUFFIX,
    REPORT_SUFFIX,
    SEND_REPORT_SUFFIX,
    decode_name,
    display_name,
    encode_name,
    split_name,
    with_suffix,
)
from faxbridge.fsutil import fsync_dir, sync_file_system, temporary_path

CLAIM_AREA: Final = Path(".faxbridge") / "processing"
MANIFEST: Final = ".claim.json"
# A unit being refused: where its files go and why, written before the first file moves, so that
# a crash half-way is finished at the next start (the document never sits in failed/ unexplained).
REFUSAL: Final = ".refusal.json"
# The end of a claim's token when the claim holds one document, named as in the folder, and no
# manifest (only a unit like that gets such a token: see claim_token).
SINGLE: Final = ".1"
# Inside a claim: the PDFs converted from its images, text or Office files (convert.pipeline);
# they go to sent/ beside their originals, and are made again if a crash comes before.
CONVERTED_DIR: Final = ".converted"

Signature = tuple[int, int, int]  # size, mtime_ns, inode: what "unchanged" means


@dataclass(frozen=True)
class ClaimedFile:
    original: str  # the name in the folder (may hold surrogates: not UTF-8 on disk)
    claimed: str  # the name inside the claim (display_name: valid text)
    document: bool


@dataclass(frozen=True)
class Claim:
    folder: Path
    dir: Path
    files: tuple[ClaimedFile, ...]
    key: str  # the unit's decisive original name (its stem names reports)
    complete: bool = True  # False: rebuilt without its manifest; only fit to be put back

    @property
    def ref(self) -> str:
        """The journal's source_ref: one claim, one job, whatever rescans and restarts happen."""
        return str(self.dir)

    @property
    def stem(self) -> str:
        return split_name(self.key)[0]

    def path(self, f: ClaimedFile) -> Path:
        return self.dir / f.claimed

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "key": encode_name(self.key),
            "files": [[encode_name(f.original), f.claimed, f.document] for f in self.files],
        }

    @classmethod
    def from_json(cls, directory: Path, data: dict[str, Any]) -> Claim:
        return cls(
            folder=Path(data["folder"]),
            dir=directory,
            files=tuple(ClaimedFile(decode_name(o), c, bool(d)) for o, c, d in data["files"]),
            key=decode_name(data["key"]),
        )


class ClaimError(OSError):
    """The decisive file could not be claimed for another reason than being gone."""


def signature(path: Path) -> Signature | None:
    """size, mtime, inode of a regular file or symlink (not followed); None if gone or special."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def list_folder(folder: Path) -> list[tuple[str, Signature]]:
    """Regular files (and symlinks, which are refused later) directly in ``folder``."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished or unreadable entry: the next look sees it again
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                found.append((entry.name, (st.st_size, st.st_mtime_ns, st.st_ino)))
    return found


def claim(folder: Path, token: str, key: str, documents: Sequence[str], sidecars: Sequence[str]) -> Claim | None:
    """Move a unit into its claim. None when the decisive file ``key`` is gone (someone else took it)."""
    [result] = claim_all(folder, [(token, key, documents, sidecars)])
    if isinstance(result, OSError):
        raise result
    return result


UnitToClaim = tuple[str, str, Sequence[str], Sequence[str]]  # token, key, documents, sidecars


def claim_token(token: str, key: str, documents: Sequence[str], sidecars: Sequence[str]) -> str:
    """The token under which a unit is claimed: marked SINGLE when its claim needs no manifest."""
    return token + SINGLE if _is_single(key, documents, sidecars) else token


def _is_single(key: str, documents: Sequence[str], sidecars: Sequence[str]) -> bool:
    # Claimed under its own name only when that name is valid text (display_name changes no byte).
    return not sidecars and list(documents) == [key] and display_name(key) == key


def claim_all(folder: Path, units: Sequence[UnitToClaim]) -> list[Claim | None | OSError]:
    """Claim several units of ``folder`` with one set of fsyncs; for each, its Claim, None (its
    decisive file is gone), or the OSError that kept it in the folder.

    One fsync of the claim area and of the folder covers every rename of the batch: a burst of
    20 000 files otherwise costs 60 000 fsyncs (issue 7).
    """
    results: list[Claim | None | OSError] = []
    for token, key, documents, sidecars in units:
        try:
            results.append(_move_in(folder, token, key, documents, sidecars))
        except OSError as exc:
            results.append(exc)
    claims = [r for r in results if isinstance(r, Claim)]
    if not claims:
        return results
    # Durable before the job is journaled: after a power cut the file must not reappear in the
    # folder while the journal already holds a job for it (it would be taken twice).
    try:
        if len(claims) < _SYNCFS_FROM or not sync_file_system(folder):
            for c in claims:
                fsync_dir(c.dir)
            fsync_dir(folder / CLAIM_AREA)
            fsync_dir(folder)
    except OSError as exc:  # not durable: none of them may be journaled (the rescan recovers them)
        return [exc if isinstance(r, Claim) else r for r in results]
    return results


# From this many claims in a batch on, one syncfs(2) replaces an fsync per claim directory: each
# of those is a flush of the disk's cache (0.2–2 ms here), and a burst has thousands.
_SYNCFS_FROM = 16
def _move_in(folder: Path, token: str, key: str, documents: Sequence[str], sidecars: Sequence[str]) -> Claim | None:
    directory = folder / CLAIM_AREA / token
    directory.mkdir(parents=True)
    order = [key] + [n for n in [*documents, *sidecars] if n != key]
    docs = set(documents)
    files, used = [], set()
    for original in order:
        claimed = _unique(display_name(original), used)
        files.append(ClaimedFile(original, claimed, original in docs))
    planned = Claim(folder, directory, tuple(files), key)
    # Not fsynced on its own: the fsyncs in claim_all make the names durable, and a manifest lost
    # in a power cut is survived (read_claim falls back to the names in the claim).
    single = token.endswith(SINGLE) and _is_single(key, documents, sidecars)
    if not single:
        _write_manifest(planned)
    taken: list[ClaimedFile] = []
    for f in planned.files:
        try:
            os.rename(folder / f.original, directory / f.claimed)
        except FileNotFoundError:
            if f.original == key:
                release(directory)
                return None
            continue  # a sidecar deleted in the meantime: the job goes without it
        except OSError as exc:
            if f.original == key:
                release(directory)
                raise ClaimError(exc.errno, f"cannot take {display_name(key)}: {exc.strerror}") from None
            continue
        taken.append(f)
    result = Claim(folder, directory, tuple(taken), key)
    if len(taken) != len(planned.files):
        _write_manifest(result)
    return result


def _write_manifest(c: Claim, *, durably: bool = False) -> None:
    with open(c.dir / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(c.to_json(), f)
        if durably:
            f.flush()
            os.fsync(f.fileno())


def _unique(name: str, used: set[str]) -> str:
    base, ext = split_name(name)
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{base} ({n}){ext}"
    used.add(candidate)
    return candidate


def read_claim(directory: Path) -> Claim | None:
    """The claim as its manifest describes it. Without a readable manifest (lost in a power cut)
    the files found in it are returned under their claimed names, all as documents, so that they
    can be put back into the folder. None for an empty directory."""
    try:
        data = json.loads((directory / MANIFEST).read_bytes())
        return Claim.from_json(directory, data)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        names = sorted(p.name for p in directory.iterdir() if p.name not in (MANIFEST, REFUSAL, CONVERTED_DIR))
    except OSError:
        return None
    if not names:
        return None
    folder = directory.parent.parent.parent  # FOLDER/.faxbridge/processing/<token>
    found = tuple(ClaimedFile(n, n, True) for n in names)
    # A single-document claim is complete as found; any other claim without its manifest can
    # only be put back (a sidecar may be missing from it).
    single = directory.name.endswith(SINGLE) and len(names) == 1
    return Claim(folder, directory, found, names[0], complete=single)


def release(directory: Path) -> None:
    """Forget a claim whose files are all gone (moved on, or never taken)."""
    try:
        # Converted PDFs still here belong to a unit refused after converting: made again if needed.
        shutil.rmtree(directory / CONVERTED_DIR, ignore_errors=True)
        (directory / MANIFEST).unlink(missing_ok=True)
        (directory / REFUSAL).unlink(missing_ok=True)
        directory.rmdir()
    except OSError:
        pass


def write_refusal(c: Claim, intent: dict[str, str]) -> None:
    """Record, durably, that the claim ``c`` is being refused (see REFUSAL)."""
    if not (c.dir / MANIFEST).exists():
        # Once its document is in failed/, a single-document claim could not be told from an
        # empty one: a crash then would leave the document there without its error file.
        _write_manifest(c, durably=True)
    # Written in place: a torn file reads as no refusal, and the unit is simply refused again.
    with open(c.dir / REFUSAL, "w", encoding="utf-8") as f:
        json.dump(intent, f)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(c.dir)


def read_refusal(directory: Path) -> dict[str, str] | None:
    """The refusal begun for this claim before a crash, if any."""
    try:
        data = json.loads((directory / REFUSAL).read_bytes())
    except (OSError, ValueError):
        return None
    keys = ("failed_dir", "suffix", "reason", "action")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
        return None
    return data


def put_back(c: Claim) -> list[str]:
    """Undo an unfinished claim: its files return to the folder (never over a newer file).

    Returns the names that could not go back (left in the claim, reported by the caller)."""
    stuck = []
    for f in c.files:
        src = c.path(f)
        if not os.path.lexists(src):
            continue
        target = c.folder / f.original
        if os.path.lexists(target):
            stuck.append(f.original)
            continue
        os.rename(src, target)
    fsync_dir(c.folder)
    if not stuck:
        release(c.dir)
    return stuck


def present(c: Claim) -> bool:
    """The claim is as it was made: its manifest was read and all its files are still in it."""
    return c.complete and all(os.path.lexists(c.path(f)) for f in c.files)


# -- placing in sent/ and failed/ ---------------------------------------------------------


def report_name(claim_stem: str, suffix: str, kind: str) -> str:
    ending = {"report": REPORT_SUFFIX, "error": ERROR_SUFFIX, "send_report": SEND_REPORT_SUFFIX}[kind]
    return f"{claim_stem}{suffix}{ending}"


def choose_suffix(
    target: Path, originals: Sequence[str], claim_stem: str, fallback: str, reserved: set[str] | None = None
) -> str:
    """"" or " (2)", " (3)" … so that none of the unit's names (nor its reports) exists in target,
    nor is in ``reserved`` (names chosen for other units of a batch; the chosen ones are added)."""
    taken = reserved if reserved is not None else set()
    for n in range(1, 1000):
        suffix = "" if n == 1 else f" ({n})"
        names = [with_suffix(o, suffix) for o in originals]
        names += [report_name(claim_stem, suffix, kind) for kind in ("report", "error", "send_report")]
        if not any(name in taken or os.path.lexists(target / name) for name in names):
            taken.update(names)
            return suffix
    return f" ({fallback})"


def move_file(src: Path, dst: Path) -> None:
    """rename(2), or copy + fsync + rename + unlink when sent/ is on another file system."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    # A fixed temporary name: a copy cut short by a crash is overwritten when the move is retried.
    tmp = temporary_path(dst)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.unlink(src)


def move_all(moves: Sequence[tuple[Sequence[Path], Path]], touched: set[Path] | None = None) -> list[Path]:
    """Move each file from the first of its candidate places that holds it to its destination.

    A file found in none of them but at its destination was moved by an earlier attempt (a retry
    after a crash). Returns the destinations of files found nowhere. The folders moved into are
    fsynced before returning, or added to ``touched`` for the caller to fsync (once for a batch)."""
    lost = []
    deferred = touched is not None
    touched = touched if touched is not None else set()
    for sources, dst in moves:
        src = next((s for s in sources if s != dst and os.path.lexists(s)), None)
        if src is not None:
            if os.path.lexists(dst):  # someone else's file: never overwrite it
                raise FileExistsError(errno.EEXIST, "already exists", str(dst))
            dst.parent.mkdir(parents=True, exist_ok=True)
            move_file(src, dst)
            touched.add(dst.parent)
        elif not os.path.lexists(dst):
            lost.append(dst)
    if not deferred:
        for folder in touched:
            fsync_dir(folder)
    return lost
