"""The business messages that sit beside the SBD header, and their JSON/XML codecs.

Each message is a frozen dataclass whose fields name their wire key in `metadata`. Keys we do
not model are kept in `extra` so that a message read from a peer is written back unchanged.
XML carries no JSON types: free-form values (`extra`, nested objects) come back as strings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

BUSINESS_NS = "urn:no:difi:meldingsutveksling:2.0"  # the reference's namespace for business messages

RECEIPT_TYPES = ("OK", "WARNING", "ERROR", "NOTSUPPORTED")
STATUS_VALUES = ("MOTTATT", "LEVERT")
SECURITY_LEVELS = (3, 4)


def _wire(key: str, kind: Any = "str", default: Any = None) -> Any:
    """A field named `key` on the wire. kind: str | int | bool | obj (a JSON object) | any | a dataclass."""
    return field(default=default, metadata={"wire": key, "kind": kind})


def _wire_list(key: str, item: type) -> Any:
    return field(default=(), metadata={"wire": key, "kind": "list", "item": item})


def _extra() -> Any:
    return field(default_factory=dict, metadata={"extra": True})


@dataclass(frozen=True)
class DpvSettings:
    varsel_type: str | None = _wire("varselType")
    varsel_transport_type: str | None = _wire("varselTransportType")
    varsel_tekst: str | None = _wire("varselTekst")
    taushetsbelagt_varsel_tekst: str | None = _wire("taushetsbelagtVarselTekst")
    dager_til_svarfrist: int | None = _wire("dagerTilSvarfrist", "int")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class DpfSettings:
    forsendelse_type: str | None = _wire("forsendelseType")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class KvitteringMessage:
    code: str | None = _wire("code")
    text: str | None = _wire("text")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class Arkivmelding:
    sikkerhetsnivaa: int | None = _wire("sikkerhetsnivaa", "int")
    hoveddokument: str | None = _wire("hoveddokument")
    dpv: DpvSettings | None = field(default=None, metadata={"wire": "dpv", "kind": DpvSettings})
    dpf: DpfSettings | None = field(default=None, metadata={"wire": "dpf", "kind": DpfSettings})
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class ArkivmeldingKvittering:
    receipt_type: str = _wire("receiptType", default="OK")
    related_to_message_id: str | None = _wire("relatedToMessageId")
    messages: tuple[KvitteringMessage, ...] = _wire_list("messages", KvitteringMessage)
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class Status:
    status: str = _wire("status", default="MOTTATT")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class Avtalt:
    identifier: str | None = _wire("identifier")
    content: Any = field(default=None, metadata={"wire": "content", "kind": "any"})
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class Digital:
    """DPI digital post; NextMove keys modelled, Corner 2 keys (avsender, mottaker, …) kept in extra."""

    sikkerhetsnivaa: int | None = _wire("sikkerhetsnivaa", "int")
    hoveddokument: str | None = _wire("hoveddokument")
    avsender_id: str | None = _wire("avsenderId")
    faktura_referanse: str | None = _wire("fakturaReferanse")
    tittel: str | None = _wire("tittel")
    spraak: str | None = _wire("spraak")
    digital_post_info: Mapping[str, Any] | None = _wire("digitalPostInfo", "obj")
    varsler: Mapping[str, Any] | None = _wire("varsler", "obj")
    metadata_filer: Mapping[str, Any] | None = _wire("metadataFiler", "obj")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class DigitalDpv:
    tittel: str | None = _wire("tittel")
    sammendrag: str | None = _wire("sammendrag")
    innhold: str | None = _wire("innhold")
    extra: Mapping[str, Any] = _extra()


@dataclass(frozen=True)
class Print:
    hoveddokument: str | None = _wire("hoveddokument")
    avsender_id: str | None = _wire("avsenderId")
    faktura_referanse: str | None = _wire("fakturaReferanse")
    mottaker: Mapping[str, Any] | None = _wire("mottaker", "obj")
    utskriftsfarge: str | None = _wire("utskriftsfarge")
    posttype: str | None = _wire("posttype")
    retur: Mapping[str, Any] | None = _wire("retur", "obj")
    extra: Mapping[str, Any] = _extra()


BusinessMessage = Arkivmelding | ArkivmeldingKvittering | Status | Avtalt | Digital | DigitalDpv | Print

DOCUMENT_TYPES: dict[str, str] = {
    "arkivmelding": "urn:no:difi:arkivmelding:xsd::arkivmelding",
    "arkivmelding_kvittering": "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering",
    "status": "urn:no:difi:eformidling:xsd::status",
    "avtalt": "urn:no:difi:avtalt:xsd::avtalt",
    "digital": "urn:no:difi:digitalpost:xsd:digital::digital",
    "digital_dpv": "urn:no:difi:digitalpost:xsd:digital::digital_dpv",
    "print": "urn:no:difi:digitalpost:xsd:fysisk::print",
}
# The DPI "Corner 2" form of the same messages, as the DPI channel writes them.
DPI_DOCUMENT_TYPES: dict[str, str] = {
    "digital": "urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost"
    "##urn:fdc:digdir.no:2020:innbyggerpost:schema:digital::1.0",
    "utskrift": "urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost"
    "##urn:fdc:digdir.no:2020:innbyggerpost:schema:utskrift::1.0",
}

MESSAGE_CLASSES: dict[str, type] = {
    "arkivmelding": Arkivmelding,
    "arkivmelding_kvittering": ArkivmeldingKvittering,
    "status": Status,
    "avtalt": Avtalt,
    "digital": Digital,
    "digital_dpv": DigitalDpv,
    "print": Print,
    "utskrift": Print,
}
DEFAULT_TYPE_NAME: dict[type, str] = {
    Arkivmelding: "arkivmelding",
    ArkivmeldingKvittering: "arkivmelding_kvittering",
    Status: "status",
    Avtalt: "avtalt",
    Digital: "digital",
    DigitalDpv: "digital_dpv",
    Print: "print",
}


def type_from_standard(standard: str) -> str | None:
    """The business message name a standard URN implies: the part after `::`, or for the DPI
    Corner 2 form `…##urn:…:schema:<name>::<version>` the schema name."""
    if "##" in standard:
        match = re.search(r":schema:([^:]+)::[^:]+$", standard.split("##", 1)[1])
        return match.group(1) if match else None
    if "::" not in standard:
        return None
    return standard.rsplit("::", 1)[1] or None


# ---- JSON -------------------------------------------------------------------------------------


def message_to_dict(message: Any) -> dict[str, Any]:
    """The JSON object of a business message (or one of its nested settings)."""
    out: dict[str, Any] = {}
    extra: Mapping[str, Any] = {}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if f.metadata.get("extra"):
            extra = value
            continue
        if value is None:
            continue
        kind = f.metadata["kind"]
        if kind == "list":
            out[f.metadata["wire"]] = [message_to_dict(item) for item in value]
        elif dataclasses.is_dataclass(kind):
            out[f.metadata["wire"]] = message_to_dict(value)
        else:
            out[f.metadata["wire"]] = _plain(value)
    for key, value in extra.items():
        out.setdefault(key, _plain(value))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def message_from_dict(cls: type, obj: Any, path: str, problems: list[str]) -> Any:
    """Build `cls` from a JSON object, adding one line per problem (named by JSON path)."""
    if not isinstance(obj, dict):
        problems.append(f"{path}: must be a JSON object, not {type(obj).__name__}")
        return None
    known = {f.metadata["wire"]: f for f in dataclasses.fields(cls) if "wire" in f.metadata}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in obj.items():
        f = known.get(key)
        if f is None:
            extra[key] = raw
            continue
        if raw is None:
            continue
        values[f.name] = _convert_json(f.metadata, raw, f"{path}.{key}", problems)
    return cls(**values, extra=extra)


def _convert_json(meta: Mapping[str, Any], raw: Any, path: str, problems: list[str]) -> Any:
    kind = meta["kind"]
    if kind == "str":
        if not isinstance(raw, str):
            problems.append(f"{path}: must be a string, not {raw!r}")
        return str(raw)
    if kind == "int":
        # the docs' JSON schema writes sikkerhetsnivaa as "3", the reference as 3: accept both
        if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit())):
            problems.append(f"{path}: must be a whole number, not {raw!r}")
            return None
        return int(raw)
    if kind == "obj":
        if not isinstance(raw, dict):
            problems.append(f"{path}: must be a JSON object, not {raw!r}")
        return raw
    if kind == "list":
        if not isinstance(raw, list):
            problems.append(f"{path}: must be a JSON array, not {raw!r}")
            return ()
        return tuple(message_from_dict(meta["item"], item, f"{path}[{i}]", problems) for i, item in enumerate(raw))
    if dataclasses.is_dataclass(kind):
        return message_from_dict(kind, raw, path, problems)
    return raw  # "any"


# ---- XML --------------------------------------------------------------------------------------

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")


def message_to_xml(type_name: str, message: Any) -> etree._Element:
    """The business message as `<type xmlns="urn:no:difi:meldingsutveksling:2.0">`, fields unqualified
    like the reference's JAXB classes."""
    element = etree.Element(f"{{{BUSINESS_NS}}}{type_name}", nsmap={None: BUSINESS_NS})
    _json_into(element, message_to_dict(message))
    return element


def _json_into(parent: etree._Element, obj: Mapping[str, Any]) -> None:
    for key, value in obj.items():
        if not _XML_NAME.match(key):
            raise ValueError(f"the key {key!r} cannot be written as an XML element name")
        for item in value if isinstance(value, list) else [value]:
            child = etree.SubElement(parent, key)
            if isinstance(item, dict):
                _json_into(child, item)
            elif isinstance(item, bool):
                child.text = "true" if item else "false"
            elif item is not None:
                child.text = str(item)


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _xml_to_json(element: etree._Element) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return element.text or ""
    out: dict[str, Any] = {}
    for child in children:
        value = _xml_to_json(child)
        name = _local(child)
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


def message_from_xml(cls: type, element: etree._Element, path: str, problems: list[str]) -> Any:
    """Build `cls` from the business element; fields matched by local name, in or out of a namespace."""
    known = {f.metadata["wire"]: f for f in dataclasses.fields(cls) if "wire" in f.metadata}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        f = known.get(name)
        if f is None:
            _add_repeated(extra, name, _xml_to_json(child))
            continue
        kind = f.metadata["kind"]
        child_path = f"{path}/{name}"
        if kind == "list":
            item = message_from_xml(f.metadata["item"], child, child_path, problems)
            values[f.name] = (*values.get(f.name, ()), item)
        elif dataclasses.is_dataclass(kind):
            values[f.name] = message_from_xml(kind, child, child_path, problems)
        elif kind == "obj":
            parsed = _xml_to_json(child)
            values[f.name] = parsed if isinstance(parsed, dict) else {}
        elif kind == "int":
            text = (child.text or "").strip()
            if not text.isdigit():
                problems.append(f"{child_path}: must be a whole number, not {text!r}")
            else:
                values[f.name] = int(text)
        elif kind == "any":
            values[f.name] = _xml_to_json(child)
        else:
            values[f.name] = child.text or ""
    return cls(**values, extra=extra)


def _add_repeated(target: dict[str, Any], name: str, value: Any) -> None:
    if name in target:
        previous = target[name]
        target[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
    else:
        target[name] = value


def message_problems(message: Any) -> list[str]:
    """Rules on the values of a business message (not its shape)."""
    problems: list[str] = []
    level = getattr(message, "sikkerhetsnivaa", None)
    if level is not None and level not in SECURITY_LEVELS:
        problems.append(f"sikkerhetsnivaa must be 3 or 4, not {level}")
    if isinstance(message, Status) and message.status not in STATUS_VALUES:
        problems.append(f"status must be one of {', '.join(STATUS_VALUES)}, not {message.status!r}")
    if isinstance(message, ArkivmeldingKvittering) and message.receipt_type not in RECEIPT_TYPES:
        problems.append(f"receiptType must be one of {', '.join(RECEIPT_TYPES)}, not {message.receipt_type!r}")
    if isinstance(message, Avtalt) and not message.identifier:
        problems.append("avtalt.identifier is required: the agreed message type both parties know")
    return problems
