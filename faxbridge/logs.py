"""Logging set-up: one line per event, timestamps only on a terminal, secrets scrubbed from every record."""

from __future__ import annotations

import logging
import os
import sys
import threading

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Any log record containing ``value`` has it replaced by *** — whatever logger wrote it."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class SecretFilter(logging.Filter):
    """Formats the record once, scrubs it, and freezes the result into msg."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        cleaned = scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg, record.args = cleaned, None
        return True


def under_systemd() -> bool:
    """journald adds its own timestamps; JOURNAL_STREAM is set when stderr goes to it."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID")) and not sys.stderr.isatty()


def setup(level: str | int = "INFO", *, stream=None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_faxbridge", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._faxbridge = True  # type: ignore[attr-defined]
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd() else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(SecretFilter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # zeep's transport dumps whole envelopes (the password, documents) at DEBUG.
    logging.getLogger("zeep.transports").setLevel(logging.WARNING)
    # Libraries speak at INFO about routine things (every scheduler run, every SMTP connection);
    # their warnings still get through. With -v they say more, but never DEBUG: aiosmtpd's
    # mail.log shows AUTH exchanges at DEBUG.
    quiet = logging.INFO if root.level <= logging.DEBUG else logging.WARNING
    for noisy in ("aiohttp", "zeep", "apscheduler", "watchdog", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(quiet)
    if root.level > logging.DEBUG:
        handler.addFilter(_routine_scheduler_skips)
    # Image and PDF libraries describe the document they read at DEBUG (Pillow every TIFF tag's
    # value, the ImageDescription a sender wrote too): document contents stay out of the log.
    for reader in CONTENT_LOGGERS:
        logging.getLogger(reader).setLevel(logging.WARNING)


CONTENT_LOGGERS = ("PIL", "img2pdf", "pikepdf", "pypdf", "tzlocal")


def _routine_scheduler_skips(record: logging.LogRecord) -> bool:
    """APScheduler warns each time a periodic job is due while its last run is still going — for
    faxbridge routine (an inbound run fetching 200 faxes outlasts its interval; the next run
    simply follows), and a WARNING every 30 s would send an admin looking for a fault."""
    return not (record.name == "apscheduler.scheduler" and "maximum number of running instances" in record.msg)
