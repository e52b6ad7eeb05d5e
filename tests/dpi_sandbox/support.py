"""What the DPI sandbox tests send: DPI messages made here, by hand, from their documented shape.

Built apart from the gateway's own DPI formats on purpose: these tests check the sandbox's Corner 2 and
providers, so the messages come from the documents (Digdir's examples in reference/vectors/dpi), not from the
code under test elsewhere. The XAdES signatures.xml carries the files' digests as a real one does, with a
placeholder where the signature value would be (the providers check the digests; the signature value is the
gateway's XAdES tests' business).
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.formats.cms import encrypt_stream
from gateway.formats.keys import OrgIdentity

AUTHORITY = "iso6523-actorid-upis"
DIGITAL_PROCESS = "urn:fdc:digdir.no:2020:profile:egovernment:innbyggerpost:digital:ver1.0"
PRINT_PROCESS = "urn:fdc:digdir.no:2020:profile:egovernment:innbyggerpost:utskrift:ver1.0"
STANDARD = ("urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost"
            "##urn:fdc:digdir.no:2020:innbyggerpost:schema:{}::1.0")
SDP = "http://begrep.difi.no/sdp/schema_v10"


@dataclass(frozen=True)
class Document:
    name: str
    content: bytes
    mime_type: str = "application/pdf"
    title: str | None = None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def manifest_xml(documents: list[Document], sender: str, fnr: str | None, mailbox_address: str | None) -> bytes:
    person = (f"<mottaker><person><personidentifikator>{fnr}</personidentifikator>"
              f"<postkasseadresse>{mailbox_address}</postkasseadresse></person></mottaker>") if fnr else ""
    main, *rest = documents
    parts = [f'<hoveddokument href="{main.name}" mime="{main.mime_type}"><tittel lang="NO">{main.title or main.name}'
             "</tittel></hoveddokument>"]
    parts += [f'<vedlegg href="{d.name}" mime="{d.mime_type}"><tittel lang="NO">{d.title or d.name}</tittel></vedlegg>'
              for d in rest]
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><manifest xmlns="{SDP}">{person}<avsender>'
            f'<organisasjon authority="{AUTHORITY}">0192:{sender}</organisasjon></avsender>{"".join(parts)}'
            "</manifest>").encode()


def signatures_xml(files: dict[str, bytes], tamper: str | None = None) -> bytes:
    references = "".join(
        f'<Reference Id="ID_{index}" URI="{name}"><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f"<DigestValue>{_b64(hashlib.sha256(content + (b'x' if name == tamper else b'')).digest())}</DigestValue>"
        "</Reference>"
        for index, (name, content) in enumerate(files.items())
    )
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no"?><XAdESSignatures '
            'xmlns="http://uri.etsi.org/02918/v1.2.1#"><Signature xmlns="http://www.w3.org/2000/09/xmldsig#" '
            f'Id="Signature"><SignedInfo>{references}</SignedInfo><SignatureValue>AA==</SignatureValue></Signature>'
            "</XAdESSignatures>").encode()


def asice(documents: list[Document], sender: str, fnr: str | None = None, mailbox_address: str | None = None,
          tamper: str | None = None) -> bytes:
    """An ASiC-E as Digdir's examples have it: mimetype first (stored), manifest.xml, the documents,
    META-INF/signatures.xml and META-INF/manifest.xml. `tamper` names a file whose signed digest is wrong."""
    files = {"manifest.xml": manifest_xml(documents, sender, fnr, mailbox_address),
             **{document.name: document.content for document in documents}}
    odf = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
           'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry '
           'manifest:full-path="/" manifest:media-type="application/vnd.etsi.asic-e+zip"/></manifest:manifest>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.etsi.asic-e+zip", zipfile.ZIP_STORED)
        for name, content in files.items():
            archive.writestr(name, content, zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/signatures.xml", signatures_xml(files, tamper), zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", odf, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def encrypt(plain: bytes, recipient: x509.Certificate) -> bytes:
    target = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), target, recipient)
    return target.getvalue()


def fingerprint(cms: bytes) -> dict[str, str]:
    return {"digestMethod": "http://www.w3.org/2001/04/xmlenc#sha256",
            "digestValue": _b64(hashlib.sha256(cms).digest())}


def sbd(message_type: str, business: dict[str, Any], sender: str, receiver: str, message_id: str | None = None,
        conversation_id: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"standardBusinessDocument": {
        "standardBusinessDocumentHeader": {
            "headerVersion": "1.0",
            "sender": [{"identifier": {"value": f"0192:{sender}", "authority": AUTHORITY}}],
            "receiver": [{"identifier": {"value": f"0192:{receiver}", "authority": AUTHORITY}}],
            "documentIdentification": {
                "standard": STANDARD.format(message_type), "typeVersion": "1.0",
                "instanceIdentifier": message_id or str(uuid.uuid4()), "type": message_type,
                "creationDateAndTime": now.isoformat(timespec="milliseconds")},
            "businessScope": {"scope": [{
                "type": "ConversationId", "instanceIdentifier": conversation_id or str(uuid.uuid4()),
                "identifier": DIGITAL_PROCESS if message_type == "digital" else PRINT_PROCESS,
                "scopeInformation": [{"expectedResponseDateTime": (now + timedelta(days=1)).isoformat()}]}]},
        },
        message_type: business,
    }}


def digital_business(sender: str, mailbox_address: str, token: str, cms: bytes, **extra: Any) -> dict[str, Any]:
    return {"avsender": {"virksomhetsidentifikator": {"authority": AUTHORITY, "value": f"0192:{sender}"}},
            "mottaker": {"postkasseadresse": mailbox_address},
            "dokumentpakkefingeravtrykk": fingerprint(cms), "maskinportentoken": token, "sikkerhetsnivaa": 3,
            "aapningskvittering": False, "ikkesensitivtittel": "Brev fra sandkassen", "spraak": "NO",
            "varsler": {}, **extra}


def print_business(sender: str, address: dict[str, str], token: str, cms: bytes) -> dict[str, Any]:
    return {"avsender": {"virksomhetsidentifikator": {"authority": AUTHORITY, "value": f"0192:{sender}"}},
            "mottaker": address, "dokumentpakkefingeravtrykk": fingerprint(cms), "maskinportentoken": token,
            "utskriftstype": "SORT_HVIT", "posttype": "B",
            "retur": {"mottaker": {"navn": "Sandkasse kommune", "adresselinje1": "Postboks 1", "postnummer": "0101",
                                   "poststed": "OSLO"}, "returposthaandtering": "DIREKTE_RETUR"}}


def sign(payload: dict[str, Any], identity: OrgIdentity, algorithm: str = "RS256") -> str:
    """The forretningsmelding as Digdir's examples have it: `{"x5c": [leaf], "alg": "RS256"}`, no `typ`."""
    leaf = _b64(identity.certificate.public_bytes(serialization.Encoding.DER))
    return jwt.encode(payload, identity.private_key, algorithm=algorithm, headers={"typ": None, "x5c": [leaf]})


def multipart(forretningsmelding: str, cms: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("forretningsmelding", ("sbd.jwt", forretningsmelding.encode(), "application/jwt")),
            ("dokumentpakke", ("asic.cms", cms, "application/cms"))]


def message_id_of(token: str) -> str:
    payload = jwt.decode(token, options={"verify_signature": False})
    return str(payload["standardBusinessDocument"]["standardBusinessDocumentHeader"]["documentIdentification"][
        "instanceIdentifier"])


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def receipts(http: httpx.Client, url: str, token: str, **params: str) -> list[dict[str, Any]]:
    """The receipts waiting at Corner 2, each as its decoded SBD with the JWT beside it."""
    response = http.get(f"{url}/messages/in", params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return []
    found = []
    for item in response.json():
        payload = jwt.decode(item["forretningsmelding"], options={"verify_signature": False})
        found.append({"jwt": item["forretningsmelding"], **payload["standardBusinessDocument"]})
    return found


def type_of(receipt: dict[str, Any]) -> str:
    return str(receipt["standardBusinessDocumentHeader"]["documentIdentification"]["type"])


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
