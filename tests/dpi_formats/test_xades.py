"""The XAdES signer and verifier against the SDP client's golden signature, and the verifier's refusals."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.channels.dpi.xades import XadesReference, sign_signatures_xml, verify_signatures_xml
from gateway.errors import SecurityError
from gateway.formats.keys import OrgIdentity, load_pkcs12

from .conftest import VECTORS

LEGACY = VECTORS / "legacy-sdp"
# The golden file's inputs (README of the vectors: CreateSignatureTest.test_pregenerated_xml).
GOLDEN_FILES = [
    ("hoveddokument.pdf", "application/pdf", b"hoveddokument-innhold"),
    ("lenke.xml", "application/vnd.difi.dpi.lenke+xml", b"hoveddokumentdata"),
    ("manifest.xml", "application/xml", b"manifest-innhold"),
]
GOLDEN_TIME = datetime(2014, 5, 21, 15, 7, 15, 756000, tzinfo=UTC)


def _golden() -> bytes:
    return re.sub(rb">\s+<", b"><", (LEGACY / "expected-asic-signature.xml").read_bytes())


def _digests() -> dict[str, bytes]:
    return {name: hashlib.sha256(content).digest() for name, _, content in GOLDEN_FILES}


def _values(xml: bytes) -> tuple[list[bytes], bytes]:
    digests = re.findall(rb"<DigestValue>([^<]*)</DigestValue>", xml)
    signature = re.search(rb"<SignatureValue>([^<]*)</SignatureValue>", xml)
    assert signature is not None
    return digests, re.sub(rb"\s", b"", signature.group(1))


def test_our_signer_reproduces_the_sdp_clients_golden_signature() -> None:
    identity = load_pkcs12(LEGACY / "selfsigned-keystore.converted.p12", "password1234")
    references = [XadesReference(name, mime, hashlib.sha256(content).digest()) for name, mime, content in GOLDEN_FILES]
    ours = sign_signatures_xml(references, identity, GOLDEN_TIME)
    # Every DigestValue (the files' and SignedProperties') and the SignatureValue, byte for byte.
    assert _values(ours) == _values(_golden())


def test_the_golden_signature_verifies_and_names_its_signer() -> None:
    verdict = verify_signatures_xml(_golden(), _digests())
    assert verdict.signing_time == GOLDEN_TIME
    assert "CN=Avsender" in verdict.signer.subject.rfc4514_string()
    assert verdict.mime_types["lenke.xml"] == "application/vnd.difi.dpi.lenke+xml"


def test_a_file_the_signature_does_not_name_is_refused() -> None:
    with pytest.raises(SecurityError, match=r"does not sign extra\.txt"):
        verify_signatures_xml(_golden(), {**_digests(), "extra.txt": hashlib.sha256(b"x").digest()})


def test_a_signed_file_missing_from_the_container_is_refused() -> None:
    digests = _digests()
    del digests["lenke.xml"]
    with pytest.raises(SecurityError, match=r"signs 'lenke\.xml', which is not in the container"):
        verify_signatures_xml(_golden(), digests)


def test_changed_signed_properties_are_refused() -> None:
    changed = _golden().replace(b"2014-05-21T15:07:15.756Z", b"2024-05-21T15:07:15.756Z")
    with pytest.raises(SecurityError, match="#SignedProperties"):
        verify_signatures_xml(changed, _digests())


def test_another_certificate_in_keyinfo_is_not_taken_for_the_signer(sender: OrgIdentity) -> None:
    other = base64.b64encode(sender.certificate.public_bytes(serialization.Encoding.DER))
    swapped = re.sub(rb"<X509Certificate>[^<]*</X509Certificate>", b"<X509Certificate>" + other +
                     b"</X509Certificate>", _golden())
    with pytest.raises(SecurityError, match="no certificate in KeyInfo matches the signed SigningCertificate"):
        verify_signatures_xml(swapped, _digests())


def test_a_signature_made_with_another_key_is_refused(sender: OrgIdentity) -> None:
    ours = sign_signatures_xml([XadesReference(name, mime, hashlib.sha256(content).digest())
                                for name, mime, content in GOLDEN_FILES], sender, GOLDEN_TIME)
    theirs = _values(_golden())[1]
    forged = re.sub(rb"<SignatureValue>[^<]*</SignatureValue>", b"<SignatureValue>" + theirs + b"</SignatureValue>",
                    ours)
    verify_signatures_xml(ours, _digests())
    with pytest.raises(SecurityError, match="signature value does not verify"):
        verify_signatures_xml(forged, _digests())
