"""The organisation number an enterprise certificate carries, and a short human name for a certificate.

SEID 1 certificates (Buypass "Class 3 CA 3", Commfides CPN) carry the number in `serialNumber`; Buypass
SEID 2 ("G2 ST Business") carry it only in `organizationIdentifier` as `NTRNO-<orgnr>`; Commfides G3
carries both. PSD2 certificates use `PSDNO-FSA-<orgnr>`. A reader of serialNumber alone rejects every
Buypass SEID 2 certificate.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

# organizationIdentifier prefixes (ETSI EN 319 412-1) that hold a Norwegian organisation number.
_ORGANISATION_PREFIXES = ("NTRNO-", "PSDNO-FSA-")
_SERIAL_PREFIXES = ("UN:NO-",)


def _nine_digits(value: str) -> str | None:
    value = value.strip().replace(" ", "")
    return value if len(value) == 9 and value.isdigit() else None


def certificate_orgnr(certificate: x509.Certificate) -> str | None:
    """The organisation number in the subject: serialNumber, else organizationIdentifier NTRNO-/PSDNO-FSA-."""
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attribute.value)
        for prefix in _SERIAL_PREFIXES:
            value = value.removeprefix(prefix)
        found = _nine_digits(value)
        if found:
            return found
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attribute.value).strip()
        for prefix in _ORGANISATION_PREFIXES:
            if value.upper().startswith(prefix):
                found = _nine_digits(value[len(prefix):])
                if found:
                    return found
    return None


def describe(certificate: x509.Certificate) -> str:
    """A short human name for a certificate: its subject and serial number."""
    return f"'{certificate.subject.rfc4514_string()}' (serial {certificate.serial_number:x})"
