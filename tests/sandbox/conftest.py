"""Fixtures for the sandbox tests: a PKI, a catalogue of fictional organisations, a running sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.sandbox import SandboxCatalogue, SandboxOrganisation, SandboxServer
from gateway.sandbox.catalogue import ARKIVMELDING_PROCESSES, DIGITALPOST_PROCESSES, RESPONSE_PROCESS
from gateway.tokens import TokenSource
from tests.sandbox.support import (
    ALL_SCOPES,
    DPF_RECEIVER,
    DPO_RECEIVER,
    DPV_RECEIVER,
    PERSON,
    SENDER,
    Credentials,
    Pki,
    TokenFactory,
    make_ca,
    make_enterprise_certificate,
    tokens_for,
)


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = make_ca("Sandbox test root CA")
    intermediate = make_ca("Sandbox test enterprise CA", issuer=root)
    names = {SENDER: "Avsender etat", DPO_RECEIVER: "Mottaker kommune", DPF_RECEIVER: "Fiks kommune",
             PERSON: "Ola Nordmann"}
    orgs = {orgnr: make_enterprise_certificate(intermediate, orgnr, name) for orgnr, name in names.items()}
    rogue = make_enterprise_certificate(make_ca("Untrusted CA"), SENDER, "Avsender etat")
    return Pki(root, intermediate, orgs, rogue)


@pytest.fixture(scope="session")
def catalogue(pki: Pki) -> SandboxCatalogue:
    dpo = set(ARKIVMELDING_PROCESSES) | {RESPONSE_PROCESS}
    return SandboxCatalogue(
        organisations=[
            SandboxOrganisation(SENDER, "Avsender etat", pki.orgs[SENDER].pem, {"DPO": dpo}),
            SandboxOrganisation(DPO_RECEIVER, "Mottaker kommune", pki.orgs[DPO_RECEIVER].pem, {"DPO": dpo}),
            SandboxOrganisation(DPF_RECEIVER, "Fiks kommune", pki.orgs[DPF_RECEIVER].pem,
                                {"DPF": set(ARKIVMELDING_PROCESSES)}),
            SandboxOrganisation(DPV_RECEIVER, "Liten stiftelse", None, {"DPV": set(ARKIVMELDING_PROCESSES)}),
            SandboxOrganisation(PERSON, "Ola Nordmann", pki.orgs[PERSON].pem, {"DPI": set(DIGITALPOST_PROCESSES)}),
        ],
        trusted_ca_pems=[pki.root.pem, pki.intermediate.pem],
    )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, catalogue: SandboxCatalogue) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), catalogue) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def token_client(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> TokenFactory:
    """token_client(orgnr, scopes=ALL_SCOPES, credentials=None, system_user=True, http=None) -> a token source
    for that org: for Altinn scopes an Altinn token exchanged for the Maskinporten one (as the broker and the
    correspondence service require), naming the org's system user unless system_user=False; for the others
    (the registry's) a Maskinporten token."""

    def build(orgnr: str, scopes: tuple[str, ...] = ALL_SCOPES, credentials: Credentials | None = None,
              system_user: bool = True, http_client: httpx.Client | None = None) -> TokenSource:
        return tokens_for(sandbox, credentials or pki.orgs[orgnr], orgnr, scopes, http_client or http,
                          system_user=system_user)

    return build



