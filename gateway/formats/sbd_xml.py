"""The SBD as XML: header in the SBDH namespace, the business message beside it.

We write `CorrelationInformation` inside a scope (the element the SBDH schema substitutes for its
abstract `ScopeInformation`); the reference writes `ScopeInformation` directly, which we accept too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lxml import etree

from gateway.formats.business import business_type, message_from_xml, message_to_xml, unregistered_problem
from gateway.formats.sbd import (
    CONVERSATION_SCOPE,
    HEADER_VERSION,
    SbdFormatError,
    Scope,
    StandardBusinessDocument,
    format_datetime,
    parse_datetime,
    party_from_wire,
    party_value,
    sbd_problems,
    validate_sbd,
)
from gateway.identifiers import ISO6523_AUTHORITY
from gateway.xmlsafe import parse_bytes

SBDH_NS = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
_SOURCE = "The SBD (XML)"


def _q(name: str) -> str:
    return f"{{{SBDH_NS}}}{name}"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _q(name))
    if text is not None:
        child.text = text
    return child


def _scope(
    parent: etree._Element, scope_type: str, instance: str | None, identifier: str | None, deadline: datetime | None
) -> None:
    scope = _sub(parent, "Scope")
    _sub(scope, "Type", scope_type)
    _sub(scope, "InstanceIdentifier", instance or "")  # required by the schema, even for SenderRef
    if identifier is not None:
        _sub(scope, "Identifier", identifier)
    if deadline is not None:
        correlation = _sub(scope, "CorrelationInformation")
        _sub(correlation, "ExpectedResponseDateTime", format_datetime(deadline))


def to_xml(sbd: StandardBusinessDocument) -> bytes:
    validate_sbd(sbd)
    root = etree.Element(_q("StandardBusinessDocument"), nsmap={"sbdh": SBDH_NS})
    header = _sub(root, "StandardBusinessDocumentHeader")
    _sub(header, "HeaderVersion", HEADER_VERSION)
    for role, value in (
        ("Sender", party_value(sbd.sender, sbd.sender_on_behalf_of)),
        ("Receiver", party_value(sbd.receiver)),
    ):
        ident = _sub(_sub(header, role), "Identifier", value)
        ident.set("Authority", ISO6523_AUTHORITY)
    doc_id = _sub(header, "DocumentIdentification")
    _sub(doc_id, "Standard", sbd.standard)
    _sub(doc_id, "TypeVersion", sbd.type_version)
    _sub(doc_id, "InstanceIdentifier", sbd.message_id)
    _sub(doc_id, "Type", sbd.message_type)
    _sub(doc_id, "CreationDateAndTime", format_datetime(sbd.created))
    scopes = _sub(header, "BusinessScope")
    _scope(scopes, CONVERSATION_SCOPE, sbd.conversation_id, sbd.process, sbd.expected_response)
    for extra in sbd.extra_scopes:
        _scope(scopes, extra.type, extra.instance_identifier, extra.identifier, extra.expected_response)
    try:
        root.append(message_to_xml(sbd.message_type, sbd.business_message))
    except ValueError as exc:
        raise SbdFormatError(_SOURCE, [f"{sbd.message_type}: {exc}"]) from exc
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return element.findall(_q(name))


def _one(element: etree._Element, name: str, path: str, problems: list[str]) -> etree._Element | None:
    found = _children(element, name)
    if len(found) != 1:
        problems.append(f"{path}/{name}: required once, found {len(found)}")
        return None
    return found[0]


def _text(
    element: etree._Element | None, name: str, path: str, problems: list[str], required: bool = True
) -> str | None:
    if element is None:
        return None
    found = _children(element, name)
    if not found:
        if required:
            problems.append(f"{path}/{name}: required element is missing")
        return None
    return (found[0].text or "").strip()


def from_xml(data: bytes, *, normalise_retired: bool = False) -> StandardBusinessDocument:
    root = parse_bytes(data, source="SBD").getroot()
    if root.tag != _q("StandardBusinessDocument"):
        raise SbdFormatError(
            _SOURCE, [f"the root element must be StandardBusinessDocument in {SBDH_NS}, not {root.tag}"]
        )
    problems: list[str] = []
    hp = "StandardBusinessDocumentHeader"
    header = _one(root, hp, "", problems)
    if header is None:
        raise SbdFormatError(_SOURCE, problems)
    version = _text(header, "HeaderVersion", hp, problems)
    if version is not None and version != HEADER_VERSION:
        problems.append(f"{hp}/HeaderVersion: must be {HEADER_VERSION!r}, not {version!r}")
    parties: dict[str, tuple[Any, Any]] = {}
    for role in ("Sender", "Receiver"):
        found = _children(header, role)
        if len(found) != 1:
            problems.append(f"{hp}/{role}: exactly one {role.lower()} is allowed, found {len(found)}")
            parties[role] = (None, None)
            continue
        value = _text(found[0], "Identifier", f"{hp}/{role}", problems)
        parties[role] = party_from_wire(value, f"{hp}/{role}/Identifier", role.lower(), normalise_retired, problems)
    dp = f"{hp}/DocumentIdentification"
    doc_id = _one(header, "DocumentIdentification", hp, problems)
    standard = _text(doc_id, "Standard", dp, problems)
    type_version = _text(doc_id, "TypeVersion", dp, problems)
    message_id = _text(doc_id, "InstanceIdentifier", dp, problems)
    type_name = _text(doc_id, "Type", dp, problems)
    created_text = _text(doc_id, "CreationDateAndTime", dp, problems)
    created = parse_datetime(created_text, f"{dp}/CreationDateAndTime", problems) if created_text is not None else None
    conversation, extra_scopes = _scopes(header, hp, problems)
    business = _business(root, type_name, problems)
    if problems:
        raise SbdFormatError(_SOURCE, problems)
    sbd = StandardBusinessDocument(
        sender=parties["Sender"][0],
        receiver=parties["Receiver"][0],
        message_id=message_id,
        conversation_id=conversation[0],
        process=conversation[1],
        message_type=type_name,
        standard=standard,
        type_version=type_version,
        created=created,
        expected_response=conversation[2],
        business_message=business,
        sender_on_behalf_of=parties["Sender"][1],
        extra_scopes=extra_scopes,
    )  # type: ignore[arg-type]  # every None above has added a problem
    problems = sbd_problems(sbd)
    if problems:
        raise SbdFormatError(_SOURCE, problems)
    return sbd


def _scopes(header: etree._Element, hp: str, problems: list[str]) -> tuple[tuple[Any, Any, Any], tuple[Scope, ...]]:
    conversation: tuple[Any, Any, Any] | None = None
    extra: list[Scope] = []
    business_scope = header.find(_q("BusinessScope"))
    for i, scope in enumerate(business_scope.findall(_q("Scope")) if business_scope is not None else []):
        sp = f"{hp}/BusinessScope/Scope[{i + 1}]"
        scope_type = _text(scope, "Type", sp, problems)
        instance = _text(scope, "InstanceIdentifier", sp, problems, required=scope_type == CONVERSATION_SCOPE)
        identifier = _text(scope, "Identifier", sp, problems, required=scope_type == CONVERSATION_SCOPE)
        deadline = None
        infos = _children(scope, "CorrelationInformation") + _children(scope, "ScopeInformation")
        if infos:
            text = _text(
                infos[0],
                "ExpectedResponseDateTime",
                f"{sp}/{etree.QName(infos[0]).localname}",
                problems,
                required=scope_type == CONVERSATION_SCOPE,
            )
            if text is not None:
                deadline = parse_datetime(text, f"{sp}/ExpectedResponseDateTime", problems)
        if scope_type == CONVERSATION_SCOPE:
            if conversation is not None:
                problems.append(f"{sp}: a second ConversationId scope; there must be exactly one")
                continue
            if not infos:
                problems.append(f"{sp}/CorrelationInformation/ExpectedResponseDateTime: required (the deadline)")
            conversation = (instance, identifier, deadline)
        elif scope_type is not None:
            extra.append(
                Scope(
                    type=scope_type,
                    instance_identifier=instance or None,
                    identifier=identifier,
                    expected_response=deadline,
                )
            )
    if conversation is None:
        problems.append(f"{hp}/BusinessScope: a Scope of Type ConversationId is required")
        conversation = (None, None, None)
    return conversation, tuple(extra)


def _business(root: etree._Element, type_name: str | None, problems: list[str]) -> Any:
    others = [c for c in root if isinstance(c.tag, str) and c.tag != _q("StandardBusinessDocumentHeader")]
    if len(others) != 1:
        problems.append(
            f"StandardBusinessDocument: exactly one business message element must follow the header, "
            f"found {len(others)}"
        )
        return None
    element = others[0]
    name = etree.QName(element).localname
    if type_name is None:
        return None
    if name != type_name:
        problems.append(f"{name}: the business message element must be named after the type ({type_name!r})")
        return None
    registered = business_type(type_name)
    if registered is None:
        problems.append(f"{name}: {unregistered_problem(type_name)}")
        return None
    return message_from_xml(registered.cls, element, name, problems)
