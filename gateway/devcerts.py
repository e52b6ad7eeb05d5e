"""A test PKI for the sandbox and the tests: root CA -> intermediate CA -> enterprise certificates.

Every certificate it issues names where its revocation status is published, as Buypass's and
Commfides's do: a CRL distribution point (the issuing CA's CRL) and, on enterprise certificates, an OCSP
responder. Both live on the sandbox server (`/pki`, gateway/sandbox/revocation_app.py) at the loopback
address recorded when the PKI was made (`revocation-url`); `revoke` lists a certificate as revoked.

Every organisation here is fictional. Nothing in this module is fit for production keys.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from gateway.formats.keys import OrgIdentity, load_pkcs12, orgnr_of, remember_pkcs12

P12_PASSWORD = "changeit"  # noqa: S105 - the published password of the dev keystores
_ROOT = "root-ca"
_INTERMEDIATE = "intermediate-ca"
REVOCATION_URL_FILE = "revocation-url"
REVOKED_FILE = "revoked.txt"  # one line per revoked certificate: serial (hex), revoked at (ISO 8601)
ROOT_CRL = "root.crl"
INTERMEDIATE_CRL = "intermediate.crl"
_BACKDATE = timedelta(days=1)
# CAs start well in the past, so tests can issue certificates that have already expired.
_CA_BACKDATE = timedelta(days=3 * 365)


@dataclass(frozen=True)
class DevPki:
    folder: Path
    ca_certificate: Path
    trust_bundle: Path

    @property
    def revocation_url(self) -> str | None:
        """Where this PKI's CRLs (`/crl/...`) and OCSP responder (`/ocsp`) are published; None for a PKI
        made before revocation was published."""
        path = self.folder / REVOCATION_URL_FILE
        return path.read_text(encoding="ascii").strip() if path.exists() else None

    @property
    def revocation_port(self) -> int | None:
        url = self.revocation_url
        return int(url.rsplit(":", 1)[1].split("/", 1)[0]) if url else None


@dataclass(frozen=True)
class _Authority:
    key: RSAPrivateKey
    certificate: x509.Certificate


def _new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _organisation_key(orgnr: str) -> RSAPrivateKey:
    """A new key for an organisation of a dev PKI; where EFM_DEV_KEY_POOL names a folder, the one kept there for
    `orgnr` (made on first use). A test suite starts hundreds of sandboxes, each with a dozen organisations, and a
    2048-bit RSA key costs 50-200 ms: the pool makes each once. The CAs' keys are never pooled, so two dev PKIs
    never share an issuer's key; what a pooled key shares is one fictional organisation's identity across them."""
    pool = os.environ.get("EFM_DEV_KEY_POOL")
    if not pool or not orgnr.isdigit():
        return _new_key()
    path = Path(pool) / f"{orgnr}-key.pem"
    if not path.exists():
        Path(pool).mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        _write_private(temp, _key_pem(_new_key()))
        try:
            os.link(temp, path)  # the first one made wins; every process then reads the same key
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
    key = serialization.load_pem_private_key(path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, RSAPrivateKey)
    return key


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


def _revocation_extensions(
    builder: x509.CertificateBuilder, base_url: str | None, crl: str | None, ocsp: bool
) -> x509.CertificateBuilder:
    if base_url and crl:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(f"{base_url}/crl/{crl}")], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if base_url and ocsp:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(f"{base_url}/ocsp"))]), critical=False)
    return builder


def _ca_certificate(
    subject: x509.Name, key: RSAPrivateKey, issuer: _Authority | None, days: int, path_length: int | None,
    base_url: str | None = None,
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
        builder = _revocation_extensions(builder, base_url, ROOT_CRL, ocsp=False)
    return builder.sign(signer_key, hashes.SHA256())


def _load_or_create_authority(
    folder: Path, stem: str, subject: x509.Name, issuer: _Authority | None, days: int, path_length: int | None,
    base_url: str | None = None,
) -> _Authority:
    key_path, cert_path = folder / f"{stem}-key.pem", folder / f"{stem}.pem"
    if key_path.exists() and cert_path.exists():
        # The dev PKI wrote this key itself (0600, in its own folder): the RSA key check would only re-prove it.
        key = serialization.load_pem_private_key(key_path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, RSAPrivateKey)
        return _Authority(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    key = _new_key()
    certificate = _ca_certificate(subject, key, issuer, days, path_length, base_url)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(_cert_pem(certificate))
    return _Authority(key, certificate)


def _authorities(folder: Path, days: int) -> tuple[_Authority, _Authority]:
    folder.mkdir(parents=True, exist_ok=True)
    base_url = _pki(folder).revocation_url
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
        base_url,
    )
    return root, intermediate


def load_authorities(pki: DevPki) -> tuple[_Authority, _Authority]:
    """The root and the intermediate CA (key and certificate) of an existing PKI: the sandbox's CRL and OCSP
    answers are signed with them."""
    return _authorities(pki.folder, 3650)


def revoked_serials(pki: DevPki) -> dict[int, datetime]:
    """The certificates `revoke` listed: serial -> when."""
    path = pki.folder / REVOKED_FILE
    if not path.exists():
        return {}
    listed = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip():
            serial, when = line.split()
            listed[int(serial, 16)] = datetime.fromisoformat(when)
    return listed


def revoke(pki: DevPki, certificate: x509.Certificate, at: datetime | None = None) -> None:
    """List `certificate` as revoked (key compromise) in its CA's CRL and OCSP answers from now on."""
    with open(pki.folder / REVOKED_FILE, "a", encoding="ascii") as handle:
        handle.write(f"{certificate.serial_number:x} {(at or datetime.now(UTC)).isoformat()}\n")


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pki(folder: Path) -> DevPki:
    return DevPki(folder, folder / f"{_ROOT}.pem", folder / "trust-bundle.pem")


_ENTERPRISE_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=True, key_encipherment=True, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)


def key_usage(**bits: bool) -> x509.KeyUsage:
    """A keyUsage with the given bits set and every other one clear (tests: certificates for one use)."""
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign")
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names}, encipher_only=False, decipher_only=False)


def _enterprise_certificate(
    orgnr: str, name: str, key: RSAPrivateKey, issuer: _Authority, not_before: datetime, not_after: datetime,
    base_url: str | None = None, usage: x509.KeyUsage = _ENTERPRISE_USAGE, ca: bool = False,
    crl: bool = True, ocsp: bool = True,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    builder = _revocation_extensions(builder, base_url, INTERMEDIATE_CRL if crl else None, ocsp)
    return builder.sign(issuer.key, hashes.SHA256())


def create_dev_pki(
    folder: Path, organisations: Mapping[str, str], days: int = 3650, revocation_port: int | None = None
) -> DevPki:
    """Create (or extend) the dev PKI in `folder`: reuses its CAs, adds organisations that are missing.

    A new PKI publishes revocation at http://127.0.0.1:<revocation_port>/pki (a free port when None): the
    sandbox network serves it there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    url_file = folder / REVOCATION_URL_FILE
    if not url_file.exists():
        url_file.write_text(f"http://127.0.0.1:{revocation_port or _free_loopback_port()}/pki\n", encoding="ascii")
    root, intermediate = _authorities(folder, days)
    pki = _pki(folder)
    pki.trust_bundle.write_bytes(_cert_pem(root.certificate, intermediate.certificate))
    now = datetime.now(UTC)
    for orgnr, name in organisations.items():
        if (folder / f"{orgnr}.p12").exists():
            continue
        key = _organisation_key(orgnr)
        certificate = _enterprise_certificate(
            orgnr, name, key, intermediate, now - _BACKDATE, now + timedelta(days=days), pki.revocation_url
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
    # This process made the key: dev_identity need not decrypt and check it again.
    remember_pkcs12(p12, P12_PASSWORD, orgnr, OrgIdentity(orgnr_of(certificate), key, certificate, chain))


def issue_identity(
    pki: DevPki,
    orgnr: str,
    name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    usage: x509.KeyUsage = _ENTERPRISE_USAGE,
    ca: bool = False,
    crl: bool = True,
    ocsp: bool = True,
) -> OrgIdentity:
    """A fresh identity from the PKI's intermediate, kept in memory (tests: expired certificates, one for a
    single use, a CA certificate with an organisation's name, one whose revocation only a CRL tells)."""
    _, intermediate = _authorities(pki.folder, 3650)
    now = datetime.now(UTC)
    key = _new_key()
    certificate = _enterprise_certificate(
        orgnr, name, key, intermediate, not_before or now - _BACKDATE, not_after or now + timedelta(days=365),
        pki.revocation_url, usage, ca, crl, ocsp,
    )
    root = x509.load_pem_x509_certificate(pki.ca_certificate.read_bytes())
    return OrgIdentity(orgnr, key, certificate, (intermediate.certificate, root))


def dev_identity(pki: DevPki, orgnr: str) -> OrgIdentity:
    return load_pkcs12(pki.folder / f"{orgnr}.p12", P12_PASSWORD, alias=orgnr)
