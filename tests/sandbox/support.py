"""Test support for the sandbox tests: a small PKI made inline, and the fictional organisations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.altinn_tokens import AltinnTokens
from gateway.authorisation import Authorisation
from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE
from gateway.clock import Clock, SystemClock
from gateway.maskinporten import GrantKey, Maskinporten, SystemUser, default_client_id, default_system_user_name
from gateway.tokens import TokenSource

SENDER = "910077473"  # DPO both ways: the gateway under test
DPO_RECEIVER = "910075918"  # DPO for arkivmelding and responses
DPF_RECEIVER = "910076787"  # a municipality on SvarInn
DPV_RECEIVER = "991825827"  # no integration point: Altinn mailbox only
PERSON = "09118532322"  # a citizen with a digital mailbox
ALL_SCOPES = (BROKER_READ_SCOPE, BROKER_WRITE_SCOPE)  # the broker's: an Altinn token
REGISTRY_SCOPES = ("eformidling:dpo",)  # the service registry's: a Maskinporten token


@dataclass(frozen=True)
class Credentials:
    """An enterprise key and the chain to send in x5c (leaf first)."""

    key: rsa.RSAPrivateKey
    chain: list[x509.Certificate]

    @property
    def pem(self) -> str:
        return self.chain[0].public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(common_name: str, issuer: Credentials | None = None) -> Credentials:
    """A root CA (issuer None) or an intermediate CA signed by `issuer`."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    signer_key = issuer.key if issuer else key
    issuer_cert = issuer.chain[0] if issuer else None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    certificate = builder.sign(signer_key, hashes.SHA256())
    chain = [certificate] + (issuer.chain if issuer else [])
    return Credentials(key, chain)


def make_enterprise_certificate(ca: Credentials, orgnr: str, name: str) -> Credentials:
    """An enterprise certificate (virksomhetssertifikat): the orgnr in the subject's serialNumber."""
    key = _key()
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr),
        ]))
        .issuer_name(ca.chain[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Credentials(key, [certificate, *ca.chain[:-1]])  # leaf, intermediates; never the root


@dataclass(frozen=True)
class Pki:
    root: Credentials
    intermediate: Credentials
    orgs: dict[str, Credentials]
    rogue: Credentials  # the sender's orgnr, from a CA nobody trusts


TokenFactory = Callable[..., TokenSource]


class _Server(Protocol):
    token_url: str
    token_audience: str
    altinn_exchange_url: str


def authorisation_for(server: _Server, credentials: Credentials, orgnr: str, http: httpx.Client,
                      clock: Clock | None = None) -> Authorisation:
    """The org's tokens on a sandbox, as a gateway makes them (its client MOVE_IP_<orgnr>, the leaf in x5c)."""
    clock = clock or SystemClock()
    maskinporten = Maskinporten(server.token_url, server.token_audience, default_client_id(orgnr),
                                GrantKey(credentials.key, certificate=credentials.chain[0]), http, clock)
    return Authorisation(maskinporten, server.altinn_exchange_url, http, clock)


def tokens_for(server: _Server, credentials: Credentials, orgnr: str, scopes: tuple[str, ...], http: httpx.Client,
               system_user: bool = True, clock: Clock | None = None) -> TokenSource:
    """An Altinn token source for Altinn scopes (naming the org's system user unless system_user=False), a
    Maskinporten one for the others."""
    auth = authorisation_for(server, credentials, orgnr, http, clock)
    if any(scope.startswith("altinn:") or scope == "eformidling:dpv" for scope in scopes):
        user = SystemUser(orgnr, default_system_user_name(orgnr)) if system_user else None
        tokens: AltinnTokens = auth.altinn(scopes, user)
        return tokens
    return auth.maskinporten(scopes)
