"""Detached CAdES signatures over the ASiC manifest: interop with OpenSSL and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms

from gateway.devcerts import DevPki, dev_identity, issue_identity
from gateway.errors import SecurityError
from gateway.formats.cades import sign_detached, verify_detached
from gateway.formats.keys import CLOCK_SKEW, OrgIdentity, TrustStore

from .support import SENDER, key_and_cert_paths, openssl

NOW = datetime.now(UTC)  # the time of receipt the tests give the verifier
MANIFEST = b'<?xml version="1.0"?><ASiCManifest xmlns="http://uri.etsi.org/02918/v1.2.1#"/>\n'


def _openssl_verify(signature: Path, manifest: Path, bundle: Path, out: Path) -> None:
    openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        signature,
        "-content",
        manifest,
        "-CAfile",
        bundle,
        "-purpose",
        "any",
        "-out",
        out,
    )


def test_our_signature_verifies_with_openssl(pki: DevPki, sender: OrgIdentity, tmp_path: Path) -> None:
    signature = tmp_path / "signature.p7s"
    signature.write_bytes(sign_detached(MANIFEST, sender))
    manifest = tmp_path / "ASiCManifest.xml"
    manifest.write_bytes(MANIFEST)
    _openssl_verify(signature, manifest, pki.trust_bundle, tmp_path / "out")
    manifest.write_bytes(MANIFEST.replace(b"ASiCManifest ", b"ASiCManifest  "))
    with pytest.raises(AssertionError, match="openssl cms -verify"):
        _openssl_verify(signature, manifest, pki.trust_bundle, tmp_path / "out")


def test_our_signature_carries_what_peers_expect(sender: OrgIdentity) -> None:
    signed_data = asn1_cms.ContentInfo.load(sign_detached(MANIFEST, sender))["content"]
    assert signed_data["version"].native == "v1"
    assert signed_data["encap_content_info"]["content"].native is None
    (signer,) = signed_data["signer_infos"]
    assert signer["sid"].name == "issuer_and_serial_number"
    assert signer["digest_algorithm"]["algorithm"].native == "sha256"
    attribute_types = {attribute["type"].dotted for attribute in signer["signed_attrs"]}
    assert attribute_types == {
        "1.2.840.113549.1.9.3",
        "1.2.840.113549.1.9.5",
        "1.2.840.113549.1.9.4",
        "1.2.840.113549.1.9.52",
    }
    assert len(signed_data["certificates"]) == 1 + len(sender.chain)


def test_our_signature_is_canonical_der_with_the_signing_time(sender: OrgIdentity) -> None:
    """The SignedData is assembled by hand: a DER re-encoding by asn1crypto must give the same bytes."""
    moment = datetime(2026, 11, 27, 8, 0, 1, tzinfo=UTC)
    signature = sign_detached(MANIFEST, sender, signing_time=moment)
    content_info = asn1_cms.ContentInfo.load(signature)
    assert content_info.dump(force=True) == signature
    (signer,) = content_info["content"]["signer_infos"]
    times = [a["values"][0].native for a in signer["signed_attrs"] if a["type"].native == "signing_time"]
    assert times == [moment]


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_openssl_signatures_verify_with_ours(
    pki: DevPki, sender: OrgIdentity, trust: TrustStore, tmp_path: Path, digest: str
) -> None:
    key, cert = key_and_cert_paths(pki, SENDER)
    manifest = tmp_path / "ASiCManifest.xml"
    manifest.write_bytes(MANIFEST)
    signature = tmp_path / "signature.p7s"
    # Only the leaf is included, as real peers often do: the trust store supplies the intermediate.
    openssl(
        "cms",
        "-sign",
        "-binary",
        "-outform",
        "DER",
        "-in",
        manifest,
        "-signer",
        cert,
        "-inkey",
        key,
        "-md",
        digest,
        "-out",
        signature,
    )
    assert verify_detached(signature.read_bytes(), MANIFEST, trust, NOW) == sender.certificate
    with pytest.raises(SecurityError, match="changed after it was signed"):
        verify_detached(signature.read_bytes(), MANIFEST + b" ", trust, NOW)


def test_refusals_name_the_rule(pki: DevPki, stranger_pki: DevPki, sender: OrgIdentity, trust: TrustStore) -> None:
    signature = sign_detached(MANIFEST, sender)
    assert verify_detached(signature, MANIFEST, trust, NOW) == sender.certificate
    with pytest.raises(SecurityError, match="changed after it was signed"):
        verify_detached(signature, MANIFEST.replace(b"1.2.1", b"1.2.2"), trust, NOW)
    with pytest.raises(SecurityError, match="expired"):
        verify_detached(signature, MANIFEST, trust, at=datetime.now(UTC) + timedelta(days=40 * 365))
    stranger = dev_identity(stranger_pki, SENDER)
    with pytest.raises(SecurityError, match="untrusted issuer"):
        verify_detached(sign_detached(MANIFEST, stranger), MANIFEST, trust, NOW)
    tampered = bytearray(signature)
    signature_value = asn1_cms.ContentInfo.load(signature)["content"]["signer_infos"][0]["signature"].native
    position = tampered.index(signature_value[:16])
    tampered[position] ^= 0x01
    with pytest.raises(SecurityError, match="signature value does not verify"):
        verify_detached(bytes(tampered), MANIFEST, trust, NOW)
    with pytest.raises(SecurityError, match="not a readable CMS SignedData"):
        verify_detached(b"\x30\x03\x02\x01\x01", MANIFEST, trust, NOW)


@pytest.mark.parametrize(
    ("moment", "tag"),
    [
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), 0x17),
        (datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC), 0x18),
        (datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC), 0x18),
    ],
    ids=["UTCTime up to 2049", "GeneralizedTime from 2050", "GeneralizedTime before 1950"],
)
def test_the_signing_time_reads_back_the_same_in_every_century(sender: OrgIdentity, moment: datetime, tag: int) -> None:
    signature = sign_detached(MANIFEST, sender, signing_time=moment)
    (signer,) = asn1_cms.ContentInfo.load(signature)["content"]["signer_infos"]
    (value,) = [a["values"][0] for a in signer["signed_attrs"] if a["type"].native == "signing_time"]
    assert value.chosen.tag == tag
    assert value.native == moment


def test_a_signing_time_without_a_time_zone_is_refused(sender: OrgIdentity) -> None:
    with pytest.raises(ValueError, match="time zone"):
        sign_detached(MANIFEST, sender, signing_time=datetime(2026, 11, 27, 8, 0, 0))


def test_the_signer_is_checked_at_the_time_of_receipt_with_a_little_clock_skew(pki: DevPki, trust: TrustStore) -> None:
    assert timedelta(minutes=5) == CLOCK_SKEW
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    ends = starts + timedelta(days=30)
    signer = issue_identity(pki, SENDER, "Avsender Test AS", not_before=starts, not_after=ends)
    signature = sign_detached(MANIFEST, signer)
    minute = timedelta(minutes=1)
    for received in (starts - CLOCK_SKEW + minute, starts, ends, ends + CLOCK_SKEW - minute):
        assert verify_detached(signature, MANIFEST, trust, received) == signer.certificate
    early = starts - CLOCK_SKEW - minute
    with pytest.raises(SecurityError) as caught:
        verify_detached(signature, MANIFEST, trust, early)
    assert str(caught.value).startswith("the signer's certificate 'CN=Avsender Test AS")
    assert f"is not yet valid: valid from {starts:%Y-%m-%d %H:%M:%S} UTC" in str(caught.value)
    assert f"checked at {early:%Y-%m-%d %H:%M:%S} UTC, 5 minutes of clock skew allowed" in str(caught.value)
    late = ends + CLOCK_SKEW + minute
    with pytest.raises(SecurityError) as caught:
        verify_detached(signature, MANIFEST, trust, late)
    assert f"has expired: valid until {ends:%Y-%m-%d %H:%M:%S} UTC (checked at {late:%Y-%m-%d %H:%M:%S}" in str(
        caught.value
    )
