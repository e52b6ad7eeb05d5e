"""One sandbox network for the DPI tests, with Corner 2's delays made short, and the gateway's tokens on it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509

from gateway.devcerts import dev_identity
from gateway.formats.keys import OrgIdentity
from gateway.sandbox.corner2_store import Corner2Options
from gateway.sandbox.network import SandboxNetwork, start_network
from gateway.sandbox.persons import KRR_SCOPES, MAILBOX_PROVIDER, PRINT_PROVIDER
from gateway.tokens import TokenSource
from tests.sandbox.support import Credentials, tokens_for

GATEWAY = "991825827"
DPI_SCOPE = "digitalpostinnbygger:send"
REGISTRY_SCOPES = ("eformidling:dpi", *KRR_SCOPES)
TIMING = Corner2Options(forward_delay_s=0.3, open_delay_s=1.5, print_delay_s=0.5, return_delay_s=1.5)


@pytest.fixture(scope="package")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("dpi-network"), gateways={GATEWAY: "Sandkasse kommune"}, peers=(),
                       corner2=TIMING) as network:
        yield network


@pytest.fixture(scope="package")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def identity(network: SandboxNetwork) -> OrgIdentity:
    return dev_identity(network.pki, GATEWAY)


def tokens(network: SandboxNetwork, http: httpx.Client, scopes: tuple[str, ...]) -> TokenSource:
    """The gateway organisation's Maskinporten tokens for exactly `scopes`, from the sandbox's token endpoint."""
    identity = dev_identity(network.pki, GATEWAY)
    return tokens_for(network.server, Credentials(identity.private_key, [identity.certificate]), GATEWAY, scopes,
                      http)


def token(network: SandboxNetwork, http: httpx.Client, scopes: tuple[str, ...]) -> str:
    return tokens(network, http, scopes)()


@pytest.fixture(scope="package")
def dpi_tokens(network: SandboxNetwork, http: httpx.Client) -> TokenSource:
    return tokens(network, http, (DPI_SCOPE,))


@pytest.fixture
def dpi_token(dpi_tokens: TokenSource) -> str:
    return dpi_tokens()


@pytest.fixture(scope="package")
def mailbox_certificate(network: SandboxNetwork) -> x509.Certificate:
    return dev_identity(network.pki, MAILBOX_PROVIDER[0]).certificate


@pytest.fixture(scope="package")
def print_certificate(network: SandboxNetwork) -> x509.Certificate:
    return dev_identity(network.pki, PRINT_PROVIDER[0]).certificate
