"""The few DER building blocks the CMS writers assemble by hand, and a fast name comparison.

asn1crypto is slow at building structures and at comparing names; these keep it to parsing.
"""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509

from gateway.trust import asn1_classes  # noqa: F401 - asn1crypto's classes set up before any thread uses them


def length(size: int) -> bytes:
    """A DER length: short form below 128, else long form."""
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int, *parts: bytes) -> bytes:
    """A DER element: `tag`, the length of the joined parts, the parts."""
    body = b"".join(parts)
    return bytes([tag]) + length(len(body)) + body


def set_of(*elements: bytes) -> bytes:
    """A DER SET OF: its elements ordered by their encodings (X.690 11.6)."""
    return tlv(0x31, *sorted(elements))


def same_name(first: asn1_x509.Name, second: asn1_x509.Name) -> bool:
    """X.500 name equality (RFC 5280 7.1), with the usual case first: the very same encoding.

    asn1crypto's own comparison runs LDAP string preparation on every value, which costs more than
    the RSA verification it serves.
    """
    return first.dump() == second.dump() or first == second
