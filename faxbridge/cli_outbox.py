"""Documents of ``faxbridge send``: copied into the state dir before the job is journaled.

The job must not depend on the caller's file: an ERP writes a temporary PDF, calls
``faxbridge send`` and deletes it. If FAX.de cannot take the job at once (down, an unknown
outcome to reconcile), the daemon sends it later, from this copy; the copy goes when the job is final.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

from faxbridge.fsutil import fsync_dir
from faxbridge.model import Document, Job

SOURCE = "cli"
OUTBOX = "cli-outbox"


def take_copies(state_dir: Path, paths: list[Path]) -> tuple[Path, list[Document]]:
    """Copy the documents, durably, into a folder of their own; returns it and the Documents
    (under their own names) that point into it. Blocking: call it before the event loop runs."""
    folder = Path(state_dir) / OUTBOX / uuid.uuid4().hex
    folder.mkdir(parents=True)  # as private as the state dir it is in (the daemon may be another user)
    try:
        documents = []
        for index, path in enumerate(paths, start=1):
            copy = folder / f"{index}{path.suffix.lower()}"  # its own name may repeat another's
            with open(path, "rb") as source, open(copy, "xb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
                os.fsync(target.fileno())
            documents.append(Document(path.name, copy))
        fsync_dir(folder)
        fsync_dir(folder.parent)
        fsync_dir(folder.parent.parent)  # the first send creates cli-outbox itself
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, documents


async def release(job: Job) -> None:
    """The reporter of CLI jobs: a final job's copies are no longer needed (idempotent)."""
    folder = job.meta.get("outbox")
    if folder:
        await asyncio.to_thread(shutil.rmtree, folder, True)
