"""The key entries of a PKCS#12 keystore, each with its alias, certificate and own chain.

cryptography's load_pkcs12 returns the first key of a file and every other certificate as "additional",
but enterprise keystores often hold several entries (one per certificate generation or purpose). So
the key bags are read here, one by one, and each key is paired with its certificate and the chain
that certificate's issuers form among the file's certificates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.errors import KeystoreError
from gateway.trust import asn1_classes  # noqa: F401 - asn1crypto's classes set up before any thread uses them

_MAX_CHAIN = 8
_KEY_BAGS = ("key_bag", "pkcs8_shrouded_key_bag")


@dataclass(frozen=True)
class KeyEntry:
    alias: str | None  # the key bag's friendlyName: what keytool lists as the alias
    key: PrivateKeyTypes
    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]


def key_entries(data: bytes, password: bytes) -> list[KeyEntry]:
    """Every key entry of the keystore. Raises ValueError on a wrong password or a file that is no PKCS#12."""
    bundle = pkcs12.load_pkcs12(data, password)  # checks the MAC, so the password is right from here on
    stored = [bundle.cert, *bundle.additional_certs] if bundle.cert else list(bundle.additional_certs)
    certificates = list(dict.fromkeys(item.certificate for item in stored))
    keys = _key_bags(data, password, bundle.key)
    if not keys and bundle.key is not None:
        # Key bags inside an encrypted SafeContents: rare; cryptography still found the first one.
        name = bundle.cert.friendly_name if bundle.cert else None
        keys = [(name.decode("utf-8", "replace") if name else None, bundle.key)]
    entries = []
    for alias, key in keys:
        leaf = _certificate_of(key, certificates)
        entries.append(KeyEntry(alias, key, leaf, _chain_of(leaf, certificates) if leaf else ()))
    return entries


def _key_bags(
    data: bytes, password: bytes, first_key: PrivateKeyTypes | None
) -> list[tuple[str | None, PrivateKeyTypes]]:
    """(alias, key) of each key bag in the plain SafeContents, where keytool and OpenSSL put them.

    With one key bag, its key is `first_key`, the one load_pkcs12 already decrypted and checked: it is not
    decrypted (a key derivation) and checked (an RSA key check) a second time.
    """
    try:
        safe = asn1_pkcs12.Pfx.load(data).authenticated_safe
        contents = [
            asn1_pkcs12.SafeContents.load(info["content"].native)
            for info in safe
            if info["content_type"].native == "data"
        ]
        bags = [bag for content in contents for bag in content if bag["bag_id"].native in _KEY_BAGS]
        found = []
        for bag in bags:
            alias = None
            for attribute in bag["bag_attributes"]:
                if attribute["type"].native == "friendly_name" and attribute["values"]:
                    alias = attribute["values"][0].native
            shrouded = bag["bag_id"].native == "pkcs8_shrouded_key_bag"
            found.append((alias, bag["bag_value"].untag().dump(), shrouded))
    except (ValueError, TypeError, KeyError):
        return []  # a layout asn1crypto cannot read: fall back to what cryptography found
    if len(found) == 1 and first_key is not None:
        return [(found[0][0], first_key)]
    entries = []
    for alias, key_der, shrouded in found:
        try:
            key = serialization.load_der_private_key(key_der, password if shrouded else None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeystoreError(f"the key entry {alias or '(unnamed)'!r} cannot be read: {exc}") from None
        entries.append((alias, key))
    return entries


def _certificate_of(key: PrivateKeyTypes, certificates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    public = _spki(key.public_key())
    for certificate in certificates:
        if _spki(certificate.public_key()) == public:
            return certificate
    return None


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _chain_of(leaf: x509.Certificate, certificates: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The leaf's issuers, nearest first, as far as the file holds them."""
    chain: list[x509.Certificate] = []
    current = leaf
    while len(chain) < _MAX_CHAIN and current.issuer != current.subject:
        issuer = next((cert for cert in certificates if _issued(current, cert) and cert not in chain), None)
        if issuer is None or issuer == leaf:
            break
        chain.append(issuer)
        current = issuer
    return tuple(chain)


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject or issuer == certificate:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True
