"""The sandbox service registry and the client the daemon uses against it."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.errors import ConfigError, RetryableChannelError, SecurityError
from gateway.routing import ReceiverNotFound, ServiceRegistryClient, choose_route
from gateway.sandbox import SandboxServer
from gateway.trust.registry import RegistrySigners
from tests.sandbox.support import DPO_RECEIVER, DPV_RECEIVER, REGISTRY_SCOPES, SENDER, Pki, TokenFactory

ADMINISTRASJON = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
ARKIVMELDING = "urn:no:difi:arkivmelding:xsd::arkivmelding"


def pinned(sandbox: SandboxServer) -> RegistrySigners:
    """A bare sandbox server signs with a self-signed key of its own: these tests pin it (a sandbox network's
    registry key is issued by its dev CA instead, and checked as Digdir's is: tests/trust)."""
    assert sandbox.signing_key is not None
    return RegistrySigners(pinned=[sandbox.signing_key.certificate.public_key()])


@pytest.fixture
def registry(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> ServiceRegistryClient:
    return ServiceRegistryClient(sandbox.registry_url, token_client(SENDER, REGISTRY_SCOPES), http,
                                 signers=pinned(sandbox))


def test_a_dpo_receiver_comes_back_with_its_certificate_and_a_reason(registry: ServiceRegistryClient,
                                                                       pki: Pki) -> None:
    answer = registry.lookup(DPO_RECEIVER, ADMINISTRASJON, security_level=3)
    assert answer.info_record.identifier == DPO_RECEIVER
    assert answer.info_record.organization_name == "Mottaker kommune"
    [record] = answer.service_records
    assert record.service == "DPO"
    assert record.certificate_pem == pki.orgs[DPO_RECEIVER].pem
    assert record.document_types == (ARKIVMELDING,)
    assert record.endpoint_url and record.endpoint_url.endswith("/broker/api/v1")
    assert record.resource == "eformidling-dpo-meldingsutveksling"
    route = choose_route(answer, ADMINISTRASJON, ARKIVMELDING, is_person=False, security_level=3)
    assert route.channel == "DPO"
    assert route.reason == f"receiver has a DPO record for process {ADMINISTRASJON}: DPO"


def test_a_dpv_receiver_has_no_certificate(registry: ServiceRegistryClient) -> None:
    [record] = registry.lookup(DPV_RECEIVER, ADMINISTRASJON).service_records
    assert record.service == "DPV"
    assert record.certificate_pem is None


def test_no_record_for_the_process_is_receiver_not_found(registry: ServiceRegistryClient) -> None:
    avtalt = "urn:no:difi:profile:avtalt:avtalt:ver1.0"
    with pytest.raises(ReceiverNotFound, match=f"no record of {DPO_RECEIVER} for process {avtalt}"):
        registry.lookup(DPO_RECEIVER, avtalt)
    with pytest.raises(ReceiverNotFound):
        registry.lookup("974720760", ADMINISTRASJON)  # valid, but not on the sandbox network


def test_a_second_lookup_is_served_from_the_cache(sandbox: SandboxServer, token_client: TokenFactory) -> None:
    requests: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: requests.append(r.url.path)]}) as counting:
        registry = ServiceRegistryClient(sandbox.registry_url, token_client(SENDER, REGISTRY_SCOPES), counting,
                                         signers=pinned(sandbox))
        first = registry.lookup(DPO_RECEIVER, ADMINISTRASJON, security_level=3)
        lookups = [p for p in requests if "/identifier/" in p]
        assert registry.lookup(DPO_RECEIVER, ADMINISTRASJON, security_level=3) == first
        assert [p for p in requests if "/identifier/" in p] == lookups == [
            f"/sr/identifier/{DPO_RECEIVER}/process/{ADMINISTRASJON}"
        ]


def test_the_same_question_asked_at_once_costs_one_request_and_the_waiters_count_as_hits(
    sandbox: SandboxServer, token_client: TokenFactory
) -> None:
    requests: list[str] = []

    def slow(request: httpx.Request) -> None:
        if "/identifier/" in request.url.path:
            requests.append(request.url.path)
            time.sleep(0.5)  # the others ask while this one is on the way

    with httpx.Client(event_hooks={"request": [slow]}) as counting:
        registry = ServiceRegistryClient(sandbox.registry_url, token_client(SENDER, REGISTRY_SCOPES), counting,
                                         signers=pinned(sandbox))
        start = threading.Barrier(5)

        def ask() -> object:
            start.wait()
            return registry.lookup(DPO_RECEIVER, ADMINISTRASJON, security_level=3)

        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: ask(), range(5)))
    assert len(requests) == 1
    assert all(answer == answers[0] for answer in answers)
    assert (registry.cache_hits, registry.cache_misses) == (4, 1)


def test_an_unreachable_registry_is_retryable(token_client: TokenFactory, http: httpx.Client) -> None:
    registry = ServiceRegistryClient("http://127.0.0.1:9/sr", token_client(SENDER, REGISTRY_SCOPES), http,
                                     signers=RegistrySigners(pinned=[_key().public_key()]))
    with pytest.raises(RetryableChannelError, match="network error"):
        registry.lookup(DPO_RECEIVER, ADMINISTRASJON)


def test_the_registry_wants_a_token_and_signs_with_kid_and_x5c(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    url = f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}/process/{ADMINISTRASJON}"
    assert http.get(url).status_code == 401
    token = token_client(SENDER, REGISTRY_SCOPES).access_token()
    signed = http.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/jose"})
    assert signed.headers["content-type"].startswith("application/jose")
    header = jwt.get_unverified_header(signed.text)
    assert header["alg"] == "RS256" and header["kid"] and header["x5c"]
    keys = http.get(f"{sandbox.registry_url}/jwk").json()["keys"]
    assert [k["kid"] for k in keys] == [header["kid"]]


def test_the_plain_answer_has_the_shape_of_the_real_registry(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, reference_dir: Path
) -> None:
    sample = json.loads((reference_dir / "samples/service-registry/910075918.json").read_text())
    token = token_client(SENDER, REGISTRY_SCOPES).access_token()
    ours = http.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}/process/{ADMINISTRASJON}",
                    headers={"Authorization": f"Bearer {token}"}).json()
    assert set(sample) == set(ours)
    assert set(sample["infoRecord"]) <= set(ours["infoRecord"])
    assert set(sample["serviceRecords"][0]) <= set(ours["serviceRecords"][0])
    assert set(sample["serviceRecords"][0]["service"]) <= set(ours["serviceRecords"][0]["service"])


# A registry impostor, for what the real sandbox never does: tampered or foreign signatures.

def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _impostor(published_key: rsa.RSAPrivateKey, answer: str | None, calls: list[str]) -> httpx.Client:
    jwk = RSAAlgorithm.to_jwk(published_key.public_key(), as_dict=True) | {"kid": "published"}

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/jwk"):
            return httpx.Response(200, json={"keys": [jwk]})
        if answer is None:
            return httpx.Response(200, json={"infoRecord": {"identifier": DPO_RECEIVER}, "serviceRecords": []})
        return httpx.Response(200, text=answer, headers={"content-type": "application/jose"})

    return httpx.Client(transport=httpx.MockTransport(handle))


def _signed(key: rsa.RSAPrivateKey, kid: str, body: dict) -> str:
    return jwt.api_jws.encode(json.dumps(body).encode(), key, algorithm="RS256", headers={"kid": kid})


GOOD_BODY = {"infoRecord": {"identifier": DPO_RECEIVER, "organizationName": "x"},
             "serviceRecords": [{"process": ADMINISTRASJON, "service": {"identifier": "DPO"}}]}


def test_an_answer_with_a_tampered_payload_is_refused() -> None:
    key, calls = _key(), []
    header, _, signature = _signed(key, "published", GOOD_BODY).split(".")
    forged = dict(GOOD_BODY, infoRecord={"identifier": DPO_RECEIVER, "organizationName": "Mallory"})
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{payload}.{signature}"
    registry = ServiceRegistryClient("https://sr.test", lambda: "token", _impostor(key, tampered, calls),
                                     signers=RegistrySigners(pinned=[key.public_key()]))
    with pytest.raises(SecurityError, match="not signed by any of the keys pinned"):
        registry.lookup(DPO_RECEIVER, ADMINISTRASJON)


def test_an_answer_signed_by_another_key_is_refused_and_the_jwk_endpoint_is_never_asked() -> None:
    published, stranger, calls = _key(), _key(), []
    registry = ServiceRegistryClient(
        "https://sr.test", lambda: "token", _impostor(published, _signed(stranger, "stranger", GOOD_BODY), calls),
        signers=RegistrySigners(pinned=[published.public_key()]),
    )
    with pytest.raises(SecurityError, match="not signed by any of the keys pinned"):
        registry.lookup(DPO_RECEIVER, ADMINISTRASJON)
    assert "/jwk" not in calls  # whatever the host serves as its key set is no proof of anything


def test_an_unsigned_answer_is_refused() -> None:
    key = _key()
    registry = ServiceRegistryClient("https://sr.test", lambda: "token", _impostor(key, None, []),
                                     signers=RegistrySigners(pinned=[key.public_key()]))
    with pytest.raises(SecurityError, match="without a signature"):
        registry.lookup(DPO_RECEIVER, ADMINISTRASJON)


def test_plain_http_is_refused_except_on_loopback() -> None:
    signers = RegistrySigners(pinned=[_key().public_key()])
    with pytest.raises(ConfigError, match="https only"):
        ServiceRegistryClient("http://sr.test/adressetjeneste", lambda: "token", httpx.Client(), signers=signers)
    for loopback in ("http://127.0.0.1:9/sr", "http://localhost:9/sr", "http://[::1]:9/sr"):
        ServiceRegistryClient(loopback, lambda: "token", httpx.Client(), signers=signers)
