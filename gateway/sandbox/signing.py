"""The sandbox's own signing key: signs service-registry answers and access tokens.

Kept in the data folder so a restarted sandbox keeps the same key (clients that cached the JWK
set go on verifying). On a sandbox network the key is the registry's enterprise key, its certificate
issued by the dev PKI (`from_identity`): gateways check the `x5c` chain as they do Digdir's. A bare
server makes itself a self-signed one, which only a client that pins it trusts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.fsio import fsync_dir

KEY_FILE = "sandbox-signing-key.pem"
CERT_FILE = "sandbox-signing-cert.pem"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 thumbprint: the `kid` of a key, stable across restarts."""
    numbers = public_key.public_numbers()
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    canonical = json.dumps({"e": _b64url(e), "kty": "RSA", "n": _b64url(n)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _write_private(path: Path, content: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


class SandboxSigningKey:
    """An RSA key with a self-signed certificate (for the `x5c` header) and its `kid`."""

    def __init__(self, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate,
                 chain: tuple[x509.Certificate, ...] = ()) -> None:
        self.private_key = private_key
        self.certificate = certificate
        self.chain = chain  # the intermediates after the certificate in x5c
        self.kid = jwk_thumbprint(private_key.public_key())

    @classmethod
    def from_identity(cls, identity: Any) -> SandboxSigningKey:
        """The key and certificate of an OrgIdentity (the registry's, issued by the dev PKI); its
        intermediates go into x5c, the root stays out, as a real signer's chain does."""
        chain = tuple(cert for cert in identity.chain if cert.issuer != cert.subject)
        return cls(identity.private_key, identity.certificate, chain)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SandboxSigningKey:
        data_dir.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
        if key_path.exists() and cert_path.exists():
            # The sandbox made this key and file itself (below): the RSA key check would only re-prove it.
            private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None,
                                                             unsafe_skip_rsa_key_validation=True)
            assert isinstance(private_key, rsa.RSAPrivateKey)
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            return cls(private_key, certificate)
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "efm-gateway sandbox signing key")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(private_key, hashes.SHA256())
        )
        _write_private(
            key_path,
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        return cls(private_key, certificate)

    def headers(self) -> dict[str, Any]:
        ders = [cert.public_bytes(serialization.Encoding.DER) for cert in (self.certificate, *self.chain)]
        return {"kid": self.kid, "x5c": [base64.b64encode(der).decode("ascii") for der in ders]}

    def sign_bytes(self, payload: bytes) -> str:
        """A compact JWS (RS256) over `payload`."""
        return jwt.api_jws.encode(payload, self.private_key, algorithm="RS256", headers=self.headers())

    def sign_claims(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def jwk_set(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256", "x5c": self.headers()["x5c"]})
        return {"keys": [jwk]}
