"""Detached CMS SignedData (CAdES-BES-like) over the ASiC manifest: signing and verifying.

We sign with SHA-256; we verify SHA-1 (what the reference writes) and SHA-2 signatures.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime

from asn1crypto import algos
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.errors import SecurityError
from gateway.formats import der
from gateway.formats.keys import OrgIdentity, TrustStore, describe
from gateway.trust.store import Purpose, TrustVerdict

_DIGESTS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "sha1": ("sha1", hashes.SHA1),
    "sha256": ("sha256", hashes.SHA256),
    "sha384": ("sha384", hashes.SHA384),
    "sha512": ("sha512", hashes.SHA512),
}
# Signature algorithm names (asn1crypto) that fix the hash, and the plain one that does not.
_RSA_WITH_HASH = {"sha1_rsa": "sha1", "sha256_rsa": "sha256", "sha384_rsa": "sha384", "sha512_rsa": "sha512"}
_PLAIN_RSA = "rsassa_pkcs1v15"


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


@functools.lru_cache(maxsize=64)
def _issuer_and_serial(certificate_der: bytes) -> bytes:
    # The same for every signature by this certificate: build it once (asn1crypto is slow at it). Only bytes
    # are cached, never asn1crypto objects, which parse lazily and are not safe to share between threads.
    parsed = asn1_x509.Certificate.load(certificate_der)
    return asn1_cms.IssuerAndSerialNumber({"issuer": parsed.issuer, "serial_number": parsed.serial_number}).dump()


# The parts of every signature we make that never change, as DER.
_SHA256 = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
_RSA = algos.SignedDigestAlgorithm({"algorithm": _PLAIN_RSA}).dump()
_CONTENT_TYPE_DATA = asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()
_ALGORITHM_PROTECTION = asn1_cms.CMSAttribute(
    {
        "type": "cms_algorithm_protection",
        "values": [
            asn1_cms.CMSAlgorithmProtection(
                {
                    "digest_algorithm": algos.DigestAlgorithm.load(_SHA256),
                    "signature_algorithm": algos.SignedDigestAlgorithm.load(_RSA),
                }
            )
        ],
    }
).dump()
_SIGNING_TIME_OID = asn1_cms.CMSAttributeType("signing_time").dump()
_MESSAGE_DIGEST_OID = asn1_cms.CMSAttributeType("message_digest").dump()
_SIGNED_DATA_OID = asn1_cms.ContentType("signed_data").dump()
_DATA_OID = asn1_cms.ContentType("data").dump()
_VERSION_1 = b"\x02\x01\x01"


def _signing_time(moment: datetime) -> bytes:
    """RFC 5652 11.3: UTCTime for the years 1950-2049, GeneralizedTime outside them; always in UTC."""
    if moment.tzinfo is None:
        raise ValueError("the signing time needs a time zone")
    moment = moment.astimezone(UTC)
    if 1950 <= moment.year <= 2049:
        return der.tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der.tlv(0x18, f"{moment.year:04d}{moment.strftime('%m%d%H%M%S')}Z".encode("ascii"))


def sign_detached(content: bytes, identity: OrgIdentity, signing_time: datetime | None = None) -> bytes:
    """A DER ContentInfo(SignedData) over `content`, detached, signed with SHA-256 and RSA.

    Assembled from DER pieces: building it with asn1crypto objects cost more than the RSA signature.
    """
    moment = (signing_time or datetime.now(UTC)).replace(microsecond=0)
    attributes = [
        _CONTENT_TYPE_DATA,
        der.tlv(0x30, _SIGNING_TIME_OID, der.set_of(_signing_time(moment))),
        der.tlv(0x30, _MESSAGE_DIGEST_OID, der.set_of(der.tlv(0x04, hashlib.sha256(content).digest()))),
        _ALGORITHM_PROTECTION,
    ]
    signed_attributes = der.set_of(*attributes)  # what is signed: the SET OF, under its own tag
    signature = identity.private_key.sign(signed_attributes, padding.PKCS1v15(), hashes.SHA256())
    leaf_der = identity.certificate.public_bytes(serialization.Encoding.DER)
    signer = der.tlv(
        0x30,
        _VERSION_1,
        _issuer_and_serial(leaf_der),
        _SHA256,
        b"\xa0" + signed_attributes[1:],  # [0] IMPLICIT in the SignerInfo
        _RSA,
        der.tlv(0x04, signature),
    )
    certificates = sorted([leaf_der, *(cert.public_bytes(serialization.Encoding.DER) for cert in identity.chain)])
    signed_data = der.tlv(
        0x30,
        _VERSION_1,
        der.set_of(_SHA256),
        der.tlv(0x30, _DATA_OID),
        der.tlv(0xA0, *certificates),  # [0] IMPLICIT CertificateSet
        der.set_of(signer),
    )
    return der.tlv(0x30, _SIGNED_DATA_OID, der.tlv(0xA0, signed_data))


def _parse(signature: bytes) -> asn1_cms.SignedData:
    try:
        content_info = asn1_cms.ContentInfo.load(signature)
        if content_info["content_type"].native != "signed_data":
            raise SecurityError(f"the signature file is a CMS {content_info['content_type'].native}, not a SignedData")
        signed_data = content_info["content"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SecurityError(f"the signature file is not a readable CMS SignedData: {exc}") from None
    return signed_data


def _certificates(signed_data: asn1_cms.SignedData) -> list[x509.Certificate]:
    found = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            found.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return found


def _signer_certificate(signer: asn1_cms.SignerInfo, certificates: list[x509.Certificate]) -> x509.Certificate:
    sid = signer["sid"]
    for certificate in certificates:
        parsed = _asn1_certificate(certificate)
        if sid.name == "issuer_and_serial_number":
            if sid.chosen["serial_number"].native == parsed.serial_number and der.same_name(
                sid.chosen["issuer"], parsed.issuer
            ):
                return certificate
        elif sid.chosen.native == parsed.key_identifier:
            return certificate
    raise SecurityError("the signer's certificate is not included in the signature")


def _attribute(signed_attributes: asn1_cms.CMSAttributes, name: str) -> object | None:
    values = [attribute["values"] for attribute in signed_attributes if attribute["type"].native == name]
    if not values:
        return None
    if len(values) > 1 or len(values[0]) != 1:
        raise SecurityError(f"the signature carries the signed attribute {name} more than once")
    return values[0][0]


def _signed_bytes(signed_attributes: asn1_cms.CMSAttributes) -> bytes:
    """The signed attributes as they were signed: their content under a SET OF header."""
    contents = signed_attributes.contents
    return b"\x31" + _length(len(contents)) + contents


def _length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _hash_names(signer: asn1_cms.SignerInfo) -> str:
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _DIGESTS:
        raise SecurityError(f"the signature uses the digest {digest_name}; SHA-1 or SHA-2 is required")
    signature_name = signer["signature_algorithm"]["algorithm"].native
    if signature_name in _RSA_WITH_HASH:
        if _RSA_WITH_HASH[signature_name] != digest_name:
            raise SecurityError(
                f"the signature algorithm {signature_name} does not match the digest algorithm {digest_name}"
            )
    elif signature_name != _PLAIN_RSA:
        raise SecurityError(f"the signature algorithm {signature_name} is not supported (RSA PKCS#1 v1.5 is)")
    return digest_name


def _check_algorithm_protection(signed_attributes: asn1_cms.CMSAttributes, signer: asn1_cms.SignerInfo) -> None:
    protection = _attribute(signed_attributes, "cms_algorithm_protection")
    if protection is None:
        return
    assert isinstance(protection, asn1_cms.CMSAlgorithmProtection)
    if protection["digest_algorithm"]["algorithm"].native != signer["digest_algorithm"]["algorithm"].native:
        raise SecurityError("the CMSAlgorithmProtection attribute names another digest algorithm than the signer")
    protected_signature = protection["signature_algorithm"]
    if (
        protected_signature.native is not None
        and protected_signature["algorithm"].native != signer["signature_algorithm"]["algorithm"].native
    ):
        raise SecurityError("the CMSAlgorithmProtection attribute names another signature algorithm than the signer")


def verify_detached(signature: bytes, content: bytes, trust: TrustStore, at: datetime) -> x509.Certificate:
    """Check a detached signature over `content` and the signer's chain; returns the signer's certificate.

    `at` is when the message was received, on the caller's clock: the certificates must be valid then.
    """
    return check_detached(signature, content, trust, at).certificate


def check_detached(signature: bytes, content: bytes, trust: TrustStore, at: datetime) -> TrustVerdict:
    """verify_detached, with what the trust store had to say beside its yes (revocation not checked)."""
    try:
        return _verify(signature, content, trust, at)
    except (ValueError, TypeError, KeyError) as exc:
        # asn1crypto parses lazily: malformed input surfaces wherever it is first read.
        raise SecurityError(f"the signature file is not a readable CMS SignedData: {exc}") from None


def _verify(signature: bytes, content: bytes, trust: TrustStore, at: datetime) -> TrustVerdict:
    signed_data = _parse(signature)
    encapsulated = signed_data["encap_content_info"]
    if encapsulated["content_type"].native != "data":
        raise SecurityError(f"the signature covers a {encapsulated['content_type'].native}, not plain data")
    if encapsulated["content"].native is not None and encapsulated["content"].native != content:
        raise SecurityError("the signature carries its own content, and it differs from the ASiC manifest")
    signers = list(signed_data["signer_infos"])
    if len(signers) != 1:
        raise SecurityError(f"the signature has {len(signers)} signers; exactly one is expected")
    signer = signers[0]
    certificates = _certificates(signed_data)
    signer_certificate = _signer_certificate(signer, certificates)
    digest_name = _hash_names(signer)
    hash_name, hash_class = _DIGESTS[digest_name]

    signed_attributes = signer["signed_attrs"]
    if not signed_attributes.native:
        raise SecurityError("the signature has no signed attributes (CAdES requires them)")
    content_type = _attribute(signed_attributes, "content_type")
    if content_type is None or content_type.native != "data":
        raise SecurityError("the signed contentType attribute is missing or is not id-data")
    message_digest = _attribute(signed_attributes, "message_digest")
    if message_digest is None:
        raise SecurityError("the signature has no messageDigest attribute")
    if message_digest.native != hashlib.new(hash_name, content).digest():
        raise SecurityError("the signed digest does not match: the ASiC manifest was changed after it was signed")
    _check_algorithm_protection(signed_attributes, signer)

    public_key = signer_certificate.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise SecurityError(f"the signer's certificate {describe(signer_certificate)} has no RSA key")
    try:
        public_key.verify(
            signer["signature"].native, _signed_bytes(signed_attributes), padding.PKCS1v15(), hash_class()
        )
    except InvalidSignature:
        raise SecurityError(
            f"the signature value does not verify with the signer's certificate {describe(signer_certificate)}"
        ) from None
    # The chain, validity, revocation, key usage (digitalSignature), and no CA certificate as a signer.
    others = [certificate for certificate in certificates if certificate != signer_certificate]
    return trust.verify(signer_certificate, others, at, purpose=Purpose.SIGNING, role="the signer's certificate")
