"""The business messages that sit beside the SBD header, their JSON/XML codecs, and the registry of the types an
SBD can carry.

Each message is a frozen dataclass whose fields name their wire key in `metadata`. Keys we do
not model are kept in `extra` so that a message read from a peer is written back unchanged.
XML carries no JSON types: free-form values (`extra`, nested objects) come back as strings.

The messages of the eFormidling processes themselves (arkivmelding, its receipt, status, avtalt) are here; a
channel brings its own (a letter type, its part of arkivmelding) and registers them: `register_business`, called by
gateway.channels.registry for every channel kind it knows. An SBD whose type nobody registered is refused, naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

BUSINESS_NS = "urn:no:difi:meldingsutveksling:2.0"  # the reference's namespace for business messages

RECEIPT_TYPES = ("OK", "WARNING", "ERROR", "NOTSUPPORTED")
STATUS_VALUES = ("MOTTATT", "LEVERT")
SECURITY_LEVELS = (3, 4)


def wire(key: str, kind: Any = "str", default: Any = None) -> Any:
    """A field named `key` on the wire. kind: str | int | bool | obj (a JSON object) | any | a dataclass."""
    return field(default=default, metadata={"wire": key, "kind": kind})


def wire_list(key: str, item: type) -> Any:
    return field(default=(), metadata={"wire": key, "kind": "list", "item": item})


def extra_field() -> Any:
    """The keys a message does not model, kept as read and written back."""
    return field(default_factory=dict, metadata={"extra": True})


def parts_field() -> Any:
    """The parts channels registered for this message (BusinessPart), by their wire key."""
    return field(default_factory=dict, metadata={"parts": True})


@dataclass(frozen=True)
class KvitteringMessage:
    code: str | None = wire("code")
    text: str | None = wire("text")
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class Arkivmelding:
    sikkerhetsnivaa: int | None = wire("sikkerhetsnivaa", "int")
    hoveddokument: str | None = wire("hoveddokument")
    # A channel's own settings for the message travel as a part under the channel's key (registered by it).
    parts: Mapping[str, Any] = parts_field()
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class ArkivmeldingKvittering:
    receipt_type: str = wire("receiptType", default="OK")
    related_to_message_id: str | None = wire("relatedToMessageId")
    messages: tuple[KvitteringMessage, ...] = wire_list("messages", KvitteringMessage)
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class Status:
    status: str = wire("status", default="MOTTATT")
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class Avtalt:
    identifier: str | None = wire("identifier")
    content: Any = field(default=None, metadata={"wire": "content", "kind": "any"})
    extra: Mapping[str, Any] = extra_field()


# Any registered business message (the four above, and the channels' own types).
BusinessMessage = Any

# ---- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessType:
    """A business message an SBD can carry: `name` is the SBD's type and its JSON key (XML element) beside the
    header, `cls` its dataclass, `standard` the document type URN a new SBD of it carries. `from_drop`, where the
    message is composed from a drop's documents alone (a letter), builds it from (security level, the main
    document's name, the title)."""

    name: str
    cls: type
    standard: str
    from_drop: Callable[[int | None, str | None, str], Any] | None = None


@dataclass(frozen=True)
class BusinessPart:
    """A channel's part of another business message: the key `key` in an `owner` message is read into `cls` and
    kept in the owner's `parts` (an unregistered key stays in `extra`, as any key we do not model)."""

    owner: type
    key: str
    cls: type


_TYPES: dict[str, BusinessType] = {}
_PARTS: dict[tuple[type, str], BusinessPart] = {}


def register_business(*items: BusinessType | BusinessPart) -> None:
    """Add business types and parts; the same item twice is one, another under a taken name an error (and then
    none of `items` is added)."""
    for item in items:
        table: dict[Any, Any] = _TYPES if isinstance(item, BusinessType) else _PARTS
        key = item.name if isinstance(item, BusinessType) else (item.owner, item.key)
        known = table.get(key)
        if known is not None and known != item:
            raise ValueError(f"the business message {key if isinstance(key, str) else key[1]!r} is registered "
                             f"already, as {known.cls.__name__}")
        if isinstance(item, BusinessPart) and not any(f.metadata.get("parts") for f in dataclasses.fields(item.owner)):
            raise ValueError(f"{item.owner.__name__} takes no parts; {item.key!r} cannot be registered as one")
    for item in items:
        if isinstance(item, BusinessType):
            _TYPES[item.name] = item
        else:
            _PARTS[(item.owner, item.key)] = item


def unregister_business(*items: BusinessType | BusinessPart) -> None:
    for item in items:
        if isinstance(item, BusinessType):
            if _TYPES.get(item.name) == item:
                del _TYPES[item.name]
        elif _PARTS.get((item.owner, item.key)) == item:
            del _PARTS[(item.owner, item.key)]


def business_type(name: str) -> BusinessType | None:
    """The registered type of that name (the SBD's type), None when no one registered it."""
    return _TYPES.get(name)


def business_type_names() -> tuple[str, ...]:
    return tuple(_TYPES)


def type_name_of(message: Any) -> str | None:
    """The type a new SBD gives `message`: the first registered for its class."""
    return next((kind.name for kind in _TYPES.values() if kind.cls is type(message)), None)


def document_type(name: str) -> str:
    """The standard (document type URN) of the business message `name`, "" when it is not registered."""
    kind = _TYPES.get(name)
    return kind.standard if kind else ""


def unregistered_problem(name: str) -> str:
    return (f"{name!r} is not a supported business message: no channel of this gateway registered it "
            f"(registered: {', '.join(_TYPES)})")


def _part_class(owner: type, key: str) -> type | None:
    part = _PARTS.get((owner, key))
    return part.cls if part else None


register_business(
    BusinessType("arkivmelding", Arkivmelding, "urn:no:difi:arkivmelding:xsd::arkivmelding"),
    BusinessType("arkivmelding_kvittering", ArkivmeldingKvittering,
                 "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering"),
    BusinessType("status", Status, "urn:no:difi:eformidling:xsd::status"),
    BusinessType("avtalt", Avtalt, "urn:no:difi:avtalt:xsd::avtalt"),
)


def type_from_standard(standard: str) -> str | None:
    """The business message name a standard URN implies: the part after `::`, or for a standard of the form
    `…##urn:…:schema:<name>::<version>` the schema name."""
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
        if f.metadata.get("parts"):
            out.update((key, message_to_dict(part)) for key, part in value.items())
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
    parts: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in obj.items():
        f = known.get(key)
        part = _part_class(cls, key) if f is None else None
        if part is not None:
            if raw is not None:
                parts[key] = message_from_dict(part, raw, f"{path}.{key}", problems)
            continue
        if f is None:
            extra[key] = raw
            continue
        if raw is None:
            continue
        values[f.name] = _convert_json(f.metadata, raw, f"{path}.{key}", problems)
    return _build(cls, values, parts, extra)


def _build(cls: type, values: dict[str, Any], parts: dict[str, Any], extra: dict[str, Any]) -> Any:
    if any(f.metadata.get("parts") for f in dataclasses.fields(cls)):
        return cls(**values, parts=parts, extra=extra)
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
    parts: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        f = known.get(name)
        part = _part_class(cls, name) if f is None else None
        if part is not None:
            parts[name] = message_from_xml(part, child, f"{path}/{name}", problems)
            continue
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
    return _build(cls, values, parts, extra)


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
