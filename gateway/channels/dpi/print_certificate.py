"""The print service's certificate: fetched anonymously from KRR (`printSertifikat`), kept for a while, and
checked as every certificate we encrypt to is (its chain to the trust anchors, validity, revocation, key use).

KRR answers with the certificate itself (PEM, or base64 DER) or wrapped in JSON; all three are read. Without a
URL configured the print record's own certificate from the registry is used, checked the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.clock import Clock
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.trust.orgnr import certificate_orgnr
from gateway.trust.receivers import ReceiverCertificate, ReceiverTrust

_JSON_KEYS = ("x509Sertifikat", "printSertifikat", "sertifikat", "certificate", "pemCertificate")


def certificate_from(body: bytes) -> x509.Certificate:
    """The certificate in KRR's answer; ValueError when there is none."""
    text = body.strip()
    if text.startswith(b"{"):
        answer = json.loads(text)
        value = next((answer[key] for key in _JSON_KEYS if isinstance(answer, dict) and answer.get(key)), None)
        if not isinstance(value, str):
            raise ValueError(f"the JSON answer holds none of {', '.join(_JSON_KEYS)}")
        text = value.encode("ascii").strip()
    if b"-----BEGIN CERTIFICATE-----" in text:
        return x509.load_pem_x509_certificate(text)
    try:
        return x509.load_der_x509_certificate(base64.b64decode(b"".join(text.split()), validate=True))
    except binascii.Error:
        raise ValueError("the answer is neither PEM, base64 DER nor JSON") from None


class PrintCertificates:
    """One print certificate at a time, fetched again after `cache_seconds`; threads share one fetch."""

    def __init__(self, url: str | None, http: httpx.Client, receivers: ReceiverTrust, clock: Clock,
                 cache_seconds: float = 3600.0, timeout: float = 30.0) -> None:
        self.url = url
        self.http = http
        self.receivers = receivers
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cached: tuple[float, str] | None = None
        self.fetches = 0

    def _pem(self) -> str:
        assert self.url
        now = self.clock.monotonic()
        with self._lock:
            if self._cached and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            what = f"fetching the print service's certificate from {self.url}"
            try:
                response = self.http.get(self.url, headers={"Accept": "application/json, application/x-pem-file, */*"},
                                         timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise RetryableChannelError(f"{what}: {type(exc).__name__}: {exc}") from None
            self.fetches += 1
            if response.status_code >= 500 or response.status_code == 429:
                raise RetryableChannelError(f"{what}: HTTP {response.status_code}")
            if response.status_code != 200:
                raise PermanentChannelError(f"{what}: HTTP {response.status_code}; check channels.dpi."
                                            "print_certificate_url")
            try:
                certificate = certificate_from(response.content)
            except (ValueError, UnicodeError) as exc:
                raise PermanentChannelError(f"{what}: no certificate in the answer ({exc})") from None
            pem = certificate.public_bytes(Encoding.PEM).decode("ascii")
            self._cached = (now, pem)
            return pem

    def certificate(self, record_pem: str | None) -> ReceiverCertificate:
        """The print service's certificate, checked; `record_pem` (the registry's print record) when there is
        no URL to fetch it from."""
        pem = self._pem() if self.url else record_pem
        return check(self.receivers, pem, "the print service")


def check(receivers: ReceiverTrust, pem: str | None, whose: str, owner_expected: str | None = None,
          ) -> ReceiverCertificate:
    """`pem` checked as a certificate we encrypt to: a mailbox or print provider's, not the person's the letter
    is for; with `owner_expected`, the organisation the record names as that provider must be its owner."""
    if not pem:
        raise PermanentChannelError(f"no certificate for {whose} to encrypt the letter to")
    try:
        owner = certificate_orgnr(x509.load_pem_x509_certificate(pem.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        raise PermanentChannelError(f"the certificate of {whose} is not a readable PEM certificate") from None
    if owner_expected and owner != owner_expected:
        raise PermanentChannelError(f"refused before encrypting: the certificate of {whose} belongs to "
                                    f"{owner or 'no organisation'}, not to {owner_expected}, which the person's "
                                    "record names as the provider")
    checked = receivers.check(owner or "the provider", pem)
    return ReceiverCertificate(checked.certificate, checked.owner,
                               f"encrypted to {whose}'s certificate ({checked.owner}, serial "
                               f"{checked.certificate.serial_number:x})")
