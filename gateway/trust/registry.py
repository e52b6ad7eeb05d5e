"""Who may sign the service registry's answers.

The reference integration point checks an answer against whatever key the same host's `/jwk` serves, so
whoever can answer for that host can sign. Here an answer counts only when
- its `x5c` leaf chains to the trust anchors, is valid and not revoked, may sign (digitalSignature), and
  carries the registry's organisation number (trust.registry_orgnr: Digdir's by default), or
- trust.registry_keys pins the registry's keys (a JWK set, or PEM certificates) and one of them signed it.
`/jwk` is never asked. A verdict on an x5c chain is kept for a few minutes: the registry signs every answer
with the same certificate, and its revocation status need not be fetched for each one.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from gateway.errors import ConfigError, SecurityError
from gateway.trust.orgnr import certificate_orgnr, describe
from gateway.trust.store import Purpose, TrustStore

VERDICT_SECONDS = 300.0


class RegistrySigners:
    """Checks a registry answer's compact JWS and returns its payload; SecurityError when no trusted key signed."""

    def __init__(self, trust: TrustStore | None = None, orgnr: str | None = None,
                 pinned: Sequence[RSAPublicKey] = ()) -> None:
        if not pinned and (trust is None or orgnr is None):
            raise ValueError("the registry's signers need either pinned keys or a trust store and an orgnr")
        self.trust = trust
        self.orgnr = orgnr
        self.pinned = tuple(pinned)
        self._lock = threading.Lock()
        self._trusted: dict[bytes, tuple[float, tuple[str, ...]]] = {}  # leaf DER -> (until, warnings)
        self.warnings: tuple[str, ...] = ()  # of the last accepted chain, for the log

    @classmethod
    def pinned_from_file(cls, path: Path) -> RegistrySigners:
        """Keys from a JWK set (JSON: {"keys": [...]}) or from PEM certificates."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"trust.registry_keys: {path} cannot be read ({exc.strerror})") from None
        keys: list[RSAPublicKey] = []
        try:
            if data.lstrip().startswith(b"{"):
                for jwk in json.loads(data).get("keys", []):
                    if jwk.get("kty") == "RSA":
                        key = RSAAlgorithm.from_jwk(jwk)
                        if isinstance(key, RSAPublicKey):
                            keys.append(key)
            else:
                keys = [cert.public_key() for cert in x509.load_pem_x509_certificates(data)
                        if isinstance(cert.public_key(), RSAPublicKey)]  # type: ignore[misc]
        except (ValueError, KeyError, AttributeError, jwt.PyJWTError) as exc:
            raise ConfigError(
                f"trust.registry_keys: {path} is neither a JWK set nor PEM certificates ({exc})") from None
        if not keys:
            raise ConfigError(f"trust.registry_keys: {path} holds no RSA key")
        return cls(pinned=keys)

    def payload(self, compact: str) -> bytes:
        header = jwt.get_unverified_header(compact)
        if self.pinned:
            for key in self.pinned:
                try:
                    return jwt.api_jws.decode(compact, key, algorithms=["RS256"])
                except jwt.InvalidSignatureError:
                    continue
            raise SecurityError("the service registry's answer is not signed by any of the keys pinned in "
                                "trust.registry_keys; refusing it")
        leaf, chain = self._x5c(header)
        try:
            payload = jwt.api_jws.decode(compact, leaf.public_key(), algorithms=["RS256"])
        except jwt.InvalidSignatureError:
            raise SecurityError("the service registry's answer has a bad signature: it does not verify with the "
                                f"certificate in its x5c header {describe(leaf)}") from None
        self._check_signer(leaf, chain)
        return payload

    def _x5c(self, header: dict[str, Any]) -> tuple[x509.Certificate, list[x509.Certificate]]:
        x5c = header.get("x5c")
        if not isinstance(x5c, list) or not x5c:
            raise SecurityError("the service registry's answer carries no certificate (x5c header), so its signer "
                                "cannot be checked against the trust anchors; refusing it")
        try:
            certificates = [x509.load_der_x509_certificate(base64.b64decode(str(entry), validate=True))
                            for entry in x5c]
        except ValueError as exc:
            raise SecurityError(f"the service registry's x5c header holds no readable certificate ({exc})") from None
        return certificates[0], certificates[1:]

    def _check_signer(self, leaf: x509.Certificate, chain: list[x509.Certificate]) -> None:
        assert self.trust is not None
        key = leaf.tbs_certificate_bytes
        with self._lock:
            known = self._trusted.get(key)
        if known is not None and known[0] > time.monotonic():
            return
        owner = certificate_orgnr(leaf)
        if owner != self.orgnr:
            raise SecurityError(
                f"the service registry's answer is signed with a certificate for {owner or 'no organisation number'} "
                f"{describe(leaf)}, not the registry's ({self.orgnr}, trust.registry_orgnr); refusing it")
        verdict = self.trust.verify(leaf, chain, purpose=Purpose.SIGNING,
                                    role="the service registry's signing certificate")
        with self._lock:
            self._trusted[key] = (time.monotonic() + VERDICT_SECONDS, verdict.warnings)
            self.warnings = verdict.warnings
