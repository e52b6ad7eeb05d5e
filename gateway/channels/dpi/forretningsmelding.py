"""The DPI forretningsmelding: the SBD (JSON) as a compact JWS, RS256, with the signer's leaf certificate in `x5c`.

Shaped as Digdir's published examples: the header is `{"x5c":[leaf],"alg":"RS256"}` (no `typ`, no `kid`) and
the payload is the whole SBD. Receipts come the same way, from Digipost signed RS512; both are read here.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.channels.dpi.business import (
    AUTHORITY,
    BusinessMessage,
    DpiFormatError,
    bare_orgnr,
    iso_time,
    party_value,
)
from gateway.channels.dpi.package import cms_fingerprint
from gateway.errors import SecurityError
from gateway.formats.keys import OrgIdentity, orgnr_of

STANDARD = (
    "urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost##urn:fdc:digdir.no:2020:innbyggerpost:schema:{}::1.0"
)
PROCESS = "urn:fdc:digdir.no:2020:profile:egovernment:innbyggerpost:{}:ver1.0"
_ALGORITHMS = {"RS256": hashes.SHA256, "RS512": hashes.SHA512}
MAX_JWT_BYTES = 1 << 20  # an SBD is a few kB; the token and the certificate make it a few more


@dataclass(frozen=True)
class SignedSbd:
    sbd: dict[str, Any]  # the whole payload: {"standardBusinessDocument": {...}}
    type: str  # documentIdentification.type: digital, utskrift, leveringskvittering, feil, ...
    standard: str
    message_id: str
    conversation_id: str | None
    process: str | None
    sender: str  # ISO 6523 values as written: 0192:991825827
    receiver: str | None
    created: datetime | None
    business: dict[str, Any]  # the body under `type`
    certificate: x509.Certificate  # x5c[0], whose key verified the signature
    algorithm: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sbd_document(
    type_name: str,
    body: dict[str, Any],
    *,
    sender: str,
    receiver: str | None,
    message_id: str,
    conversation_id: str,
    process: str,
    created: datetime | None = None,
    expected_response: datetime | None = None,
) -> dict[str, Any]:
    """An SBD with one DPI body under `type_name`, its header as Digdir's examples write it."""
    created = created or datetime.now(UTC)
    header: dict[str, Any] = {"headerVersion": "1.0",
                              "sender": [{"identifier": {"value": party_value(sender), "authority": AUTHORITY}}]}
    if receiver is not None:
        header["receiver"] = [{"identifier": {"value": party_value(receiver), "authority": AUTHORITY}}]
    header["documentIdentification"] = {
        "standard": STANDARD.format(type_name),
        "typeVersion": "1.0",
        "instanceIdentifier": message_id,
        "type": type_name,
        "creationDateAndTime": iso_time(created),
    }
    scope_information = [{"expectedResponseDateTime": iso_time(expected_response)}] if expected_response else []
    header["businessScope"] = {"scope": [{
        "type": "ConversationId",
        "instanceIdentifier": conversation_id,
        "identifier": process,
        "scopeInformation": scope_information,
    }]}
    return {"standardBusinessDocument": {"standardBusinessDocumentHeader": header, type_name: body}}


def build_sbd(
    business: BusinessMessage,
    *,
    sender: str,
    receiver: str,
    message_id: str | None = None,
    conversation_id: str | None = None,
    created: datetime | None = None,
    expected_response: datetime | None = None,
) -> dict[str, Any]:
    """The SBD of a letter. `sender` is who sends (the SBDH sender, the data processor acting for the
    business message's avsender where they differ); `receiver` the mailbox provider's or print service's
    organisation. The business message must carry its fingerprint and Maskinporten token by now."""
    if business.fingerprint is None or not business.maskinportentoken:
        raise DpiFormatError("a DPI letter's SBD needs the package's fingerprint and the Maskinporten token")
    created = created or datetime.now(UTC)
    return sbd_document(
        business.name, business.to_json(), sender=sender, receiver=receiver,
        message_id=message_id or str(uuid.uuid4()), conversation_id=conversation_id or str(uuid.uuid4()),
        process=PROCESS.format(business.name), created=created,
        expected_response=expected_response or created + timedelta(days=1),
    )


def sign_jwt(sbd: dict[str, Any], identity: OrgIdentity, algorithm: str = "RS256") -> str:
    """The compact JWS of `sbd`, header `{"x5c":[leaf],"alg":...}` as in Digdir's examples."""
    if algorithm not in _ALGORITHMS:
        raise DpiFormatError(f"a DPI JWT is signed RS256 (or RS512 for receipts), not {algorithm}")
    leaf = base64.b64encode(identity.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
    header = json.dumps({"x5c": [leaf], "alg": algorithm}, separators=(",", ":")).encode()
    payload = json.dumps(sbd, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signing_input = f"{_b64url(header)}.{_b64url(payload)}".encode("ascii")
    signature = identity.private_key.sign(signing_input, padding.PKCS1v15(), _ALGORITHMS[algorithm]())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def _certificate(header: dict[str, Any]) -> x509.Certificate:
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise SecurityError("the DPI JWT carries no certificate in x5c")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except ValueError:
        raise SecurityError("the certificate in the DPI JWT's x5c cannot be read") from None


def _header_value(sbd: dict[str, Any], *path: str | int) -> Any:
    node: Any = sbd
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def read_jwt(token: str | bytes, *, at: datetime | None = None) -> SignedSbd:
    """Verify a DPI JWT against the certificate in its own `x5c` and return the SBD.

    With `at`, that certificate must be valid at that time (pin it to read an old message). Whether the
    certificate is trusted, and whose organisation it names, is the caller's question.
    """
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    text = text.strip()
    if len(text) > MAX_JWT_BYTES:
        raise SecurityError(f"the DPI JWT is {len(text)} bytes; more than an SBD can be")
    try:
        header = jwt.get_unverified_header(text)
    except jwt.PyJWTError as exc:
        raise SecurityError(f"the DPI JWT cannot be read: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in _ALGORITHMS:
        raise SecurityError(f"the DPI JWT is signed with {algorithm!r}; RS256 or RS512 is expected")
    certificate = _certificate(header)
    try:
        sbd = jwt.decode(text, key=certificate.public_key(), algorithms=[algorithm],
                         options={"verify_aud": False, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise SecurityError("the DPI JWT's signature does not verify with the certificate in its x5c") from None
    except jwt.PyJWTError as exc:
        raise SecurityError(f"the DPI JWT cannot be verified: {exc}") from None
    if at is not None and not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise SecurityError(
            f"the DPI JWT's certificate ({certificate.subject.rfc4514_string()}) is not valid at {at.isoformat()}: "
            f"it is valid {certificate.not_valid_before_utc:%Y-%m-%d} to {certificate.not_valid_after_utc:%Y-%m-%d}")
    return _signed(sbd, certificate, algorithm)


def _signed(sbd: dict[str, Any], certificate: x509.Certificate, algorithm: str) -> SignedSbd:
    head = ("standardBusinessDocument", "standardBusinessDocumentHeader")
    identification = _header_value(sbd, *head, "documentIdentification") or {}
    type_name = identification.get("type")
    message_id = identification.get("instanceIdentifier")
    sender = _header_value(sbd, *head, "sender", 0, "identifier", "value")
    if not isinstance(type_name, str) or not isinstance(message_id, str) or not isinstance(sender, str):
        raise DpiFormatError("the DPI SBD lacks its type, message id (instanceIdentifier) or sender")
    business = _header_value(sbd, "standardBusinessDocument", type_name)
    if not isinstance(business, dict):
        raise DpiFormatError(f"the DPI SBD of type {type_name!r} has no {type_name!r} body")
    created = identification.get("creationDateAndTime")
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else None
    except ValueError:
        raise DpiFormatError(f"the DPI SBD's creationDateAndTime {created!r} is not a time") from None
    scope = _header_value(sbd, *head, "businessScope", "scope", 0) or {}
    return SignedSbd(
        sbd=sbd, type=type_name, standard=identification.get("standard", ""), message_id=message_id,
        conversation_id=scope.get("instanceIdentifier"), process=scope.get("identifier"), sender=sender,
        receiver=_header_value(sbd, *head, "receiver", 0, "identifier", "value"), created=created_at,
        business=business, certificate=certificate, algorithm=algorithm,
    )


def check_fingerprint(signed: SignedSbd, cms: Path | bytes) -> None:
    """The package must be the one the SBD names: SHA-256 of the CMS bytes equals `dokumentpakkefingeravtrykk`."""
    named = signed.business.get("dokumentpakkefingeravtrykk")
    if not isinstance(named, dict):
        raise DpiFormatError("the DPI SBD carries no dokumentpakkefingeravtrykk")
    actual = cms_fingerprint(cms)
    if named.get("digestMethod") != actual.digest_method:
        raise DpiFormatError(
            f"the fingerprint's digestMethod is {named.get('digestMethod')!r}; DPI uses {actual.digest_method}")
    if named.get("digestValue") != actual.digest_value:
        raise SecurityError(
            "the dokumentpakke does not match the fingerprint in the forretningsmelding (SHA-256 of the CMS bytes)")


def check_sender(signed: SignedSbd) -> str:
    """The signer must be the SBD's sender: the organisation number in the x5c certificate (serialNumber, or
    organizationIdentifier NTRNO-) equals the SBDH sender's. Not the business message's `avsender`, which is
    the organisation a data processor sends for. Returns the organisation number."""
    certified = orgnr_of(signed.certificate)
    if certified is None:
        raise SecurityError(
            f"the DPI JWT's certificate ({signed.certificate.subject.rfc4514_string()}) names no organisation number")
    if certified != bare_orgnr(signed.sender):
        raise SecurityError(f"the DPI JWT is signed by organisation {certified}, but its SBD says it is from "
                            f"{bare_orgnr(signed.sender)}")
    return certified
