"""channels.dpo.system_user_org: the DPO channel's grants name that organisation's Altinn system user (by
default our own, with the reference's default name as externalRef), one scope per token, exchanged for an
Altinn token; the service registry's stay plain; a wrong organisation number stops the daemon with one line."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
import yaml

from gateway.channels.registry import ChannelTools, build_channels, registry_scopes
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.credentials import authorisation_for
from gateway.errors import ConfigError
from gateway.formats.keys import OrgIdentity, TrustStore
from tests.sandbox.support import SENDER, make_ca, make_enterprise_certificate


def _config(tmp_path: Path, dpo: dict) -> Path:
    path = tmp_path / "config.yaml"
    folders = {name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")}
    path.write_text(yaml.safe_dump({
        "organisation": {"orgnr": SENDER},
        "folders": folders,
        "network": {"service_registry_url": "http://sr.test", "token_url": "http://token.test/token",
                    "altinn_exchange_url": "http://altinn.test/authentication/api/v1/exchange/maskinporten"},
        "channels": {"dpo": {"broker_url": "http://broker.test/api/v1", **dpo}},
    }))
    return path


def _channel(tmp_path: Path, dpo: dict, grants: list[dict]):  # type: ignore[no-untyped-def]
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "token.test":
            assertion = dict(item.split("=", 1) for item in request.content.decode().split("&"))["assertion"]
            grants.append(jwt.decode(assertion, options={"verify_signature": False}))
            return httpx.Response(200, json={"access_token": f"token-{len(grants)}", "expires_in": 120})
        if request.url.host == "altinn.test":
            assert request.headers["authorization"].startswith("Bearer token-")
            return httpx.Response(200, text="altinn.token.x")
        assert request.headers["authorization"] == "Bearer altinn.token.x"  # the broker gets the Altinn token
        return httpx.Response(200, json=[])

    config = load_config(_config(tmp_path, dpo))
    credentials = make_enterprise_certificate(make_ca("test CA"), SENDER, "Avsender")
    identity = OrgIdentity(SENDER, credentials.key, credentials.chain[0], tuple(credentials.chain[1:]))
    http = httpx.Client(transport=httpx.MockTransport(handle))
    auth = authorisation_for(config, identity, http, SystemClock())
    tools = ChannelTools(SENDER, identity, TrustStore([credentials.chain[-1]]), auth, http, SystemClock())
    return build_channels(config.channels.enabled(), tools)["DPO"], auth


def test_the_brokers_tokens_name_the_configured_system_user(tmp_path: Path) -> None:
    grants: list[dict] = []
    channel, shared = _channel(tmp_path, {"system_user_org": SENDER, "system_user_external_ref": "ip-1"}, grants)
    assert channel.list_inbound() == []
    assert grants[0]["authorization_details"] == [{
        "type": "urn:altinn:systemuser",
        "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": f"0192:{SENDER}"},
        "externalRef": "ip-1",
    }]
    assert grants[0]["scope"] == "altinn:broker.read"  # listing reads: one scope per token
    shared.maskinporten(registry_scopes({"dpo": None}))()  # the registry's token, from the same client
    assert grants[1]["scope"] == "eformidling:dpo"
    assert "authorization_details" not in grants[1]


def test_without_the_setting_the_grant_names_our_own_system_user(tmp_path: Path) -> None:
    grants: list[dict] = []
    channel, _ = _channel(tmp_path, {}, grants)
    channel.list_inbound()
    assert grants[0]["authorization_details"][0]["systemuser_org"]["ID"] == f"0192:{SENDER}"
    assert grants[0]["authorization_details"][0]["externalRef"] == f"{SENDER}_integrasjonspunkt_systembruker_{SENDER}"


def test_a_system_user_org_with_a_wrong_check_digit_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"channels\.dpo\.system_user_org: .*check digit"):
        _channel(tmp_path, {"system_user_org": "910077474"}, [])
