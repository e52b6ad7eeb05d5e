"""A test PKI for the sandbox and the tests: root CA -> intermediate CA -> enterprise certificates.

Every organisation here is fictional. Nothing in this module is fit for production keys.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from gateway.formats.keys import OrgIdentity, load_pkcs12

P12_PASSWORD = "changeit"  # noqa: S105 - the published password of the dev keystores
_ROOT = "root-ca"
_INTERMEDIATE = "intermediate-ca"
_BACKDATE = timedelta(days=1)
# CAs start well in the past, so tests can issue certificates that have already expired.
_CA_BACKDATE = timedelta(days=3 * 365)


@dataclass(frozen=True)
class DevPki:
    folder: Path
    ca_certificate: Path
    trust_bundle: Path


@dataclass(frozen=True)
class _Authority:
    key: RSAPrivateKey
    certificate: x509.Certificate


def _new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.chmod(path, 0o600)


def _key_pem(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def _ca_certificate(
    subject: x509.Name, key: RSAPrivateKey, issuer: _Authority | None, days: int, path_length: int | None
) -> x509.Certificate:
    now = datetime.now(UTC)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CA_BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return builder.sign(signer_key, hashes.SHA256())


def _load_or_create_authority(
    folder: Path, stem: str, subject: x509.Name, issuer: _Authority | None, days: int, path_length: int | None
) -> _Authority:
    key_path, cert_path = folder / f"{stem}-key.pem", folder / f"{stem}.pem"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, RSAPrivateKey)
        return _Authority(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    key = _new_key()
    certificate = _ca_certificate(subject, key, issuer, days, path_length)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(_cert_pem(certificate))
    return _Authority(key, certificate)


def _authorities(folder: Path, days: int) -> tuple[_Authority, _Authority]:
    folder.mkdir(parents=True, exist_ok=True)
    # A per-PKI tag keeps two dev PKIs' CA names apart, so one never looks like the other's issuer.
    tag = secrets.token_hex(4)
    root = _load_or_create_authority(
        folder,
        _ROOT,
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "efm-gateway dev PKI"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"efm-gateway dev root CA {tag}"),
            ]
        ),
        None,
        days + 365,
        None,
    )
    intermediate = _load_or_create_authority(
        folder,
        _INTERMEDIATE,
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "efm-gateway dev PKI"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"efm-gateway dev enterprise CA {tag}"),
            ]
        ),
        root,
        days + 180,
        0,
    )
    return root, intermediate


def _pki(folder: Path) -> DevPki:
    return DevPki(folder, folder / f"{_ROOT}.pem", folder / "trust-bundle.pem")


def _enterprise_certificate(
    orgnr: str, name: str, key: RSAPrivateKey, issuer: _Authority, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def create_dev_pki(folder: Path, organisations: Mapping[str, str], days: int = 3650) -> DevPki:
    """Create (or extend) the dev PKI in `folder`: reuses its CAs, adds organisations that are missing."""
    folder = Path(folder)
    root, intermediate = _authorities(folder, days)
    pki = _pki(folder)
    pki.trust_bundle.write_bytes(_cert_pem(root.certificate, intermediate.certificate))
    now = datetime.now(UTC)
    for orgnr, name in organisations.items():
        if (folder / f"{orgnr}.p12").exists():
            continue
        key = _new_key()
        certificate = _enterprise_certificate(
            orgnr, name, key, intermediate, now - _BACKDATE, now + timedelta(days=days)
        )
        _write_org_files(folder, orgnr, key, certificate, (intermediate.certificate, root.certificate))
    return pki


def _write_org_files(
    folder: Path,
    orgnr: str,
    key: RSAPrivateKey,
    certificate: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
) -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        orgnr.encode("ascii"),
        key,
        certificate,
        list(chain),
        serialization.BestAvailableEncryption(P12_PASSWORD.encode("ascii")),
    )
    _write_private(folder / f"{orgnr}-key.pem", _key_pem(key))
    (folder / f"{orgnr}-cert.pem").write_bytes(_cert_pem(certificate))
    (folder / f"{orgnr}-chain.pem").write_bytes(_cert_pem(*chain))
    # The .p12 is written last: its presence marks the organisation as complete.
    _write_private(folder / f"{orgnr}.p12", p12)


def issue_identity(
    pki: DevPki,
    orgnr: str,
    name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> OrgIdentity:
    """A fresh identity from the PKI's intermediate, kept in memory (tests: expired certificates)."""
    _, intermediate = _authorities(pki.folder, 3650)
    now = datetime.now(UTC)
    key = _new_key()
    certificate = _enterprise_certificate(
        orgnr, name, key, intermediate, not_before or now - _BACKDATE, not_after or now + timedelta(days=365)
    )
    root = x509.load_pem_x509_certificate(pki.ca_certificate.read_bytes())
    return OrgIdentity(orgnr, key, certificate, (intermediate.certificate, root))


def dev_identity(pki: DevPki, orgnr: str) -> OrgIdentity:
    return load_pkcs12(pki.folder / f"{orgnr}.p12", P12_PASSWORD, alias=orgnr)
