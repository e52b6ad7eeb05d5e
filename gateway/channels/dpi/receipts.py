"""DPI receipts (kvitteringer) and errors from the mailbox or print service, mapped to the gateway's statuses.

A receipt is an SBD signed as a JWT like the letter (Digipost signs them RS512). The status each maps to:

    mottakskvittering          MOTTATT  the print service has the letter and queued it for print
    leveringskvittering        LEVERT   in the mailbox, or handed over for print
    aapningskvittering         LEST     the citizen opened it
    returpostkvittering        FEIL     the printed letter came back undelivered
    feil                       FEIL     the provider could not handle the letter
    varslingfeiletkvittering   ANNET    a notification (e-mail, SMS) failed; the letter itself is delivered, so
                                        this does not end it as failed (the reference says FEIL; a later
                                        LEST would then contradict it)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.channels.dpi.business import AUTHORITY, DpiFormatError, iso_time, party_value
from gateway.channels.dpi.forretningsmelding import PROCESS, SignedSbd, read_jwt, sbd_document

RECEIPT_TYPES = ("mottakskvittering", "leveringskvittering", "aapningskvittering", "returpostkvittering", "feil",
                 "varslingfeiletkvittering")
_STATUS = {  # type -> (status, what happened, in the status file's words)
    "mottakskvittering": ("MOTTATT", "received by the print service and queued for printing"),
    "leveringskvittering": ("LEVERT", "delivered"),
    "aapningskvittering": ("LEST", "opened by the citizen"),
    "returpostkvittering": ("FEIL", "returned post: the printed letter could not be delivered and came back"),
    "feil": ("FEIL", "the provider could not handle the letter"),
    "varslingfeiletkvittering": ("ANNET", "the letter is delivered, but notifying the citizen failed"),
}
_FEILTYPER = ("KLIENT", "SERVER")


@dataclass(frozen=True)
class Receipt:
    type: str  # one of RECEIPT_TYPES
    message_id: str  # the letter's message id (the SBD's instanceIdentifier)
    conversation_id: str | None
    timestamp: datetime  # `tidspunkt`: when the provider saw it happen
    status: str  # MOTTATT | LEVERT | LEST | FEIL | ANNET
    description: str  # for the status file: the receipt's type, what it means, and its own words
    provider: str  # the provider's organisation (the receipt's avsender), 0192:...
    details: dict[str, str]  # feiltype/detaljer, varslingskanal/beskrivelse, as the receipt gives them


def _words(type_name: str, process: str | None, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """`<type>: <what happened>[ (<the receipt's own words>)]`."""
    words = _STATUS[type_name][1]
    if type_name == "leveringskvittering":
        printed = bool(process and ":utskrift:" in process)
        words = "ready for printing at the print service" if printed else "delivered to the citizen's digital mailbox"
    details = {key: str(body[key]) for key in ("feiltype", "detaljer", "varslingskanal", "beskrivelse")
               if body.get(key) not in (None, "")}
    own = []
    if "feiltype" in details:
        own.append({"KLIENT": "KLIENT, an error in what was sent", "SERVER": "SERVER, an error at the provider"}
                   .get(details["feiltype"], details["feiltype"]))
    if "varslingskanal" in details:
        own.append(f"by {details['varslingskanal']}")
    own += [details[key] for key in ("detaljer", "beskrivelse") if key in details]
    return f"{type_name}: {words}" + (f" ({'; '.join(own)})" if own else ""), details


def receipt_from_sbd(sbd: dict[str, Any] | SignedSbd) -> Receipt:
    """The receipt an already-verified SBD holds (`read_receipt` verifies a JWT first)."""
    signed = sbd if isinstance(sbd, SignedSbd) else None
    document = signed.sbd if signed else sbd
    try:
        header = document["standardBusinessDocument"]["standardBusinessDocumentHeader"]
        identification = header["documentIdentification"]
        type_name, message_id = identification["type"], identification["instanceIdentifier"]
    except (KeyError, TypeError):
        raise DpiFormatError("a DPI receipt lacks its SBD header (type and instanceIdentifier)") from None
    if type_name not in _STATUS:
        raise DpiFormatError(f"{type_name!r} is not a DPI receipt; expected one of {', '.join(RECEIPT_TYPES)}")
    body = document["standardBusinessDocument"].get(type_name)
    if not isinstance(body, dict):
        raise DpiFormatError(f"the DPI receipt of type {type_name} has no {type_name} body")
    try:
        timestamp = datetime.fromisoformat(str(body["tidspunkt"]).replace("Z", "+00:00"))
        provider = body["avsender"]["virksomhetsidentifikator"]["value"]
    except (KeyError, TypeError, ValueError):
        raise DpiFormatError(f"the DPI {type_name} lacks a valid tidspunkt or avsender") from None
    if type_name == "feil" and body.get("feiltype") not in _FEILTYPER:
        raise DpiFormatError(f"a DPI feil has feiltype {body.get('feiltype')!r}, not KLIENT or SERVER")
    scopes = header.get("businessScope", {}).get("scope") or [{}]
    description, details = _words(type_name, scopes[0].get("identifier"), body)
    return Receipt(type_name, message_id, scopes[0].get("instanceIdentifier"), timestamp, _STATUS[type_name][0],
                   description, provider, details)


def read_receipt(token: str | bytes, *, at: datetime | None = None) -> Receipt:
    """Verify a receipt JWT against its x5c (see forretningsmelding.read_jwt) and map it."""
    return receipt_from_sbd(read_jwt(token, at=at))


def build_receipt(
    type_name: str,
    *,
    provider_orgnr: str,
    sender_orgnr: str,
    message_id: str,
    conversation_id: str,
    letter_type: str = "digital",
    timestamp: datetime | None = None,
    feiltype: str | None = None,
    detaljer: str | None = None,
    varslingskanal: str | None = None,
    beskrivelse: str | None = None,
) -> dict[str, Any]:
    """A receipt's SBD as a provider issues it (for the sandbox's Corner 2): sign it with
    `forretningsmelding.sign_jwt(sbd, identity, "RS512")`, as Digipost does."""
    if type_name not in _STATUS:
        raise DpiFormatError(f"{type_name!r} is not a DPI receipt; expected one of {', '.join(RECEIPT_TYPES)}")
    if letter_type not in ("digital", "utskrift"):
        raise DpiFormatError(f"letter_type must be digital or utskrift, not {letter_type!r}")
    moment = timestamp or datetime.now(UTC)
    body: dict[str, Any] = {
        "avsender": {"virksomhetsidentifikator": {"authority": AUTHORITY, "value": party_value(provider_orgnr)}},
        "mottaker": {"virksomhetsidentifikator": {"authority": AUTHORITY, "value": party_value(sender_orgnr)}},
        "tidspunkt": iso_time(moment),
    }
    if type_name == "feil":
        if feiltype not in _FEILTYPER:
            raise DpiFormatError("a DPI feil needs feiltype KLIENT or SERVER")
        body["feiltype"] = feiltype
        if detaljer:
            body["detaljer"] = detaljer
    if type_name == "varslingfeiletkvittering":
        if varslingskanal not in ("epost", "sms"):
            raise DpiFormatError("a varslingfeiletkvittering needs varslingskanal epost or sms")
        body["varslingskanal"] = varslingskanal
        if beskrivelse:
            body["beskrivelse"] = beskrivelse
    return sbd_document(type_name, body, sender=provider_orgnr, receiver=sender_orgnr, message_id=message_id,
                        conversation_id=conversation_id, process=PROCESS.format(letter_type), created=moment)
