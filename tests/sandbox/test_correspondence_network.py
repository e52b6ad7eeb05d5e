"""DPV on the whole sandbox network (`start_network`, as `efm-gateway sandbox` runs it): the built-in
DPV-only organisations are in the registry and reachable through the correspondence service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.channels.dpv.client import CORRESPONDENCE_READ_SCOPE, CORRESPONDENCE_WRITE_SCOPE, CorrespondenceClient
from gateway.channels.dpv.models import Attachment, NotificationRequest
from gateway.devcerts import dev_identity
from gateway.routing import ReceiverNotFound, ServiceRegistryClient
from gateway.sandbox.network import BUILTIN_ORGANISATIONS, FAILING_DPV_RECIPIENTS, SandboxNetwork, start_network
from gateway.tokens import TokenSource
from tests.sandbox.support import Credentials, tokens_for

GATEWAY = "991825827"
MAILBOX_ONLY = "974760673"
FAILING = "921000014"
ADMINISTRASJON = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
DIGITALPOST_INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("dpv-network"), gateways={GATEWAY: "Sandkasse kommune"},
                       peers=()) as network:
        yield network


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def tokens(network: SandboxNetwork, http: httpx.Client, registry: bool = False) -> TokenSource:
    """The gateway's Altinn token for the correspondence service, or its Maskinporten token for the registry."""
    identity = dev_identity(network.pki, GATEWAY)
    credentials = Credentials(identity.private_key, [identity.certificate])
    scopes = ("eformidling:dpo",) if registry else (CORRESPONDENCE_WRITE_SCOPE, CORRESPONDENCE_READ_SCOPE)
    return tokens_for(network.server, credentials, GATEWAY, scopes, http, system_user=False)


def test_the_mailbox_only_organisations_have_dpv_records_and_nothing_else(
    network: SandboxNetwork, http: httpx.Client
) -> None:
    registry = ServiceRegistryClient(network.server.registry_url, tokens(network, http, registry=True), http,
                                     signers=network.registry_signers())
    for orgnr in (MAILBOX_ONLY, FAILING):
        assert BUILTIN_ORGANISATIONS[orgnr].role == "dpv"
        for process in (ADMINISTRASJON, DIGITALPOST_INFO):
            [record] = registry.lookup(orgnr, process).service_records
            assert (record.service, record.certificate_pem) == ("DPV", None)
        with pytest.raises(ReceiverNotFound):
            registry.lookup(orgnr, "urn:no:difi:profile:avtalt:avtalt:ver1.0")
    [digital] = registry.lookup(MAILBOX_ONLY, DIGITALPOST_INFO).service_records
    assert digital.document_types == ("urn:no:difi:digitalpost:xsd:digital::digital_dpv",)
    written = yaml.safe_load(network.network_file.read_text(encoding="utf-8"))
    assert written["correspondence_url"] == network.correspondence_url
    assert written["organisations"][FAILING]["role"] == "dpv"


def test_a_correspondence_to_the_mailbox_only_organisation_is_read_on_its_own(
    network: SandboxNetwork, http: httpx.Client, tmp_path: Path
) -> None:
    client = CorrespondenceClient(network.correspondence_url, tokens(network, http), http)
    letter = tmp_path / "brev.pdf"
    letter.write_bytes(b"%PDF-1.7 brev")

    def send(to: str, message_id: str) -> str:
        return client.upload(
            resource_id="eformidling-dpv-administrasjon", sender=GATEWAY, recipient=to, title="Brev",
            summary="Brev", body="Brev", message_id=message_id,
            attachments=[Attachment("brev.pdf", "Brev", "application/pdf", letter)],
            notification=NotificationRequest(channel="Email", email_subject="Ny melding",
                                             email_body="$correspondenceRecipientName$ har fått en melding"),
        )

    delivered = send(MAILBOX_ONLY, "0c5a3f0e-3d51-4c8e-9a4c-1f7e2b6d9a01")
    failed = send(FAILING, "0c5a3f0e-3d51-4c8e-9a4c-1f7e2b6d9a02")
    assert client.details(delivered).status == "Published"
    deadline = time.monotonic() + 15
    while client.overview(delivered).status != "Read" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert client.overview(delivered).status == "Read"  # the default: read 3 s after publishing
    [sent] = network.correspondence.store.notifications(MAILBOX_ONLY)
    assert sent.email_body == "Postkasse AS (kun Altinn) har fått en melding"
    details = client.details(failed)
    assert (details.status, details.status_text) == ("Failed", FAILING_DPV_RECIPIENTS[FAILING])
