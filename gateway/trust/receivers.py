"""The receiver's certificate from a service record, checked before a single byte is encrypted to it.

The reference integration point only parses the record's pemCertificate; here it must chain to the
trust anchors, be valid now and not revoked, allow key encipherment, and belong to the one it is meant
for: the receiver itself (DPO), or KS's SvarUt (DPF: documents are encrypted to KS). An organisation
served by another's integration point (a sub-unit by its parent, an organisation by its host) is
accepted only where the service record names that organisation (its organisationNumber) or
trust.served_by lists it; the status file then says whose certificate it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509

from gateway.errors import PermanentChannelError, RetryableChannelError, SecurityError
from gateway.trust.orgnr import certificate_orgnr, describe
from gateway.trust.store import Purpose, RevocationUnavailable, TrustStore


@dataclass(frozen=True)
class ReceiverCertificate:
    certificate: x509.Certificate
    owner: str  # the organisation number in the certificate
    note: str  # for the status file: whose certificate the message was encrypted to, and why that one


class ReceiverTrust:
    """Checks the certificates we encrypt to: `trust` for the chain, `served_by` and `svarut_orgnr` for whose."""

    def __init__(self, trust: TrustStore, served_by: Mapping[str, tuple[str, ...]] | None = None,
                 svarut_orgnr: str | None = None) -> None:
        self.trust = trust
        self.served_by = {receiver: tuple(owners) for receiver, owners in (served_by or {}).items()}
        self.svarut_orgnr = svarut_orgnr

    def check(self, receiver: str, pem: str | None, record_orgnr: str | None = None,
              dpf: bool = False) -> ReceiverCertificate:
        """The certificate to encrypt to for `receiver`; PermanentChannelError (FEIL) with the reason when it
        may not be used, RetryableChannelError when its revocation status cannot be had now (refuse)."""
        what = ("KS SvarUt's certificate from the DPF record" if dpf
                else f"the certificate the registry gave for {receiver}")
        if not pem:
            raise PermanentChannelError(f"the service registry gave no certificate ({what}) to encrypt to")
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise PermanentChannelError(f"{what} is not a readable PEM certificate") from None
        owner = certificate_orgnr(certificate)
        note = self._whose(receiver, owner, record_orgnr, dpf, certificate)
        assert owner is not None  # _whose refuses a certificate without one
        try:
            verdict = self.trust.verify(certificate, purpose=Purpose.ENCRYPTION, role=f"the certificate of {owner}")
        except RevocationUnavailable as exc:
            raise RetryableChannelError(f"not encrypted to {owner}'s certificate yet: {exc}") from None
        except SecurityError as exc:
            raise PermanentChannelError(f"refused before encrypting: {exc}") from None
        return ReceiverCertificate(certificate, owner, "; ".join([note, *verdict.warnings]))

    def _whose(self, receiver: str, owner: str | None, record_orgnr: str | None, dpf: bool,
               certificate: x509.Certificate) -> str:
        serial = f"serial {certificate.serial_number:x}"
        if owner is None:
            raise PermanentChannelError(
                f"refused before encrypting: the registry gave a certificate {describe(certificate)} that carries no "
                f"organisation number (serialNumber or organizationIdentifier NTRNO-), for receiver {receiver}")
        if dpf:
            if self.svarut_orgnr is not None and owner != self.svarut_orgnr:
                raise PermanentChannelError(
                    f"refused before encrypting: the DPF record's certificate is for {owner}, not KS SvarUt "
                    f"({self.svarut_orgnr}); set trust.svarut_orgnr if KS uses another organisation number")
            return f"documents encrypted to KS SvarUt's certificate ({owner}, {serial})"
        if owner == receiver:
            return f"encrypted to {receiver}'s own certificate ({serial})"
        if record_orgnr == owner:
            return (f"encrypted to {owner}'s certificate ({serial}): the service record names {owner} as the "
                    f"integration point of {receiver}")
        if owner in self.served_by.get(receiver, ()):
            return (f"encrypted to {owner}'s certificate ({serial}): trust.served_by lets {owner} receive for "
                    f"{receiver}")
        raise PermanentChannelError(
            f"refused before encrypting: the registry gave a certificate for {owner}, not the receiver {receiver}; "
            f"if {owner} receives for {receiver} (its parent or host), list it under trust.served_by.{receiver}")
