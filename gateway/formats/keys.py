"""The organisation's key and enterprise certificate. The trust store for peers' certificates lives in
gateway/trust/ and is re-exported here for the modules that know it by this name."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gateway.errors import KeystoreError
from gateway.formats.pkcs12_entries import key_entries
from gateway.trust.orgnr import certificate_orgnr, describe
from gateway.trust.store import CLOCK_SKEW, TrustStore, TrustVerdict, validity_problem

__all__ = [
    "CLOCK_SKEW", "OrgIdentity", "TrustStore", "TrustVerdict", "describe", "identity_problems", "load_pem",
    "load_pkcs12", "orgnr_of", "remember_pkcs12", "validity_problem",
]


@dataclass(frozen=True)
class OrgIdentity:
    orgnr: str | None
    private_key: RSAPrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


orgnr_of = certificate_orgnr  # the name the rest of the gateway knows it by


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


# Identities read from PKCS#12 files, by the file's content, password and alias: a process that asks again
# for the same keystore (the sandbox for each of its peers, a daemon's start-up check beside its wiring) gets
# it without another key derivation and RSA key check. The content, not the modification time, keys it: a
# keystore rewritten within the file system's timestamp granularity is still read anew.
_LOADED: dict[tuple[str, str, str | None], OrgIdentity] = {}
_LOADED_LOCK = threading.Lock()


def _cache_key(data: bytes, password: str, alias: str | None) -> tuple[str, str, str | None]:
    secret = hashlib.sha256(password.encode("utf-8")).hexdigest()  # the password itself is not kept
    return (hashlib.sha256(data).hexdigest(), secret, alias)


def remember_pkcs12(data: bytes, password: str, alias: str | None, identity: OrgIdentity) -> None:
    """`identity` is what the keystore `data` (made by this process) holds: load_pkcs12 gives it without
    decrypting and checking the key again (the dev PKI's keystores, made here)."""
    key = _cache_key(data, password, alias)
    with _LOADED_LOCK:
        _LOADED[key] = identity


def load_pkcs12(path: Path, password: str, alias: str | None = None) -> OrgIdentity:
    """Load a key entry of a PKCS#12 keystore: the one named `alias`, or the only one."""
    data = _read(path, "keystore")
    key = _cache_key(data, password, alias)
    with _LOADED_LOCK:
        cached = _LOADED.get(key)
    if cached is not None:
        return cached
    identity = _load_pkcs12(path, data, password, alias)
    with _LOADED_LOCK:
        _LOADED[key] = identity
    return identity


def _load_pkcs12(path: Path, data: bytes, password: str, alias: str | None) -> OrgIdentity:
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
