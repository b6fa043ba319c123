"""Log set-up: what reaches the log, and what is routine noise."""

from __future__ import annotations

import io
import logging

import pytest

from faxbridge import logs


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    for handler in list(root.handlers):
        if getattr(handler, "_faxbridge", False):
            root.removeHandler(handler)
    root.setLevel(saved[0])
    for handler in saved[1]:
        if handler not in root.handlers:
            root.addHandler(handler)


@pytest.mark.parametrize("level, shown", [("INFO", False), ("DEBUG", True)])
def test_a_skipped_overlapping_scheduler_run_is_no_warning(restore_logging, level: str, shown: bool) -> None:
    stream = io.StringIO()
    logs.setup(level, stream=stream)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    scheduler_log.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)',
                          "inbound-fetch", 1)
    scheduler_log.warning("Run time of job %s was missed by %s", "inbound-fetch", "0:00:05")
    out = stream.getvalue()
    assert ("maximum number of running instances" in out) is shown
    assert "was missed by" in out  # other scheduler warnings still get through
