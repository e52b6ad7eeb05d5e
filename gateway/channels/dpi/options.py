"""DPI's options block in the sidecar (`<dpi>`, options.xsd): the digital letter's title, language, effective
date, open receipt and notification; the print letter's addresses, colour, post type and returned-post handling;
and whether an info letter falls back to print. Read into `DpiOptions`, which routing (print fallback) and the
channel (the letter) take from the sidecar's options under the key "dpi"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from gateway.channels.kind import SidecarOptions
from gateway.xmlsafe import load_schema

SCHEMA_PATH = Path(__file__).with_name("options.xsd")
ELEMENT = "dpi"
OSLO = ZoneInfo("Europe/Oslo")
COLOURS = {"blackAndWhite": "SORT_HVIT", "colour": "FARGE"}
RETURNED_POST = {"returnToSender": "DIREKTE_RETUR", "shredAndNotify": "MAKULERING_MED_MELDING"}


@dataclass(frozen=True)
class PostalAddress:
    name: str
    lines: tuple[str, ...] = ()
    postal_code: str | None = None
    postal_area: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class DigitalOptions:
    title: str | None = None
    language: str | None = None
    effective: datetime | None = None
    open_receipt: bool | None = None
    notification_channels: str | None = None  # Email, Sms, EmailAndSms, None
    email_text: str | None = None
    sms_text: str | None = None


@dataclass(frozen=True)
class PrintOptions:
    receiver_address: PostalAddress | None = None
    return_address: PostalAddress | None = None
    colour: str | None = None  # SORT_HVIT or FARGE (Corner 2's words)
    post_type: str | None = None  # A or B
    returned_post: str | None = None  # DIREKTE_RETUR or MAKULERING_MED_MELDING


@dataclass(frozen=True)
class DpiOptions:
    print_fallback: bool = False
    digital: DigitalOptions | None = None
    print: PrintOptions | None = None


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    return parent.find(f"{{{etree.QName(parent).namespace}}}{name}")


def _text(parent: etree._Element | None, name: str) -> str | None:
    child = _child(parent, name)
    if child is None:
        return None
    text = "".join(child.itertext()).strip()
    return text or None


def _boolean(parent: etree._Element | None, name: str) -> bool | None:
    text = _text(parent, name)
    return None if text is None else text in ("true", "1")


def _address(element: etree._Element | None) -> PostalAddress | None:
    if element is None:
        return None
    namespace = etree.QName(element).namespace
    lines = tuple("".join(line.itertext()).strip() for line in element.findall(f"{{{namespace}}}addressLine"))
    return PostalAddress(_text(element, "name") or "", lines, _text(element, "postalCode"),
                         _text(element, "postalArea"), _text(element, "country"))


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=OSLO)


def read(block: etree._Element) -> DpiOptions:
    """The options of a `<dpi>` element that options.xsd accepted."""
    digital = _child(block, "digital")
    notification = _child(digital, "notification")
    printing = _child(block, "print")
    effective = _text(digital, "effectiveDate")
    colour, returned = _text(printing, "colour"), _text(printing, "returnedPost")
    language = _text(digital, "language")
    return DpiOptions(
        print_fallback=bool(_boolean(block, "printFallback")),
        digital=None if digital is None else DigitalOptions(
            title=_text(digital, "title"),
            language=language.upper() if language else None,
            effective=_moment(effective),
            open_receipt=_boolean(digital, "openReceipt"),
            notification_channels=_text(notification, "channels"),
            email_text=_text(notification, "emailText"),
            sms_text=_text(notification, "smsText"),
        ),
        print=None if printing is None else PrintOptions(
            receiver_address=_address(_child(printing, "receiverAddress")),
            return_address=_address(_child(printing, "returnAddress")),
            colour=COLOURS.get(colour or ""),
            post_type=_text(printing, "postType"),
            returned_post=RETURNED_POST.get(returned or ""),
        ),
    )


def _put(parent: etree._Element, name: str, value: object) -> etree._Element | None:
    if value is None:
        return None
    child = etree.SubElement(parent, f"{{{etree.QName(parent).namespace}}}{name}")
    child.text = str(value).lower() if isinstance(value, bool) else str(value)
    return child


def _put_address(parent: etree._Element, name: str, address: PostalAddress | None) -> None:
    if address is None:
        return
    element = etree.SubElement(parent, f"{{{etree.QName(parent).namespace}}}{name}")
    _put(element, "name", address.name)
    for line in address.lines:
        _put(element, "addressLine", line)
    _put(element, "postalCode", address.postal_code)
    _put(element, "postalArea", address.postal_area)
    _put(element, "country", address.country)


def write(options: DpiOptions, block: etree._Element) -> None:
    """`options` back into an empty `<dpi>` element, as `read` takes them."""
    if options.print_fallback:
        _put(block, "printFallback", True)
    if options.digital is not None:
        digital = etree.SubElement(block, f"{{{etree.QName(block).namespace}}}digital")
        d = options.digital
        _put(digital, "title", d.title)
        _put(digital, "language", d.language)
        _put(digital, "effectiveDate", d.effective.isoformat() if d.effective else None)
        _put(digital, "openReceipt", d.open_receipt)
        if d.notification_channels or d.email_text or d.sms_text:
            notification = etree.SubElement(digital, f"{{{etree.QName(block).namespace}}}notification")
            _put(notification, "channels", d.notification_channels)
            _put(notification, "emailText", d.email_text)
            _put(notification, "smsText", d.sms_text)
    if options.print is not None:
        printing = etree.SubElement(block, f"{{{etree.QName(block).namespace}}}print")
        p = options.print
        _put_address(printing, "receiverAddress", p.receiver_address)
        _put_address(printing, "returnAddress", p.return_address)
        _put(printing, "colour", {v: k for k, v in COLOURS.items()}.get(p.colour or ""))
        _put(printing, "postType", p.post_type)
        _put(printing, "returnedPost", {v: k for k, v in RETURNED_POST.items()}.get(p.returned_post or ""))


def business(options: DpiOptions) -> Mapping[str, Any]:
    """Nothing for an arkivmelding: the DPI channel reads its options from the message itself."""
    return {}


@cache
def schema() -> etree.XMLSchema:
    return load_schema(SCHEMA_PATH)



OPTIONS = SidecarOptions(element=ELEMENT, schema=SCHEMA_PATH, read=read, write=write, business=business)
