"""Secrets and document contents stay out of everything faxbridge writes for people to read, even
with DEBUG logging: the FAX.de password, the relay password, SMTP AUTH passwords."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from faxbridge import logs
from faxbridge.adapters.inbox import tiff_to_pdf
from faxbridge.simulator.samples import make_tiff


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.setup("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_faxbridge", False)]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_reading_a_received_fax_at_debug_level_logs_nothing_of_its_content(debug_log: io.StringIO) -> None:
    # Regression (issue 8 campaign): at DEBUG, Pillow logged every TIFF tag of every received fax
    # it converted to PDF, the sender's ImageDescription among them.
    tiff_to_pdf(make_tiff(2, tag="CONTENT-OF-THE-FAX"))
    logging.getLogger("faxbridge.test").debug("the handler is live")
    assert "the handler is live" in debug_log.getvalue()
    assert "CONTENT-OF-THE-FAX" not in debug_log.getvalue()
