"""The SOAP envelope as the FAX.de Delphi server speaks it: reading requests, writing responses and faults.

The part names and types of every operation come from the bundled WSDL (faxbridge/faxde/IntfXMLWS.wsdl),
the same file the client uses, so the two cannot drift apart. Style is rpc/encoded: the body holds one
element named after the operation, its children are the parts; a response names the operation plus
"Response" and carries the out-parameters beside a part named "return", each with an xsi:type.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
SERVICE_NS = "urn:IntfXMLWS-IIntfXMLWS"
_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"


class SoapError(Exception):
    """A request the server cannot read; answered with a SOAP fault (``code`` Client or Server)."""

    def __init__(self, message: str, code: str = "Client") -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Operation:
    name: str
    inputs: tuple[tuple[str, str], ...]  # (part name, XSD type local name), in WSDL order
    outputs: tuple[tuple[str, str], ...]  # without "return"
    return_type: str


def wsdl_text() -> str:
    """The bundled WSDL, unchanged."""
    return resources.files("faxbridge.faxde").joinpath("IntfXMLWS.wsdl").read_text("utf-8")


def wsdl_for(endpoint: str) -> bytes:
    """The WSDL with its soap:address pointing at ``endpoint`` instead of ccs.fax.de."""
    text = re.sub(
        r'(<soap:address\s+location=)"[^"]*"', lambda m: m.group(1) + quoteattr(endpoint), wsdl_text(), count=1
    )
    return text.encode("utf-8")


@cache
def operations() -> dict[str, Operation]:
    """Every operation of the port type with its parts, read from the WSDL."""
    root = etree.fromstring(wsdl_text().encode("utf-8"))
    ns = {"w": _WSDL_NS}
    messages: dict[str, list[tuple[str, str]]] = {}
    for message in root.iterfind("w:message", ns):
        messages[message.get("name")] = [
            (part.get("name"), part.get("type").rpartition(":")[2]) for part in message.iterfind("w:part", ns)
        ]
    result = {}
    for op in root.iterfind("w:portType/w:operation", ns):
        request = messages[op.find("w:input", ns).get("message").rpartition(":")[2]]
        response = messages[op.find("w:output", ns).get("message").rpartition(":")[2]]
        outs = tuple(p for p in response if p[0] != "return")
        return_type = dict(response)["return"]
        result[op.get("name")] = Operation(op.get("name"), tuple(request), outs, return_type)
    return result


def _parser() -> etree.XMLParser:
    """A fresh parser per request: lxml parser objects must not be shared between threads.

    huge_tree: a 50 MB document is a ~67 MB base64 text node, beyond libxml2's default 10 MB limit.
    No entities, no DTD, no network: the body comes from whoever connects.
    """
    return etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True, load_dtd=False)


def parse_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, parameters) of a SOAP request; parameters typed per the WSDL, missing parts as empty.

    Strings are str ("" when missing), base64Binary is bytes (b""), int/long is int (None when missing or
    empty), dateTime is an aware datetime (None when missing). Elements are matched by local name only,
    so any namespace prefix and xsi:type annotation is accepted; SOAP-encoded href="#id" references are
    followed.
    """
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise SoapError(f"request is not XML: {exc}") from exc
    if etree.QName(root).localname != "Envelope":
        raise SoapError("request is not a SOAP envelope")
    body_element = next((c for c in root if _local(c) == "Body"), None)
    call = next((c for c in body_element if isinstance(c.tag, str)), None) if body_element is not None else None
    if call is None:
        raise SoapError("SOAP body is empty")
    name = _local(call)
    operation = operations().get(name)
    if operation is None:
        raise SoapError(f"No method named '{name}' is supported by interface 'IIntfXMLWS'")
    by_id = {e.get("id"): e for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    children: dict[str, Any] = {}
    for child in call:
        if isinstance(child.tag, str):
            children.setdefault(_local(child), child)
    params: dict[str, Any] = {}
    for part, xsd_type in operation.inputs:
        element = children.get(part)
        if element is not None and element.get("href", "").startswith("#"):
            element = by_id.get(element.get("href")[1:])
        text = None
        if element is not None and element.get(f"{{{XSI}}}nil") not in ("true", "1"):
            text = element.text or ""
        params[part] = _decode(part, xsd_type, text)
    return name, params


def _local(element: Any) -> str:
    return str(etree.QName(element).localname)


def _decode(part: str, xsd_type: str, text: str | None) -> Any:
    if xsd_type in ("int", "long"):
        if text is None or not text.strip():
            return None
        try:
            return int(text.strip())
        except ValueError:
            raise SoapError(f"'{text.strip()}' is not a valid integer value for {part}") from None
    if xsd_type == "base64Binary":
        if not text:
            return b""
        try:
            return binascii.a2b_base64(text)  # linear; skips the line breaks some clients insert
        except binascii.Error as exc:
            raise SoapError(f"{part} is not valid base64: {exc}") from None
    if xsd_type == "dateTime":
        if text is None or not text.strip():
            return None
        return parse_datetime(part, text.strip())
    return text or ""


def parse_datetime(part: str, text: str) -> dt.datetime:
    """xsd:dateTime → aware UTC datetime; a value without zone is taken as UTC (the spec says UTC)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SoapError(f"'{text}' is not a valid date and time for {part}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def format_datetime(value: dt.datetime) -> str:
    """Delphi's form: UTC with milliseconds and Z, e.g. 2017-06-01T15:53:06.000Z."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_ENVELOPE_OPEN = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:xsd="{XSD}" xmlns:xsi="{XSI}" xmlns:SOAP-ENC="{SOAP_ENC}">'
)
_ENVELOPE_CLOSE = "</SOAP-ENV:Envelope>"


def build_response(operation: str, code: int, outs: dict[str, Any]) -> bytes:
    """The response envelope: every out-part of the WSDL in order, then "return"; absent values as empty."""
    op = operations()[operation]
    pieces = [
        _ENVELOPE_OPEN,
        f'<SOAP-ENV:Body SOAP-ENV:encodingStyle="{SOAP_ENC}">',
        f'<NS1:{operation}Response xmlns:NS1="{SERVICE_NS}">',
    ]
    for part, xsd_type in op.outputs:
        pieces.append(_encode(part, xsd_type, outs.get(part)))
    pieces.append(_encode("return", op.return_type, code))
    pieces += [f"</NS1:{operation}Response>", "</SOAP-ENV:Body>", _ENVELOPE_CLOSE]
    return "".join(pieces).encode("utf-8")


def _encode(part: str, xsd_type: str, value: Any) -> str:
    if value is None and xsd_type == "dateTime":
        # Nothing to say (job still running, inbox empty): nil, which zeep reads as None.
        return f'<{part} xsi:nil="true"/>'
    if xsd_type in ("int", "long"):
        text = str(int(value or 0))
    elif xsd_type == "base64Binary":
        text = base64.b64encode(value or b"").decode("ascii")
    elif xsd_type == "dateTime":
        text = format_datetime(value)
    else:
        text = escape(str(value or ""))
    return f'<{part} xsi:type="xsd:{xsd_type}">{text}</{part}>'


def build_fault(message: str, code: str = "Server") -> bytes:
    """A SOAP 1.1 fault, sent with HTTP 500."""
    return (
        _ENVELOPE_OPEN
        + "<SOAP-ENV:Body><SOAP-ENV:Fault>"
        + f"<faultcode>SOAP-ENV:{escape(code)}</faultcode>"
        + f"<faultstring>{escape(message)}</faultstring>"
        + "</SOAP-ENV:Fault></SOAP-ENV:Body>"
        + _ENVELOPE_CLOSE
    ).encode("utf-8")
