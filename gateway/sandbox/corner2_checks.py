"""What the sandbox's Corner 2 checks of a forretningsmelding before it takes a message, as an access point does.

Written apart from the gateway's own DPI formats (gateway/channels/dpi), so that a mistake there is caught
here instead of being agreed with: PyJWT verifies the signature against `x5c[0]`, the leaf must chain to the
sandbox CA and name the SBD's sender, the embedded Maskinporten token must be one the sandbox issued with the
DPI scope, and the fingerprint is compared with hashlib's SHA-256 of the CMS bytes as they arrived.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509 import verification

from gateway.sandbox.auth import AccessTokens, Unauthorised
from gateway.sandbox.token_app import certificate_orgnr

DPI_SCOPE = "digitalpostinnbygger:send"
SHA256_DIGEST_METHOD = "http://www.w3.org/2001/04/xmlenc#sha256"
ALGORITHMS = ("RS256", "RS384", "RS512")
MESSAGE_TYPES = ("digital", "utskrift")
# What Digdir's schemas require of each business message (innbyggerpost_dpi_{digital,utskrift}_1_0), beyond the
# fingerprint and token checked on their own: a message without them fails the access point's validation.
REQUIRED = {
    "digital": ("avsender", "mottaker", "sikkerhetsnivaa", "ikkesensitivtittel", "spraak"),
    "utskrift": ("avsender", "mottaker", "utskriftstype", "retur", "posttype"),
}
MAX_JWT_BYTES = 1 << 20


class Refused(Exception):
    """The message is refused: HTTP `status` (400 validation, 401, 403) with the words of a problem+json."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Forretningsmelding:
    """A verified forretningsmelding: the SBD's parts Corner 2 routes and answers by."""

    message_id: str
    conversation_id: str
    process: str
    type: str  # digital | utskrift
    sender: str  # bare orgnr of the SBD's sender (the certificate's organisation)
    receiver: str  # bare orgnr of the SBD's receiver: the mailbox or print provider
    business: dict[str, Any]
    sbd: dict[str, Any]
    signer: x509.Certificate
    algorithm: str

    @property
    def avsender(self) -> str:
        value = str(((self.business.get("avsender") or {}).get("virksomhetsidentifikator") or {}).get("value", ""))
        return value.removeprefix("0192:")

    @property
    def avsenderidentifikator(self) -> str | None:
        found = (self.business.get("avsender") or {}).get("avsenderidentifikator")
        return str(found) if found else None


def _bare(party: Any, what: str) -> str:
    try:
        value = str(party[0]["identifier"]["value"])
    except (KeyError, IndexError, TypeError) as exc:
        raise Refused(400, f"the forretningsmelding's SBD header has no {what}") from exc
    return value.removeprefix("0192:")


def _leaf(header: dict[str, Any], roots: list[x509.Certificate], intermediates: list[x509.Certificate],
          now: datetime) -> x509.Certificate:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise Refused(400, "the forretningsmelding's JWT header carries no x5c array with the signer's certificate")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(entry, validate=True)) for entry in x5c]
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Refused(400, f"the x5c of the forretningsmelding's JWT is not a certificate: {exc}") from exc
    verifier = (
        verification.PolicyBuilder().store(verification.Store(roots)).time(now)
        .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=verification.ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(chain[0], [*chain[1:], *intermediates])
    except verification.VerificationError as exc:
        raise Refused(400, "the certificate in the forretningsmelding's x5c is not trusted: it does not chain to a "
                           f"CA of this environment, or is not valid now ({exc})") from exc
    return chain[0]


def _token(business: dict[str, Any], access_tokens: AccessTokens, sender: str) -> None:
    token = business.get("maskinportentoken")
    if not isinstance(token, str) or not token:
        raise Refused(400, "the business message carries no maskinportentoken")
    try:
        caller = access_tokens.verify(token)
    except Unauthorised as exc:
        raise Refused(400, f"the business message's maskinportentoken is not valid: {exc.detail}") from exc
    if DPI_SCOPE not in caller.scopes:
        raise Refused(400, f"the business message's maskinportentoken lacks the scope {DPI_SCOPE}")
    avsender = str(((business.get("avsender") or {}).get("virksomhetsidentifikator") or {}).get("value", ""))
    if caller.supplier is not None:
        # Sent on behalf of another organisation: the token is delegated from the avsender to the sender.
        if (caller.supplier, caller.orgnr) != (sender, avsender.removeprefix("0192:")):
            raise Refused(400, f"the business message's maskinportentoken is delegated from 0192:{caller.orgnr} to "
                               f"0192:{caller.supplier}, not from the avsender {avsender} to the sender {sender}")
        return
    if caller.orgnr not in (sender, avsender.removeprefix("0192:")):
        raise Refused(400, f"the business message's maskinportentoken is 0192:{caller.orgnr}'s, neither the "
                           f"sender's nor the avsender's")


def verify_forretningsmelding(token: str, cms_sha256: bytes, access_tokens: AccessTokens,
                              roots: list[x509.Certificate], intermediates: list[x509.Certificate],
                              now: datetime) -> Forretningsmelding:
    """The forretningsmelding `token` verified against the dokumentpakke's SHA-256, or Refused saying why."""
    if len(token) > MAX_JWT_BYTES:
        raise Refused(400, "the forretningsmelding is larger than 1 MiB")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Refused(400, f"the forretningsmelding is not a JWT: {exc}") from exc
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise Refused(400, f"the forretningsmelding is signed with {algorithm!r}; RS256 is expected")
    signer = _leaf(header, roots, intermediates, now)
    try:
        raw = jwt.api_jws.decode(token, signer.public_key(), algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise Refused(400, f"the forretningsmelding's signature does not verify with its x5c certificate: {exc}") \
            from exc
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise Refused(400, "the forretningsmelding's payload is not JSON") from exc
    sbd = payload.get("standardBusinessDocument", payload) if isinstance(payload, dict) else None
    if not isinstance(sbd, dict) or not isinstance(sbd.get("standardBusinessDocumentHeader"), dict):
        raise Refused(400, "the forretningsmelding's payload holds no standardBusinessDocument with a header")
    header_part = sbd["standardBusinessDocumentHeader"]
    identification = header_part.get("documentIdentification") or {}
    message_type = identification.get("type")
    if message_type not in MESSAGE_TYPES:
        raise Refused(400, f"the forretningsmelding's type is {message_type!r}; Corner 2 takes digital or utskrift")
    business = sbd.get(message_type)
    if not isinstance(business, dict):
        raise Refused(400, f"the forretningsmelding holds no {message_type} business message")
    missing = [name for name in REQUIRED[message_type] if business.get(name) in (None, "", {})]
    if missing:
        raise Refused(400, f"the {message_type} business message lacks {', '.join(missing)}")
    try:
        message_id = str(uuid.UUID(str(identification.get("instanceIdentifier"))))
    except ValueError as exc:
        raise Refused(400, "the SBD's instanceIdentifier (the messageId) is not a UUID") from exc
    scopes = (header_part.get("businessScope") or {}).get("scope") or []
    conversation = next((s for s in scopes if isinstance(s, dict) and s.get("type") == "ConversationId"), None)
    if conversation is None or not conversation.get("instanceIdentifier"):
        raise Refused(400, "the SBD's businessScope has no ConversationId scope")
    sender = _bare(header_part.get("sender"), "sender")
    receiver = _bare(header_part.get("receiver"), "receiver")
    signer_org = certificate_orgnr(signer)
    if signer_org != sender:
        raise Refused(400, f"the forretningsmelding is signed with {signer_org or 'an unnamed organisation'}'s "
                           f"certificate, but the SBD's sender is {sender}")
    _token(business, access_tokens, sender)
    fingerprint = business.get("dokumentpakkefingeravtrykk") or {}
    if fingerprint.get("digestMethod") != SHA256_DIGEST_METHOD:
        raise Refused(400, f"dokumentpakkefingeravtrykk.digestMethod must be {SHA256_DIGEST_METHOD}")
    expected = base64.b64encode(cms_sha256).decode("ascii")
    if fingerprint.get("digestValue") != expected:
        raise Refused(400, "dokumentpakkefingeravtrykk does not match the dokumentpakke: the SHA-256 of the CMS "
                           f"bytes received is {expected}, the forretningsmelding says "
                           f"{fingerprint.get('digestValue')}")
    return Forretningsmelding(message_id, str(conversation["instanceIdentifier"]), str(conversation.get("identifier")),
                              message_type, sender, receiver, business, sbd, signer, algorithm)


__all__ = ["DPI_SCOPE", "SHA256_DIGEST_METHOD", "Forretningsmelding", "Refused", "verify_forretningsmelding"]
