"""Altinn's APIs take only Altinn tokens: the broker and the correspondence service refuse a Maskinporten token
and accept the one exchanged for it; the gateway exchanges once per token lifetime, not once per request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.channels.dpo.client import BROKER_READ_SCOPE, DPO_RESOURCE_ID, BrokerClient
from gateway.channels.dpv.client import DPV_PROXY_SCOPE
from gateway.clock import FakeClock
from gateway.maskinporten import SystemUser, default_system_user_name
from gateway.sandbox import SandboxCatalogue, SandboxServer
from gateway.sandbox.correspondence_app import CorrespondenceService
from tests.sandbox.support import SENDER, Pki, authorisation_for

A = f"0192:{SENDER}"


@pytest.fixture
def server(tmp_path: Path, catalogue: SandboxCatalogue) -> Iterator[tuple[SandboxServer, FakeClock]]:
    clock = FakeClock(datetime.now(UTC))
    service = CorrespondenceService()
    with SandboxServer(tmp_path, catalogue, clock=clock, extra_apps={"/correspondence": service}) as sandbox:
        yield sandbox, clock
    service.close()


def test_the_broker_and_the_correspondence_service_refuse_a_maskinporten_token(
    server: tuple[SandboxServer, FakeClock], pki: Pki, http: httpx.Client
) -> None:
    sandbox, clock = server
    auth = authorisation_for(sandbox, pki.orgs[SENDER], SENDER, http, clock)
    user = SystemUser(SENDER, default_system_user_name(SENDER))
    maskinporten = auth.maskinporten((BROKER_READ_SCOPE,), user)()
    listing = f"{sandbox.broker_url}/filetransfer"
    refused = http.get(listing, params={"resourceId": DPO_RESOURCE_ID},
                       headers={"Authorization": f"Bearer {maskinporten}"})
    assert refused.status_code == 401
    assert "exchange" in refused.json()["detail"]
    altinn = auth.altinn((BROKER_READ_SCOPE,), user)()
    claims = jwt.decode(altinn, options={"verify_signature": False})
    assert claims["iss"].endswith("/authentication/api/v1/openid/") and claims["urn:altinn:orgNumber"] == SENDER
    assert claims["exp"] - claims["iat"] == 30 * 60
    accepted = http.get(listing, params={"resourceId": DPO_RESOURCE_ID}, headers={"Authorization": f"Bearer {altinn}"})
    assert accepted.status_code == 200, accepted.text

    correspondence = f"{sandbox.url}/correspondence/api/v1/correspondence"
    dpv_maskinporten = auth.maskinporten((DPV_PROXY_SCOPE,))()
    assert http.get(correspondence, params={"sendersReference": "x"},
                    headers={"Authorization": f"Bearer {dpv_maskinporten}"}).status_code == 401
    dpv_altinn = auth.altinn((DPV_PROXY_SCOPE,))()
    assert http.get(correspondence, params={"sendersReference": "x"},
                    headers={"Authorization": f"Bearer {dpv_altinn}"}).status_code == 200
    # And the other way round: the service registry takes Maskinporten tokens only.
    registry = http.get(f"{sandbox.registry_url}/info/{SENDER}", headers={"Authorization": f"Bearer {dpv_altinn}"})
    assert registry.status_code == 401


def test_one_exchange_per_token_lifetime_not_per_request(
    server: tuple[SandboxServer, FakeClock], pki: Pki, http: httpx.Client
) -> None:
    sandbox, clock = server
    auth = authorisation_for(sandbox, pki.orgs[SENDER], SENDER, http, clock)
    tokens = auth.altinn((BROKER_READ_SCOPE,), SystemUser(SENDER, default_system_user_name(SENDER)))
    broker = BrokerClient(sandbox.broker_url, tokens, http)
    before = sandbox.access_tokens.exchanges.get(SENDER, 0)
    for _ in range(20):
        broker.list_incoming(DPO_RESOURCE_ID)
        clock.advance(60)  # 20 minutes of listing: the Maskinporten token (2 min) expires many times over
    assert sandbox.access_tokens.exchanges[SENDER] - before == 1
    assert tokens.exchanges_made == 1
    clock.advance(10 * 60)  # 30 minutes in: within the last five, a new Altinn token is exchanged before it ends
    broker.list_incoming(DPO_RESOURCE_ID)
    assert sandbox.access_tokens.exchanges[SENDER] - before == 2


class _StillMonotonic:
    """The shared wall clock, with a monotonic clock that stands still: the client keeps its token after the
    service says it has expired (a suspended VM, a token revoked early)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return 0.0


def test_a_401_renews_the_altinn_token_once(server: tuple[SandboxServer, FakeClock], pki: Pki,
                                            http: httpx.Client) -> None:
    sandbox, clock = server
    auth = authorisation_for(sandbox, pki.orgs[SENDER], SENDER, http, _StillMonotonic(clock))  # type: ignore[arg-type]
    tokens = auth.altinn((BROKER_READ_SCOPE,), SystemUser(SENDER, default_system_user_name(SENDER)))
    broker = BrokerClient(sandbox.broker_url, tokens, http)
    broker.list_incoming(DPO_RESOURCE_ID)
    clock.advance(31 * 60)  # the broker now refuses the cached token: renewed once, and the call goes through
    broker.list_incoming(DPO_RESOURCE_ID)
    assert tokens.exchanges_made == 2
