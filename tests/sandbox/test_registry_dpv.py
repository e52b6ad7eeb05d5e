"""The sandbox service registry's DPV records: for organisations with no DPO (or DPF) record, as the
real registry answers for anyone in the Central Coordinating Register."""

from __future__ import annotations

import httpx
import pytest

from gateway.routing import ReceiverNotFound, ServiceRegistryClient, choose_route
from gateway.sandbox import SandboxServer
from gateway.sandbox.catalogue import RESPONSE_PROCESS, dpv_resource_for
from tests.sandbox.support import DPO_RECEIVER, DPV_RECEIVER, REGISTRY_SCOPES, SENDER, TokenFactory
from tests.sandbox.test_registry import pinned

ADMINISTRASJON = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
TAUSHETSBELAGT = "urn:no:difi:profile:arkivmelding:taushetsbelagt:ver1.0"
ARKIVMELDING = "urn:no:difi:arkivmelding:xsd::arkivmelding"


@pytest.fixture
def registry(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> ServiceRegistryClient:
    return ServiceRegistryClient(sandbox.registry_url, token_client(SENDER, REGISTRY_SCOPES), http,
                                 signers=pinned(sandbox))


def test_a_dpv_only_receiver_gets_a_dpv_record_with_its_altinn_resource_and_no_certificate(
    registry: ServiceRegistryClient,
) -> None:
    answer = registry.lookup(DPV_RECEIVER, ADMINISTRASJON, security_level=3)
    [record] = answer.service_records
    assert record.service == "DPV"
    assert record.certificate_pem is None
    assert record.process == ADMINISTRASJON and record.document_types == (ARKIVMELDING,)
    assert (record.service_code, record.service_edition_code, record.security_level) == ("4255", "10", 3)
    assert record.resource == "eformidling-dpv-administrasjon"
    assert record.endpoint_url and record.endpoint_url.endswith("/correspondence")
    route = choose_route(answer, ADMINISTRASJON, ARKIVMELDING, is_person=False, security_level=3)
    assert route.channel == "DPV"
    assert registry.lookup(DPV_RECEIVER, TAUSHETSBELAGT).service_records[0].resource == (
        "eformidling-dpv-taushetsbelagt")


def test_dpv_takes_no_receipts_so_the_response_process_is_not_found_for_a_dpv_receiver(
    registry: ServiceRegistryClient,
) -> None:
    with pytest.raises(ReceiverNotFound):
        registry.lookup(DPV_RECEIVER, RESPONSE_PROCESS)
    # and a DPO receiver keeps its DPO records, with the DPO resource
    [record] = registry.lookup(DPO_RECEIVER, ADMINISTRASJON).service_records
    assert (record.service, record.resource) == ("DPO", "eformidling-dpo-meldingsutveksling")


def test_every_arkivmelding_area_has_its_own_dpv_resource() -> None:
    assert dpv_resource_for("urn:no:difi:profile:arkivmelding:helseSosialOgOmsorg:ver1.0") == (
        "eformidling-dpv-helsesosialogomsorg")
    assert dpv_resource_for("urn:no:difi:profile:digitalpost:info:ver1.0") == "eformidling-dpv-administrasjon"
