"""A received fax as a mail: a short text with the PDF (or the TIFF), queued once per FaxId on the relay."""

from __future__ import annotations

import asyncio
import datetime as dt
import unicodedata
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from faxbridge.edges.inbox.files import received_utc
from faxbridge.inbound import Destination
from faxbridge.model import InboundFax


def fax_message(fax: InboundFax, tif: Path, mail_to: tuple[str, ...], sender: str,
                tz: dt.tzinfo | None = None) -> EmailMessage:
    """The mail of a received fax: a short text, and the PDF if there is one, else the TIFF.
    Reads the PDF from disk: call in a worker thread."""
    received = received_utc(fax)
    when = received.astimezone(tz).strftime("%Y-%m-%d %H:%M") if received else "just now"
    sender_text = _header_text(fax.originator) or "an unknown sender"
    if fax.remote_id:
        sender_text += f" ({_header_text(fax.remote_id)})"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(mail_to)
    message["Subject"] = f"Fax from {sender_text}, {fax.pages} page(s)"
    message.set_content(
        f"A fax for {_header_text(fax.called_number) or 'your number'} arrived at {when}:\n"
        f"from {sender_text}, {fax.pages} page(s).\n\n"
        f"It is stored as {tif}.\n"
    )
    pdf = tif.with_suffix(".pdf")
    if pdf.is_file():
        message.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    else:
        message.add_attachment(fax.image, maintype="image", subtype="tiff", filename=tif.name)
    return message


def _header_text(value: str) -> str:
    """A sender-chosen value safe for a mail header: no line breaks or other control characters."""
    return " ".join("".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in value).split())


class FaxMailer:
    """The core's MailFax: queues a fax's mail with the daemon's relay, once per FaxId."""

    def __init__(self, relay: Any, sender: str) -> None:
        self.relay = relay
        self.sender = sender

    async def __call__(self, fax: InboundFax, tif: Path, dest: Destination) -> None:
        # Thread seam: reading the PDF and building the message.
        message = await asyncio.to_thread(fax_message, fax, tif, dest.mail_to, self.sender)
        # The key makes a second call after a crash return the mail already queued.
        await self.relay.send(message, key=f"inbound-fax:{fax.fax_id}")


def _mailer(services: Any) -> FaxMailer | None:
    inbound = services.config.inbound
    if not any(route.mail_to for route in inbound.routes):
        return None
    from faxbridge.relay import relay_for

    relay = relay_for(services)
    return None if relay is None else FaxMailer(relay, services.config.smtp.report_from)
