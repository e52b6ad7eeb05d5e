"""The organisation's key and enterprise certificate, and the trust store for peers' certificates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtensionOID, NameOID

from gateway.errors import KeystoreError, SecurityError
from gateway.formats.pkcs12_entries import key_entries

# Newer (EU-style) enterprise certificates carry the orgnr as organizationIdentifier "NTRNO-<orgnr>".
_NTR_PREFIX = "NTRNO-"
_MAX_CHAIN_DEPTH = 8
# A peer's certificate is checked at the time we received its message; clocks on both sides drift,
# so a certificate that starts or ends this close to that time still counts as valid.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class OrgIdentity:
    orgnr: str | None
    private_key: RSAPrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def orgnr_of(certificate: x509.Certificate) -> str | None:
    """The organisation number in the subject: serialNumber, else organizationIdentifier NTRNO-…"""
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attribute.value).strip()
        if value.isdigit() and len(value) == 9:
            return value
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attribute.value).strip()
        if value.upper().startswith(_NTR_PREFIX) and value[len(_NTR_PREFIX) :].isdigit():
            return value[len(_NTR_PREFIX) :]
    return None


def describe(certificate: x509.Certificate) -> str:
    """A short human name for a certificate: its subject and serial number."""
    return f"'{certificate.subject.rfc4514_string()}' (serial {certificate.serial_number:x})"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"{what} {path} does not exist; check the path in config.yaml") from None
    except OSError as exc:
        raise KeystoreError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _identity(
    key: object, certificate: x509.Certificate | None, chain: Iterable[x509.Certificate], source: Path
) -> OrgIdentity:
    if key is None:
        raise KeystoreError(f"keystore {source} holds no private key")
    if not isinstance(key, RSAPrivateKey):
        raise KeystoreError(f"keystore {source} holds a {type(key).__name__}; eFormidling needs an RSA key")
    if certificate is None:
        raise KeystoreError(f"keystore {source} holds a key but no certificate for it")
    return OrgIdentity(orgnr_of(certificate), key, certificate, tuple(chain))


def load_pkcs12(path: Path, password: str, alias: str | None = None) -> OrgIdentity:
    """Load a key entry of a PKCS#12 keystore: the one named `alias`, or the only one."""
    data = _read(path, "keystore")
    try:
        entries = key_entries(data, password.encode("utf-8"))
    except ValueError:
        raise KeystoreError(f"wrong password for keystore {path} (or the file is not a PKCS#12 keystore)") from None
    except UnsupportedAlgorithm as exc:
        raise KeystoreError(f"keystore {path} uses an unsupported algorithm: {exc}") from None
    except KeystoreError as exc:
        raise KeystoreError(f"keystore {path}: {exc}") from None
    if not entries:
        raise KeystoreError(f"keystore {path} holds no private key")
    names = ", ".join(repr(entry.alias) if entry.alias else "(unnamed)" for entry in entries)
    if alias is None:
        if len(entries) > 1:
            raise KeystoreError(
                f"keystore {path} holds {len(entries)} key entries ({names}); set keystore.alias to the one to use"
            )
        entry = entries[0]
    else:
        # Java keystores lower-case their aliases; compare the way keytool does.
        matching = [entry for entry in entries if (entry.alias or "").lower() == alias.lower()]
        if not matching:
            its = "its key entry is" if len(entries) == 1 else "its key entries are"
            raise KeystoreError(f"keystore {path} has no key entry with alias {alias!r}; {its} {names}")
        entry = matching[0]
    return _identity(entry.key, entry.certificate, entry.chain, path)


def _load_pem_certificates(path: Path, what: str) -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeystoreError(f"{what} {path} holds no PEM certificate") from None


def load_pem(
    key_path: Path, cert_path: Path, chain_path: Path | None = None, key_password: str | None = None
) -> OrgIdentity:
    """Load a PEM private key, its certificate, and optionally the intermediates."""
    key_data = _read(key_path, "key file")
    try:
        key = serialization.load_pem_private_key(
            key_data, key_password.encode("utf-8") if key_password is not None else None
        )
    except TypeError:
        raise KeystoreError(f"key file {key_path} is encrypted; give its password") from None
    except ValueError:
        raise KeystoreError(
            f"wrong password for keystore {key_path} (or the file holds no PEM private key)"
        ) from None
    certificates = _load_pem_certificates(cert_path, "certificate file")
    chain = _load_pem_certificates(chain_path, "chain file") if chain_path else certificates[1:]
    leaf = certificates[0]
    chain = [cert for cert in chain if cert != leaf]
    return _identity(key, leaf, chain, key_path)


def identity_problems(identity: OrgIdentity, expected_orgnr: str, at: datetime) -> list[str]:
    """Everything that keeps this identity from signing and decrypting for `expected_orgnr`."""
    problems: list[str] = []
    certificate = identity.certificate
    if identity.private_key.public_key().public_numbers() != certificate.public_key().public_numbers():
        problems.append(f"the private key does not belong to the certificate {describe(certificate)}")
    if at < certificate.not_valid_before_utc:
        problems.append(
            f"the certificate {describe(certificate)} is not valid yet: valid from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if at > certificate.not_valid_after_utc:
        problems.append(
            f"the certificate {describe(certificate)} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if identity.orgnr is None:
        problems.append(f"the certificate {describe(certificate)} carries no organisation number")
    elif identity.orgnr != expected_orgnr:
        problems.append(
            f"the certificate is for organisation {identity.orgnr}, but config.yaml says {expected_orgnr}"
        )
    return problems


class TrustStore:
    """Trusted CA certificates (roots and intermediates). A path that reaches any of them is trusted.

    Peers often send only their leaf, so intermediates in the store both complete chains and anchor them.
    """

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self._anchors = list(dict.fromkeys(certificates))
        if not self._anchors:
            raise KeystoreError("the trust store is empty; give at least one CA certificate")

    @classmethod
    def from_pem_files(cls, paths: Iterable[Path]) -> TrustStore:
        certificates: list[x509.Certificate] = []
        for path in paths:
            certificates.extend(_load_pem_certificates(Path(path), "trust store file"))
        return cls(certificates)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(self._anchors)

    def verify(
        self, leaf: x509.Certificate, untrusted: Sequence[x509.Certificate] = (), at: datetime | None = None
    ) -> None:
        """Raise SecurityError unless `leaf` chains to this store, every link valid at `at` (give the time
        the certificate was presented: a message's receipt; None means now)."""
        moment = at or datetime.now(UTC)
        problem = self._path_problem(leaf, list(untrusted), moment, depth=0, seen=())
        if problem:
            raise SecurityError(problem)

    def _path_problem(
        self,
        cert: x509.Certificate,
        untrusted: list[x509.Certificate],
        at: datetime,
        depth: int,
        seen: tuple[x509.Certificate, ...],
    ) -> str | None:
        validity = validity_problem(cert, at)
        if validity:
            return validity
        if cert in self._anchors:
            return None
        if depth >= _MAX_CHAIN_DEPTH:
            return f"the certificate chain of {describe(cert)} is longer than {_MAX_CHAIN_DEPTH}"
        candidates = [
            issuer
            for issuer in [*self._anchors, *untrusted]
            if issuer.subject == cert.issuer and issuer not in seen and issuer != cert
        ]
        if not candidates:
            return (
                f"untrusted issuer: {describe(cert)} is issued by '{cert.issuer.rfc4514_string()}', "
                "which is not in the trust store; add that CA (and its intermediates) to the trust store"
            )
        problems = []
        for issuer in dict.fromkeys(candidates):
            link = _link_problem(cert, issuer)
            if link is None:
                link = self._path_problem(issuer, untrusted, at, depth + 1, (*seen, cert))
                if link is None:
                    return None
            problems.append(link)
        return problems[0]


def validity_problem(cert: x509.Certificate, at: datetime, role: str = "certificate") -> str | None:
    """Why `cert` is not valid at `at` (allowing CLOCK_SKEW either way), or None; `role` names it."""
    checked = f"checked at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, {_skew_text()} of clock skew allowed"
    if at + CLOCK_SKEW < cert.not_valid_before_utc:
        return (
            f"{role} {describe(cert)} is not yet valid: valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC ({checked})"
        )
    if at - CLOCK_SKEW > cert.not_valid_after_utc:
        return (
            f"{role} {describe(cert)} has expired: valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC ({checked})"
        )
    return None


def _skew_text() -> str:
    minutes = int(CLOCK_SKEW.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _link_problem(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    try:
        constraints = issuer.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return f"issuer {describe(issuer)} is not a CA (basicConstraints CA is not set)"
    try:
        usage = issuer.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
        if not usage.key_cert_sign:
            return f"issuer {describe(issuer)} may not sign certificates (keyUsage lacks keyCertSign)"
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return f"bad signature in chain: {describe(cert)} is not signed by {describe(issuer)}"
    return None
