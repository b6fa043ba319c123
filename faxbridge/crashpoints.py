"""Named crash points: a test hook that kills the process at an exact step, as a power cut would.

Code that must survive a crash between two steps calls ``crash_point("inbound.after_rename")`` between
them. Nothing happens unless the environment variable ``FAXBRIDGE_CRASH_AT`` names that point:

    FAXBRIDGE_CRASH_AT=inbound.after_rename               # the first time the point is reached
    FAXBRIDGE_CRASH_AT=inbound.after_journal:3            # the third time
    FAXBRIDGE_CRASH_AT=inbound.after_rename,outbound.x:2  # any of several

The process then dies at once with exit status 137 (as after SIGKILL): no ``finally`` blocks, no atexit
handlers, no flushing of Python buffers, no journal close — only what was already fsynced survives.
A line naming the point is written to stderr first, so a test can tell a planned death from a bug.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

ENVIRONMENT_VARIABLE = "FAXBRIDGE_CRASH_AT"
EXIT_STATUS = 137  # 128 + SIGKILL, what a shell reports for a killed process

# Every point in the code, with the moment it stands for. The crash campaign (tests/chaos) dies at
# each of them; a test checks this table against the calls in the source.
POINTS: dict[str, str] = {
    "hotfolder.after_claim": "a document moved into its claim, not yet journaled",
    "hotfolder.before_refusal_move": "a refused document's fate recorded in its claim, not moved",
    "outbound.after_journal": "a job journaled (queued), the edge not yet told",
    "outbound.before_sendjob": "a job durably 'submitting', the SendJob request not sent",
    "faxde.during_sendjob": "the SendJob request half sent (its documents not yet)",
    "outbound.after_sendjob": "FAX.de accepted the job, its JobId not yet journaled",
    "outbound.after_submitted": "the JobId journaled, the edge's acceptance hook not run",
    "hotfolder.before_move": "placing in sent/ or failed/ journaled as intent, no file moved",
    "hotfolder.after_move": "the files in sent/ or failed/, not yet journaled as placed",
    "outbound.after_finished": "the job's end journaled, its report not written",
    "reports.during_write": "a report, notice or spooled mail fsynced under its temporary name",
    "hotfolder.after_report": "the report written, the claim not released nor journaled reported",
    "smtp.after_spool": "a mail written to the spool (made durable with its row), not journaled, no 250 sent",
    "smtp.before_250": "a mail spooled and journaled, the client not yet answered 250",
    "smtp.after_submit": "a mail's jobs journaled, the mail not yet marked processed",
    "smtp.after_processed": "a mail marked processed (its refusals reported), its status CSV not written",
    "relay.after_write": "a mail to send written to the outbox, not yet journaled",
    "relay.after_delivery": "a mail handed to the relay, not yet journaled as sent",
    "inbound.after_begin": "a received fax's file name journaled, nothing written",
    "inbound.after_link": "the TIFF linked to its name, its temporary name not yet removed",
    "inbound.after_rename": "the TIFF in place, no PDF, sidecar or index row yet",
    "inbound.after_files": "every file of the fax in place, not journaled as stored",
    "inbound.after_journal": "the fax journaled as stored, DeleteReceived not sent",
    "inbound.after_mail": "the fax's mail queued, DeleteReceived not sent",
    "inbound.after_delete": "DeleteReceived done, not yet journaled as deleted",
}

_hits: Counter[str] = Counter()
_lock = threading.Lock()
_parsed: tuple[str, dict[str, int]] = ("", {})


def crash_point(name: str) -> None:
    """Die here if FAXBRIDGE_CRASH_AT names this point (and this is the N-th hit); else do nothing."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE)
    if not spec:  # the common case: one dict lookup
        return
    targets = _targets(spec)
    if name not in targets:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
    if hit == targets[name]:
        os.write(2, f"faxbridge: crash point {name} reached (hit {hit}); exiting\n".encode())
        os._exit(EXIT_STATUS)


def parse(spec: str) -> dict[str, int]:
    """``"a,b:3"`` → ``{"a": 1, "b": 3}``: point name → the hit to die at (1-based)."""
    targets: dict[str, int] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, count = item.partition(":")
        try:
            nth = int(count) if count.strip() else 1
        except ValueError:
            raise ValueError(f"{ENVIRONMENT_VARIABLE}: {item!r}: expected NAME or NAME:N") from None
        if nth < 1:
            raise ValueError(f"{ENVIRONMENT_VARIABLE}: {item!r}: N counts from 1")
        targets[name.strip()] = nth
    return targets


def _targets(spec: str) -> dict[str, int]:
    global _parsed
    cached_spec, cached = _parsed
    if spec != cached_spec:
        cached = parse(spec)
        _parsed = (spec, cached)
    return cached


def reset() -> None:
    """Forget the hit counts (tests that use crash points in-process)."""
    with _lock:
        _hits.clear()
