"""Receipts (kvitteringer) as a DPI provider issues them, for the sandbox's mailbox and print service.

Shaped as Digipost's real ones (reference/vectors/dpi/receipts-digipost-jwt): a JWS whose payload is
`{"standardBusinessDocument": {header, <type>: {avsender, mottaker, tidspunkt, ...}}}`, signed RS512 with the
provider's certificate alone in `x5c`. The SBD's sender is the provider, its receiver the organisation that sent
the letter; every receipt carries the letter's own messageId (Digipost's do: the id of the reference client's
test letter) and conversationId, by which the sender finds its message.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from gateway.formats.keys import OrgIdentity

AUTHORITY = "iso6523-actorid-upis"
STANDARD = ("urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost"
            "##urn:fdc:digdir.no:2020:innbyggerpost:schema:{}::1.0")
RECEIPT_TYPES = ("mottakskvittering", "leveringskvittering", "aapningskvittering", "returpostkvittering", "feil",
                 "varslingfeiletkvittering")


def _party(orgnr: str) -> dict[str, str]:
    return {"authority": AUTHORITY, "value": f"0192:{orgnr}"}


def timestamp(moment: datetime) -> str:
    """`2021-11-15T14:00:44.295+00:00`, as the providers write it."""
    return moment.isoformat(timespec="milliseconds")


def receipt_sbd(receipt_type: str, *, provider: str, sender: str, message_id: str, conversation_id: str,
                process: str, at: datetime, **details: str) -> dict[str, Any]:
    """The SBD of one receipt; `details` are the type's own fields (feiltype, detaljer, varslingskanal,
    beskrivelse)."""
    if receipt_type not in RECEIPT_TYPES:
        raise ValueError(f"unknown receipt type {receipt_type!r}")
    body: dict[str, Any] = {
        "avsender": {"virksomhetsidentifikator": _party(provider)},
        "mottaker": {"virksomhetsidentifikator": _party(sender)},
        "tidspunkt": timestamp(at),
        **{name: value for name, value in details.items() if value is not None},
    }
    return {"standardBusinessDocument": {
        "standardBusinessDocumentHeader": {
            "headerVersion": "1.0",
            "sender": [{"identifier": _party(provider)}],
            "receiver": [{"identifier": _party(sender)}],
            "documentIdentification": {
                "standard": STANDARD.format(receipt_type),
                "typeVersion": "1.0",
                "instanceIdentifier": message_id,
                "type": receipt_type,
                "creationDateAndTime": timestamp(at),
            },
            "businessScope": {"scope": [{"type": "ConversationId", "instanceIdentifier": conversation_id,
                                         "identifier": process, "scopeInformation": []}]},
        },
        receipt_type: body,
    }}


def sign_receipt(sbd: dict[str, Any], identity: OrgIdentity) -> str:
    """The receipt as the compact JWS Corner 2 hands out: RS512, the provider's leaf alone in `x5c`."""
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    return jwt.encode(sbd, identity.private_key, algorithm="RS512",
                      headers={"typ": None, "x5c": [base64.b64encode(der).decode("ascii")]})


__all__ = ["RECEIPT_TYPES", "receipt_sbd", "sign_receipt", "timestamp"]
