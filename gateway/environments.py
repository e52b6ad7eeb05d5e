"""Digdir's networks as one table: every endpoint, the token issuer and the trust anchors per environment.

`network.environment` in config.yaml picks a row; each endpoint stays overridable by its own key. The
facts and their sources are in the project's networks notes (the reference integration point's
application-staging and application-production properties); "test" is Digdir's staging environment with
Altinn's tt02. The sandbox has no fixed row: its URLs are those of the loopback sandbox network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

SANDBOX = "sandbox"
TEST = "test"
PRODUCTION = "production"
ENVIRONMENTS = (SANDBOX, TEST, PRODUCTION)


@dataclass(frozen=True)
class Endpoints:
    """One environment's shared addresses. Keys match the config keys they fill (network.*); each channel's own
    rows (its URLs per environment) are in its settings (gateway/channels/<name>/settings.py), and config.py
    asks the channel for them."""

    service_registry_url: str
    token_url: str
    token_audience: str  # Maskinporten's issuer identifier, trailing slash included: the grant's `aud`
    altinn_exchange_url: str  # Maskinporten token -> Altinn token, for every Altinn call
    altinn_health_url: str  # unauthenticated, as the reference's start-up probe of DPV

    @property
    def registry_jwk_url(self) -> str:
        return f"{self.service_registry_url}/jwk"


TABLE: dict[str, Endpoints] = {
    TEST: Endpoints(
        service_registry_url="https://test.eformidling.no/adressetjeneste",
        token_url="https://test.maskinporten.no/token",
        token_audience="https://test.maskinporten.no/",
        altinn_exchange_url="https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten",
        altinn_health_url="https://platform.tt02.altinn.no/health-probe",
    ),
    PRODUCTION: Endpoints(
        service_registry_url="https://eformidling.no/adressetjeneste",
        token_url="https://maskinporten.no/token",
        token_audience="https://maskinporten.no/",
        altinn_exchange_url="https://platform.altinn.no/authentication/api/v1/exchange/maskinporten",
        altinn_health_url="https://platform.altinn.no/health-probe/",
    ),
}

# The Altinn platform's token exchange on the sandbox network, below its root URL.
SANDBOX_EXCHANGE_PATH = "/authentication/api/v1/exchange/maskinporten"


def anchors_file(environment: str) -> Path:
    """The shipped PEM bundle of the CAs whose enterprise certificates `environment` accepts (test, production)."""
    return Path(__file__).resolve().parent / "anchors" / f"{environment}.pem"


def _ca_subjects(environment: str) -> frozenset[bytes]:
    pem = anchors_file(environment).read_bytes()
    return frozenset(certificate.subject.public_bytes() for certificate in x509.load_pem_x509_certificates(pem))


def issuing_environment(certificate: x509.Certificate) -> str | None:
    """TEST or PRODUCTION when one of that environment's CAs issued `certificate`; None when neither did."""
    issuer = certificate.issuer.public_bytes()
    for environment in (TEST, PRODUCTION):
        if issuer in _ca_subjects(environment):
            return environment
    return None


def certificate_environment_problem(certificate: x509.Certificate, environment: str) -> str | None:
    """One line when `certificate` belongs to the other of Digdir's environments than `environment`."""
    if environment not in (TEST, PRODUCTION):
        return None
    issued_for = issuing_environment(certificate)
    if issued_for is None or issued_for == environment:
        return None
    issuer = certificate.issuer.rfc4514_string()
    if issued_for == TEST:
        return (f"the certificate is a TEST certificate (issued by {issuer}), and network.environment is production: "
                "production needs a production enterprise certificate from Buypass or Commfides")
    return (f"the certificate is a PRODUCTION certificate (issued by {issuer}), and network.environment is test: "
            "Digdir's test environment refuses production certificates (Maskinporten MP-120); order a test "
            "enterprise certificate")
