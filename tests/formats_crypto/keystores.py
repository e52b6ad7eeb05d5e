"""Building keystores with several key entries, as real ones are: cryptography writes one entry a file."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from asn1crypto import cms as asn1_cms
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.formats.keys import OrgIdentity

_MAC_ITERATIONS = 2048


def _pkcs12_kdf(password: str, salt: bytes, purpose: int, iterations: int, size: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-256 (purpose 3: the MAC key)."""
    u, v = 32, 64

    def stretch(value: bytes) -> bytes:
        length = v * -(-len(value) // v)
        return (value * (length // len(value) + 1))[:length] if value else b""

    derived = b""
    block_input = stretch(salt) + stretch(password.encode("utf-16-be") + b"\x00\x00")
    while len(derived) < size:
        digest = hashlib.sha256(bytes([purpose]) * v + block_input).digest()
        for _ in range(iterations - 1):
            digest = hashlib.sha256(digest).digest()
        derived += digest
        addend = int.from_bytes((digest * (v // u + 1))[:v], "big") + 1
        block_input = b"".join(
            ((int.from_bytes(block_input[at : at + v], "big") + addend) % (1 << (8 * v))).to_bytes(v, "big")
            for at in range(0, len(block_input), v)
        )
    return derived[:size]


def single_entry(identity: OrgIdentity, alias: str, password: str) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        alias.encode(),
        identity.private_key,
        identity.certificate,
        list(identity.chain),
        serialization.BestAvailableEncryption(password.encode()),
    )


def multi_entry_keystore(path: Path, entries: Sequence[tuple[str, OrgIdentity]], password: str) -> Path:
    """One PKCS#12 with a key entry per (alias, identity), each with its own chain, MAC'd with SHA-256."""
    safe_contents = []
    for alias, identity in entries:
        pfx = asn1_pkcs12.Pfx.load(single_entry(identity, alias, password))
        safe_contents.extend(info.copy() for info in pfx.authenticated_safe)
    authenticated_safe = asn1_pkcs12.AuthenticatedSafe(safe_contents).dump()
    salt = os.urandom(16)
    mac_key = _pkcs12_kdf(password, salt, 3, _MAC_ITERATIONS, 32)
    mac = hmac.new(mac_key, authenticated_safe, hashlib.sha256).digest()
    pfx = asn1_pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": asn1_cms.ContentInfo({"content_type": "data", "content": authenticated_safe}),
            "mac_data": asn1_pkcs12.MacData(
                {
                    "mac": {"digest_algorithm": {"algorithm": "sha256"}, "digest": mac},
                    "mac_salt": salt,
                    "iterations": _MAC_ITERATIONS,
                }
            ),
        }
    )
    path.write_bytes(pfx.dump())
    return path
