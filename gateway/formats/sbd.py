"""The Standard Business Document: the eFormidling envelope, read and written as JSON (the wire
form), with every rule checked in one place (`validate_sbd`); its XML form (SBDH namespace) is in
`sbd_xml`, which builds on this module (never the other way round).

Reading collects every problem it finds and raises one `SbdFormatError` that lists them, each
named by its JSON path (or XML element path), so whoever wrote the message can fix it in one go.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.errors import MessageFormatError, ValidationError
from gateway.formats.business import (
    Arkivmelding,
    ArkivmeldingKvittering,
    Avtalt,
    BusinessMessage,
    KvitteringMessage,
    Status,
    business_type,
    document_type,
    message_from_dict,
    message_problems,
    message_to_dict,
    type_from_standard,
    type_name_of,
    unregistered_problem,
)
from gateway.identifiers import (
    ISO6523_AUTHORITY,
    ORGNR_PREFIX,
    is_valid_fnr,
    orgnr_problem,
    parse_party_value,
    receiver_problem,
)

__all__ = [
    "ARKIVMELDING_PROCESS",
    "PROCESSES",
    "RESPONSE_PROCESS",
    "Arkivmelding",
    "ArkivmeldingKvittering",
    "Avtalt",
    "BusinessMessage",
    "KvitteringMessage",
    "SbdFormatError",
    "Scope",
    "StandardBusinessDocument",
    "Status",
    "format_datetime",
    "from_json",
    "new_sbd",
    "parse_datetime",
    "party_value",
    "to_json",
    "validate_sbd",
]

ARKIVMELDING_PROCESS = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
RESPONSE_PROCESS = "urn:no:difi:profile:arkivmelding:response:ver1.0"
ARKIVMELDING_AREAS = (
    "administrasjon",
    "helseSosialOgOmsorg",
    "kulturIdrettOgFritid",
    "naturOgMiljoe",
    "naeringsutvikling",
    "oppvekstOgUtdanning",
    "planByggOgGeodata",
    "skatterOgAvgifter",
    "tekniskeTjenester",
    "trafikkReiserOgSamferdsel",
    "taushetsbelagt",
)
PROCESSES: frozenset[str] = frozenset(
    [f"urn:no:difi:profile:arkivmelding:{area}:ver1.0" for area in ARKIVMELDING_AREAS]
    + [
        RESPONSE_PROCESS,
        "urn:no:difi:profile:avtalt:avtalt:ver1.0",
        "urn:no:difi:profile:digitalpost:info:ver1.0",
        "urn:no:difi:profile:digitalpost:vedtak:ver1.0",
    ]
)
CONVERSATION_SCOPE = "ConversationId"
HEADER_VERSION = "1.0"
ACCEPTED_AUTHORITIES = (ISO6523_AUTHORITY, "iso3166-1")  # the JSON schema names iso3166-1 for persons
DEFAULT_LIFETIME = timedelta(hours=24)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


class SbdFormatError(MessageFormatError):
    """An SBD breaks one or more rules; `problems` holds one readable line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = list(problems)
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(f"{source} has {count}:\n" + "\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True, kw_only=True)
class Scope:
    """A businessScope entry other than ConversationId: SenderRef, ReceiverRef, JournalpostId, …"""

    type: str
    instance_identifier: str | None = None
    identifier: str | None = None
    expected_response: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class StandardBusinessDocument:
    sender: str
    receiver: str
    message_id: str
    conversation_id: str
    process: str
    message_type: str
    standard: str
    type_version: str = "2.0"
    created: datetime
    expected_response: datetime | None
    business_message: BusinessMessage
    sender_on_behalf_of: str | None = None
    extra_scopes: tuple[Scope, ...] = ()


# ---- dates ------------------------------------------------------------------------------------


def parse_datetime(text: Any, where: str, problems: list[str]) -> datetime | None:
    """ISO 8601 with an offset (`Z` or `±hh:mm`), with or without fractions of a second."""
    if not isinstance(text, str):
        problems.append(f"{where}: must be a date-time string, not {text!r}")
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        problems.append(f"{where}: {text!r} is not an ISO 8601 date-time (write e.g. 2019-03-25T11:35:00+01:00)")
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        problems.append(f"{where}: {text!r} has no UTC offset; add one, e.g. +01:00 or Z")
        return None
    return moment


def format_datetime(moment: datetime) -> str:
    """Seconds, or milliseconds/microseconds when present; `Z` for UTC, else the offset."""
    spec = "seconds" if not moment.microsecond else "milliseconds" if not moment.microsecond % 1000 else "microseconds"
    text = moment.isoformat(timespec=spec)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# ---- building and checking --------------------------------------------------------------------


def new_sbd(
    *,
    sender: str,
    receiver: str,
    business_message: BusinessMessage,
    process: str,
    created: datetime,
    conversation_id: str | None = None,
    message_id: str | None = None,
    expected_response: datetime | None = None,
    sender_on_behalf_of: str | None = None,
    extra_scopes: tuple[Scope, ...] = (),
    message_type: str | None = None,
    standard: str | None = None,
    type_version: str = "2.0",
) -> StandardBusinessDocument:
    """A checked SBD; type and standard follow from the business message, ids are new UUIDs when not
    given, and the deadline defaults to `created` + 24 h."""
    type_name = message_type or type_name_of(business_message)
    if type_name is None:
        raise MessageFormatError(f"{type(business_message).__name__} is not a registered business message type")
    sbd = StandardBusinessDocument(
        sender=sender.removeprefix(ORGNR_PREFIX),
        receiver=receiver.removeprefix(ORGNR_PREFIX),
        message_id=message_id or str(uuid.uuid4()),
        conversation_id=conversation_id or str(uuid.uuid4()),
        process=process,
        message_type=type_name,
        standard=standard or document_type(type_name),
        type_version=type_version,
        created=created,
        expected_response=expected_response if expected_response is not None else created + DEFAULT_LIFETIME,
        business_message=business_message,
        sender_on_behalf_of=sender_on_behalf_of.removeprefix(ORGNR_PREFIX) if sender_on_behalf_of else None,
        extra_scopes=tuple(extra_scopes),
    )
    validate_sbd(sbd)
    return sbd


def sbd_problems(sbd: StandardBusinessDocument) -> list[str]:
    """Every rule `sbd` breaks, one readable line each (empty when it is fine)."""
    problems: list[str] = []
    sender_problem = orgnr_problem(sbd.sender)
    if sender_problem:
        problems.append(f"sender: {sender_problem}")
    if sbd.sender_on_behalf_of is not None:
        on_behalf_problem = orgnr_problem(sbd.sender_on_behalf_of)
        if on_behalf_problem:
            problems.append(f"sender (on behalf of): {on_behalf_problem}")
    problem = receiver_problem(sbd.receiver)
    if problem:
        problems.append(f"receiver: {problem}")
    for name, value in (("messageId", sbd.message_id), ("conversationId", sbd.conversation_id)):
        if not _UUID.match(value or ""):
            problems.append(f"{name}: {value!r} is not a UUID (write e.g. {uuid.UUID(int=0)})")
    if not sbd.process:
        problems.append("process: the ConversationId scope needs the process URN as its identifier")
    elif not sbd.process.startswith("urn:"):
        problems.append(f"process: {sbd.process!r} is not a URN (e.g. {ARKIVMELDING_PROCESS})")
    implied = type_from_standard(sbd.standard)
    if implied != sbd.message_type:
        problems.append(
            f"type {sbd.message_type!r} must equal the part of the standard after '::' "
            f"({sbd.standard!r} gives {implied!r})"
        )
    registered = business_type(sbd.message_type)
    if registered is None:
        problems.append(f"type {unregistered_problem(sbd.message_type)}")
    elif not isinstance(sbd.business_message, registered.cls):
        problems.append(
            f"type {sbd.message_type!r} does not match the business message {type(sbd.business_message).__name__}"
        )
    if not sbd.type_version:
        problems.append("typeVersion is required (e.g. 2.0)")
    if sbd.created.tzinfo is None:
        problems.append("creationDateAndTime must carry a UTC offset")
    if sbd.expected_response is None:
        problems.append("the ConversationId scope needs scopeInformation[0].expectedResponseDateTime (the deadline)")
    elif sbd.expected_response.tzinfo is None:
        problems.append("expectedResponseDateTime must carry a UTC offset")
    problems.extend(message_problems(sbd.business_message))
    return problems


def validate_sbd(sbd: StandardBusinessDocument) -> None:
    """Raise SbdFormatError listing every rule `sbd` breaks."""
    problems = sbd_problems(sbd)
    if problems:
        raise SbdFormatError("The SBD", problems)


# ---- JSON -------------------------------------------------------------------------------------

_HEADER = "standardBusinessDocumentHeader"
_HEADER_KEYS = ("headerVersion", "sender", "receiver", "documentIdentification", "businessScope")
_DOC_ID_KEYS = ("standard", "typeVersion", "instanceIdentifier", "type", "creationDateAndTime")
_SCOPE_KEYS = ("type", "instanceIdentifier", "identifier", "scopeInformation")


def party_value(identifier: str, on_behalf_of: str | None = None) -> str:
    if len(identifier) == 11:  # a person travels as the bare number
        return identifier
    value = ORGNR_PREFIX + identifier
    return f"{value}:{on_behalf_of}" if on_behalf_of else value


def _scope_json(scope_type: str, instance: str | None, identifier: str | None, deadline: datetime | None) -> dict:
    out: dict[str, Any] = {"type": scope_type}
    if instance is not None:
        out["instanceIdentifier"] = instance
    if identifier is not None:
        out["identifier"] = identifier
    if deadline is not None:
        out["scopeInformation"] = [{"expectedResponseDateTime": format_datetime(deadline)}]
    return out


def to_dict(sbd: StandardBusinessDocument) -> dict[str, Any]:
    """The SBD as the JSON object the reference writes (key order included)."""
    scopes = [_scope_json(CONVERSATION_SCOPE, sbd.conversation_id, sbd.process, sbd.expected_response)]
    scopes += [_scope_json(s.type, s.instance_identifier, s.identifier, s.expected_response) for s in sbd.extra_scopes]
    header = {
        "headerVersion": HEADER_VERSION,
        "sender": [
            {"identifier": {"value": party_value(sbd.sender, sbd.sender_on_behalf_of), "authority": ISO6523_AUTHORITY}}
        ],
        "receiver": [{"identifier": {"value": party_value(sbd.receiver), "authority": ISO6523_AUTHORITY}}],
        "documentIdentification": {
            "standard": sbd.standard,
            "typeVersion": sbd.type_version,
            "instanceIdentifier": sbd.message_id,
            "type": sbd.message_type,
            "creationDateAndTime": format_datetime(sbd.created),
        },
        "businessScope": {"scope": scopes},
    }
    return {_HEADER: header, sbd.message_type: message_to_dict(sbd.business_message)}


def to_json(sbd: StandardBusinessDocument) -> bytes:
    """The wire form (UTF-8 JSON); the SBD is validated first, so we never send a broken one."""
    validate_sbd(sbd)
    return json.dumps(to_dict(sbd), ensure_ascii=False, indent=2).encode("utf-8")


def _unknown_keys(obj: dict, allowed: tuple[str, ...], path: str, problems: list[str]) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            problems.append(f"{path}: unknown key {key!r}{hint}")


def _object(parent: dict, key: str, path: str, problems: list[str]) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        problems.append(
            f"{path}.{key}: required object is missing" if value is None else f"{path}.{key}: must be a JSON object"
        )
        return {}
    return value


def _string(parent: dict, key: str, path: str, problems: list[str], required: bool = True) -> str | None:
    value = parent.get(key)
    if value is None:
        if required:
            problems.append(f"{path}.{key}: required value is missing")
        return None
    if not isinstance(value, str):
        problems.append(f"{path}.{key}: must be a string, not {value!r}")
        return None
    return value


def _party(
    parties: Any, path: str, role: str, normalise_retired: bool, problems: list[str]
) -> tuple[str | None, str | None]:
    """(identifier, on-behalf-of) from a sender/receiver list of exactly one."""
    if not isinstance(parties, list) or len(parties) != 1:
        count = len(parties) if isinstance(parties, list) else "no list of"
        problems.append(f"{path}: exactly one {role} is allowed, found {count}")
        return None, None
    party = parties[0] if isinstance(parties[0], dict) else {}
    ident = _object(party, "identifier", f"{path}[0]", problems)
    where = f"{path}[0].identifier"
    authority = _string(ident, "authority", where, problems)
    if authority is not None and authority not in ACCEPTED_AUTHORITIES:
        problems.append(f"{where}.authority: {authority!r} is unknown; write {ISO6523_AUTHORITY!r}")
    value = _string(ident, "value", where, problems)
    return party_from_wire(value, f"{where}.value", role, normalise_retired, problems)


def party_from_wire(
    value: str | None, where: str, role: str, normalise_retired: bool, problems: list[str]
) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    value = value.strip()
    try:
        bare = parse_party_value(value, normalise_retired=normalise_retired)
    except ValidationError as exc:
        text = str(exc)
        if value.startswith("9908:"):
            text += f"; write {ORGNR_PREFIX}{value[5:].split(':')[0]} instead"
        problems.append(f"{where}: {text}")
        return None, None
    parts = value.split(":")
    on_behalf = parts[2] if len(parts) == 3 else None
    if len(parts) > 3 or (len(parts) == 2 and parts[0] not in ("0192", "9908")):
        problems.append(f"{where}: {value!r} is not a party value; write 0192:<orgnr> (or a bare person number)")
    if role == "sender" and is_valid_fnr(bare):
        problems.append(f"{where}: the sender must be an organisation number, not a person")
    return bare, on_behalf


def from_json(
    data: bytes, *, normalise_retired: bool = False, default_created: datetime | None = None
) -> StandardBusinessDocument:
    """Read and check a JSON SBD. `default_created` fills a missing creationDateAndTime (as the
    reference does for API clients); without it the field is required."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SbdFormatError("The SBD (JSON)", [f"not valid JSON: {exc}"]) from exc
    if not isinstance(doc, dict):
        raise SbdFormatError("The SBD (JSON)", ["the document must be a JSON object"])
    problems: list[str] = []
    header = _object(doc, _HEADER, "$", problems)
    hp = f"$.{_HEADER}"
    _unknown_keys(header, _HEADER_KEYS, hp, problems)
    version = _string(header, "headerVersion", hp, problems)
    if version is not None and version != HEADER_VERSION:
        problems.append(f"{hp}.headerVersion: must be {HEADER_VERSION!r}, not {version!r}")
    sender, on_behalf = _party(header.get("sender"), f"{hp}.sender", "sender", normalise_retired, problems)
    receiver, _ = _party(header.get("receiver"), f"{hp}.receiver", "receiver", normalise_retired, problems)
    doc_id = _object(header, "documentIdentification", hp, problems)
    dp = f"{hp}.documentIdentification"
    _unknown_keys(doc_id, _DOC_ID_KEYS, dp, problems)
    standard = _string(doc_id, "standard", dp, problems)
    type_version = _string(doc_id, "typeVersion", dp, problems)
    message_id = _string(doc_id, "instanceIdentifier", dp, problems)
    type_name = _string(doc_id, "type", dp, problems)
    if "creationDateAndTime" in doc_id or default_created is None:
        created = parse_datetime(doc_id.get("creationDateAndTime"), f"{dp}.creationDateAndTime", problems)
    else:
        created = default_created
    conversation, extra_scopes = _scopes_from_json(
        _object(header, "businessScope", hp, problems), f"{hp}.businessScope", problems
    )
    business = None
    others = [k for k in doc if k != _HEADER]
    if type_name is not None:
        registered = business_type(type_name)
        if registered is None:
            problems.append(f"{dp}.type: {unregistered_problem(type_name)}")
        elif type_name not in doc:
            problems.append(
                f"$: the business message must sit beside the header under the key {type_name!r}"
                + (f", found {', '.join(map(repr, others))}" if others else "")
            )
        else:
            business = message_from_dict(registered.cls, doc[type_name], f"$.{type_name}", problems)
    for key in others:
        if key != type_name:
            problems.append(f"$: unexpected key {key!r}; the only key beside the header is the type ({type_name!r})")
    if problems:
        raise SbdFormatError("The SBD (JSON)", problems)
    sbd = StandardBusinessDocument(
        sender=sender,
        receiver=receiver,
        message_id=message_id,
        conversation_id=conversation[0],
        process=conversation[1],
        message_type=type_name,
        standard=standard,
        type_version=type_version,
        created=created,
        expected_response=conversation[2],
        business_message=business,
        sender_on_behalf_of=on_behalf,
        extra_scopes=extra_scopes,
    )  # type: ignore[arg-type]  # every None above has added a problem
    problems = sbd_problems(sbd)
    if problems:
        raise SbdFormatError("The SBD (JSON)", problems)
    return sbd


def _scopes_from_json(
    business_scope: dict, path: str, problems: list[str]
) -> tuple[tuple[Any, Any, Any], tuple[Scope, ...]]:
    _unknown_keys(business_scope, ("scope",), path, problems)
    raw_scopes = business_scope.get("scope")
    if not isinstance(raw_scopes, list):
        problems.append(f"{path}.scope: required list of scopes is missing")
        raw_scopes = []
    conversation: tuple[Any, Any, Any] | None = None
    extra: list[Scope] = []
    for i, raw in enumerate(raw_scopes):
        sp = f"{path}.scope[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{sp}: must be a JSON object")
            continue
        _unknown_keys(raw, _SCOPE_KEYS, sp, problems)
        scope_type = _string(raw, "type", sp, problems)
        instance = _string(raw, "instanceIdentifier", sp, problems, required=scope_type == CONVERSATION_SCOPE)
        identifier = _string(raw, "identifier", sp, problems, required=scope_type == CONVERSATION_SCOPE)
        deadline = None
        info = raw.get("scopeInformation")
        if info is not None:
            if not isinstance(info, list) or not all(isinstance(x, dict) for x in info):
                problems.append(f"{sp}.scopeInformation: must be a list of objects")
            elif info:
                _unknown_keys(info[0], ("expectedResponseDateTime",), f"{sp}.scopeInformation[0]", problems)
                if "expectedResponseDateTime" in info[0]:
                    deadline = parse_datetime(
                        info[0]["expectedResponseDateTime"],
                        f"{sp}.scopeInformation[0].expectedResponseDateTime",
                        problems,
                    )
        if scope_type == CONVERSATION_SCOPE:
            if conversation is not None:
                problems.append(f"{sp}: a second ConversationId scope; there must be exactly one")
                continue
            if deadline is None and "scopeInformation" not in raw:
                problems.append(f"{sp}.scopeInformation[0].expectedResponseDateTime: required (the deadline)")
            conversation = (instance, identifier, deadline)
        elif scope_type is not None:
            extra.append(
                Scope(type=scope_type, instance_identifier=instance, identifier=identifier, expected_response=deadline)
            )
    if conversation is None:
        problems.append(
            f"{path}.scope: a ConversationId scope is required (instanceIdentifier = "
            "conversationId, identifier = process, scopeInformation = deadline)"
        )
        conversation = (None, None, None)
    return conversation, tuple(extra)
