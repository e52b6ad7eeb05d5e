"""The sandbox registry's person records: the five fictional citizens, looked up as the real registry looks a
person up in KRR (the scopes it needs, the records DpiMessageRouter picks, the record's fields)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.identifiers import is_valid_fnr
from gateway.routing import ServiceRegistryClient
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import (
    BUILTIN_PERSONS,
    INFO_PROCESS,
    KRR_SCOPES,
    MAILBOX_PROVIDER,
    MOVED_PERSON,
    PERSON_WITH_MAILBOX,
    PERSON_WITHOUT_MAILBOX,
    PRINT_PROVIDER,
    RESERVED_PERSON,
    UNNOTIFIABLE_PERSON,
    VEDTAK_PROCESS,
)
from tests.dpi_sandbox.conftest import REGISTRY_SCOPES, token, tokens


def lookup(network: SandboxNetwork, http: httpx.Client, fnr: str, scopes: tuple[str, ...] = REGISTRY_SCOPES,
           process: str | None = None, **params: str) -> httpx.Response:
    path = f"/identifier/{fnr}" + (f"/process/{process}" if process else "")
    return http.get(f"{network.server.registry_url}{path}", params=params,
                    headers={"Authorization": f"Bearer {token(network, http, scopes)}", "Accept": "application/json"})


def records(network: SandboxNetwork, http: httpx.Client, fnr: str, **params: str) -> dict[str, list[dict[str, Any]]]:
    """process -> [(channel, physical?) records], from GET /identifier/{fnr}."""
    response = lookup(network, http, fnr, **params)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["infoRecord"] == {"entityType": {"name": "citizen"}, "identifier": fnr}
    found: dict[str, list[dict[str, Any]]] = {INFO_PROCESS: [], VEDTAK_PROCESS: []}
    for record in answer["serviceRecords"]:
        assert record["organisationNumber"] == fnr
        found[record["process"]].append(record)
    return found


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return ["print" if record.get("fysiskPost") else record["service"]["identifier"].lower() for record in found]


def test_every_person_has_a_valid_synthetic_national_identity_number() -> None:
    for person in BUILTIN_PERSONS:
        assert is_valid_fnr(person.fnr), person.fnr
        assert int(person.fnr[2:4]) > 80, "synthetic numbers (month + 80) belong to nobody real"


@pytest.mark.parametrize(("fnr", "info", "vedtak"), [
    (PERSON_WITH_MAILBOX, ["dpi"], ["dpi"]),
    (RESERVED_PERSON, ["print", "dpv"], ["print"]),
    (PERSON_WITHOUT_MAILBOX, ["print", "dpv"], ["print", "dpv"]),
    (UNNOTIFIABLE_PERSON, ["dpi"], ["print"]),
    (MOVED_PERSON, ["print", "dpv"], ["print"]),
])
def test_the_records_are_those_the_real_registry_routes_to(network: SandboxNetwork, http: httpx.Client, fnr: str,
                                                           info: list[str], vedtak: list[str]) -> None:
    found = records(network, http, fnr)
    assert kinds(found[INFO_PROCESS]) == info
    assert kinds(found[VEDTAK_PROCESS]) == vedtak


def test_a_digital_record_names_the_mailbox_its_certificate_and_the_contact_details(
    network: SandboxNetwork, http: httpx.Client, mailbox_certificate: x509.Certificate
) -> None:
    [digital] = records(network, http, PERSON_WITH_MAILBOX)[INFO_PROCESS]
    assert digital["service"] == {"identifier": "DPI", "endpointUrl": network.corner2_url, "serviceCode": None,
                                  "serviceEditionCode": None, "securityLevel": None, "resource": None}
    assert digital["documentTypes"] == ["urn:no:difi:digitalpost:xsd:digital::digital"]
    assert (digital["orgnrPostkasse"], digital["postkasseAdresse"]) == (MAILBOX_PROVIDER[0], "kari.postkasse#1AB2")
    assert (digital["kanVarsles"], digital["fysiskPost"], digital["spraak"]) == (True, False, "nb")
    assert (digital["epostAdresse"], digital["mobilnummer"]) == ("kari.postkasse@example.com", "+4799000001")
    assert x509.load_pem_x509_certificate(digital["pemCertificate"].encode()) == mailbox_certificate
    assert digital["postAddress"] is None and digital["returnAddress"] is None


def test_a_print_record_names_the_print_provider_and_both_addresses(
    network: SandboxNetwork, http: httpx.Client, print_certificate: x509.Certificate
) -> None:
    [printed] = records(network, http, MOVED_PERSON)[VEDTAK_PROCESS]
    assert printed["documentTypes"] == ["urn:no:difi:digitalpost:xsd:fysisk::print"]
    assert (printed["orgnrPostkasse"], printed["postkasseAdresse"], printed["fysiskPost"]) == (
        PRINT_PROVIDER[0], None, True)
    assert x509.load_pem_x509_certificate(printed["pemCertificate"].encode()) == print_certificate
    assert printed["postAddress"] == {"name": "Frida Flyttet", "street": "Gamleveien 99", "postalCode": "4006",
                                      "postalArea": "STAVANGER", "country": "NORGE"}
    assert printed["returnAddress"]["name"] == "Sandkasse kommune"  # the asking organisation's, from BRREG


def test_the_unnotifiable_person_is_said_to_be_so(network: SandboxNetwork, http: httpx.Client) -> None:
    found = records(network, http, UNNOTIFIABLE_PERSON)
    [digital], [printed] = found[INFO_PROCESS], found[VEDTAK_PROCESS]
    assert digital["kanVarsles"] is False and printed["kanVarsles"] is False
    assert digital["epostAdresse"] is None and digital["mobilnummer"] is None


def test_print_false_leaves_the_print_records_out(network: SandboxNetwork, http: httpx.Client) -> None:
    found = records(network, http, RESERVED_PERSON, print="false")
    assert kinds(found[INFO_PROCESS]) == ["dpv"]
    assert kinds(found[VEDTAK_PROCESS]) == []


def test_one_process_is_looked_up_alone(network: SandboxNetwork, http: httpx.Client) -> None:
    response = lookup(network, http, UNNOTIFIABLE_PERSON, process=VEDTAK_PROCESS)
    assert response.status_code == 200
    assert kinds(response.json()["serviceRecords"]) == ["print"]
    assert lookup(network, http, UNNOTIFIABLE_PERSON,
                  process="urn:no:difi:profile:arkivmelding:administrasjon:ver1.0").status_code == 404


def test_a_person_lookup_needs_the_dpi_scope_and_every_krr_scope(network: SandboxNetwork, http: httpx.Client) -> None:
    without_dpi = lookup(network, http, PERSON_WITH_MAILBOX, scopes=("eformidling:dpo", *KRR_SCOPES))
    assert without_dpi.status_code == 403
    without_krr = lookup(network, http, PERSON_WITH_MAILBOX, scopes=("eformidling:dpi", *KRR_SCOPES[:-1]))
    assert without_krr.status_code == 400
    assert KRR_SCOPES[-1] in without_krr.json()["error_description"]
    prefixed = lookup(network, http, PERSON_WITH_MAILBOX,
                      scopes=("eformidling:dpi", *(f"krr:{scope}" for scope in KRR_SCOPES)))
    assert prefixed.status_code == 200


def test_a_signed_person_answer_verifies_against_the_registry_certificate(
    network: SandboxNetwork, http: httpx.Client
) -> None:
    response = http.get(f"{network.server.registry_url}/identifier/{PERSON_WITH_MAILBOX}",
                        headers={"Authorization": f"Bearer {token(network, http, REGISTRY_SCOPES)}",
                                 "Accept": "application/jose"})
    assert response.status_code == 200
    header = jwt.get_unverified_header(response.text)
    signer = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    body = jwt.api_jws.decode(response.text, signer.public_key(), algorithms=["RS256"])
    assert b'"orgnrPostkasse"' in body
    assert signer.public_bytes(serialization.Encoding.PEM) == network.server.signing_key.certificate.public_bytes(
        serialization.Encoding.PEM)


def test_the_gateways_registry_client_reads_and_verifies_the_person_records(
    network: SandboxNetwork, http: httpx.Client
) -> None:
    registry = ServiceRegistryClient(network.server.registry_url, tokens(network, http, REGISTRY_SCOPES), http,
                                     signers=network.registry_signers())
    digital = registry.lookup(PERSON_WITH_MAILBOX, INFO_PROCESS).service_records
    assert [(r.service, r.document_types) for r in digital] == [
        ("DPI", ("urn:no:difi:digitalpost:xsd:digital::digital",))]
    printed = registry.lookup(RESERVED_PERSON, VEDTAK_PROCESS).service_records
    assert [(r.service, r.document_types) for r in printed] == [
        ("DPI", ("urn:no:difi:digitalpost:xsd:fysisk::print",))]


def test_network_yaml_names_corner2_and_the_persons(network: SandboxNetwork) -> None:
    written = yaml.safe_load(network.network_file.read_text(encoding="utf-8"))
    assert written["corner2_url"] == network.corner2_url
    assert set(written["persons"]) == {person.fnr for person in BUILTIN_PERSONS}
    assert written["persons"][MOVED_PERSON]["moved"] is True
    assert written["persons"][PERSON_WITH_MAILBOX]["mailbox"] == "kari.postkasse#1AB2"
