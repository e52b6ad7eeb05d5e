"""Registry answers count only when signed by the registry's certificate (x5c chained to the anchors, with the
registry's organisation number) or by a pinned key."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.devcerts import dev_identity, issue_identity
from gateway.errors import SecurityError
from gateway.formats.keys import OrgIdentity
from gateway.routing import ServiceRegistryClient
from gateway.sandbox.network import SandboxNetwork, start_network
from gateway.trust.policy import SANDBOX_REGISTRY
from gateway.trust.registry import RegistrySigners
from tests.sandbox.support import REGISTRY_SCOPES, Credentials, tokens_for

A, PEER = "991825827", "910075918"
PROCESS = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
BODY = {"infoRecord": {"identifier": PEER, "organizationName": "Mallory"},
        "serviceRecords": [{"process": PROCESS, "service": {"identifier": "DPO"}}]}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("registry-signers")) as running:
        yield running


def x5c(identity: OrgIdentity) -> list[str]:
    chain = [identity.certificate, *(c for c in identity.chain if c.issuer != c.subject)]
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain]


def signed_by(key: object, header_x5c: list[str]) -> str:
    return jwt.api_jws.encode(json.dumps(BODY).encode(), key, algorithm="RS256",  # type: ignore[arg-type]
                              headers={"kid": "k", "x5c": header_x5c})


def impostor(answer: str, signers: RegistrySigners) -> ServiceRegistryClient:
    """A registry host that answers every look-up with `answer` (its /jwk would serve whatever it liked)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=answer,
                                                                   headers={"content-type": "application/jose"}))
    return ServiceRegistryClient("https://sr.test", lambda: "token", httpx.Client(transport=transport),
                                 signers=signers)


def test_the_sandbox_registrys_answers_are_trusted_by_their_chain(network: SandboxNetwork) -> None:
    with httpx.Client(timeout=10) as http:
        identity = dev_identity(network.pki, A)
        tokens = tokens_for(network.server, Credentials(identity.private_key, [identity.certificate]), A,
                            REGISTRY_SCOPES, http)
        registry = ServiceRegistryClient(network.server.registry_url, tokens, http,
                                         signers=network.registry_signers())
        [record] = registry.lookup(PEER, PROCESS).service_records
    assert record.service == "DPO"


def test_an_answer_signed_by_another_organisations_certificate_is_refused(network: SandboxNetwork) -> None:
    other = dev_identity(network.pki, A)  # chains to the same CA, but is not the registry's
    with pytest.raises(SecurityError, match=f"signed with a certificate for {A}.*not the registry's"):
        impostor(signed_by(other.private_key, x5c(other)), network.registry_signers()).lookup(PEER, PROCESS)


def test_an_answer_whose_x5c_names_the_registry_but_another_key_signed_is_refused(network: SandboxNetwork) -> None:
    registry = dev_identity(network.pki, SANDBOX_REGISTRY[0])
    stranger = issue_identity(network.pki, A, "Falsk")
    with pytest.raises(SecurityError, match="bad signature"):
        impostor(signed_by(stranger.private_key, x5c(registry)), network.registry_signers()).lookup(PEER, PROCESS)


def test_a_registry_certificate_from_another_ca_is_refused(network: SandboxNetwork, tmp_path: Path) -> None:
    from gateway.devcerts import create_dev_pki

    forged = dev_identity(create_dev_pki(tmp_path / "forger", {SANDBOX_REGISTRY[0]: "Falsk register"}),
                          SANDBOX_REGISTRY[0])
    with pytest.raises(SecurityError, match="untrusted issuer"):
        impostor(signed_by(forged.private_key, x5c(forged)), network.registry_signers()).lookup(PEER, PROCESS)


def test_an_answer_without_x5c_is_refused(network: SandboxNetwork) -> None:
    registry = dev_identity(network.pki, SANDBOX_REGISTRY[0])
    answer = jwt.api_jws.encode(json.dumps(BODY).encode(), registry.private_key, algorithm="RS256",
                                headers={"kid": "k"})
    with pytest.raises(SecurityError, match="no certificate"):
        impostor(answer, network.registry_signers()).lookup(PEER, PROCESS)


def test_pinned_keys_from_a_jwk_set_or_pem_decide_alone(network: SandboxNetwork, tmp_path: Path) -> None:
    registry = dev_identity(network.pki, SANDBOX_REGISTRY[0])
    other = dev_identity(network.pki, A)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(registry.certificate.public_key(), as_dict=True)
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [jwk]}))
    (tmp_path / "keys.pem").write_bytes(registry.certificate.public_bytes(serialization.Encoding.PEM))
    for pinned_file in ("keys.json", "keys.pem"):
        signers = RegistrySigners.pinned_from_file(tmp_path / pinned_file)
        answer = impostor(signed_by(registry.private_key, []), signers).lookup(PEER, PROCESS)
        assert answer.info_record.identifier == PEER
        with pytest.raises(SecurityError, match="not signed by any of the keys pinned"):
            impostor(signed_by(other.private_key, x5c(other)), signers).lookup(PEER, PROCESS)
