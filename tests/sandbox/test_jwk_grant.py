"""JWK mode: a key registered on the Maskinporten client signs the Altinn grants (DPO, DPV) with its kid and no
certificate, as the reference does for synthetic test organisations; every other grant keeps the certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import yaml

from gateway.channels.dpo.client import BROKER_READ_SCOPE, DPO_RESOURCE_ID, BrokerClient
from gateway.clock import SystemClock
from gateway.config import Config, load_config
from gateway.credentials import authorisation_for, load_identity
from gateway.errors import ConfigError
from gateway.maskinporten import GrantRefused, SystemUser, default_system_user_name
from gateway.sandbox.network import SandboxNetwork, start_network

ORGNR = "910077473"


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("jwk"), peers=()) as running:
        yield running


def _config(network: SandboxNetwork, folder: Path, **jwk: str) -> Config:
    settings = network.config_snippet(ORGNR)
    settings["network"].update(jwk)
    settings["folders"] = {key: str(folder / key) for key in ("outbox", "status", "inbox", "failed", "sent", "state")}
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(folder / "config.yaml")


def test_the_altinn_grants_name_the_registered_key_and_the_others_keep_the_certificate(
    network: SandboxNetwork, tmp_path: Path
) -> None:
    config = _config(network, tmp_path, **network.jwk_settings(ORGNR))
    clock = SystemClock()
    with httpx.Client(timeout=10) as http:
        auth = authorisation_for(config, load_identity(config, clock.now()), http, clock)
        user = SystemUser(ORGNR, default_system_user_name(ORGNR))
        broker_tokens = auth.altinn((BROKER_READ_SCOPE,), user)
        header = jwt.get_unverified_header(broker_tokens.maskinporten.assertion())
        assert header["kid"] == f"sandbox-jwk-{ORGNR}" and "x5c" not in header
        BrokerClient(network.server.broker_url, broker_tokens, http).list_incoming(DPO_RESOURCE_ID)
        registry = auth.maskinporten(("eformidling:dpo",))
        assert "x5c" in jwt.get_unverified_header(registry.assertion())
        assert registry()


def test_a_kid_not_registered_on_the_client_is_refused(network: SandboxNetwork, tmp_path: Path) -> None:
    settings = network.jwk_settings(ORGNR)
    config = _config(network, tmp_path, jwk_key_id="not-registered", jwk_private_key=settings["jwk_private_key"])
    clock = SystemClock()
    with httpx.Client(timeout=10) as http:
        auth = authorisation_for(config, load_identity(config, clock.now()), http, clock)
        with pytest.raises(GrantRefused) as refusal:
            auth.altinn((BROKER_READ_SCOPE,), SystemUser(ORGNR, default_system_user_name(ORGNR)))()
    assert refusal.value.code == "MP-100" and "not-registered" in str(refusal.value)


def test_the_kid_and_its_key_go_together(network: SandboxNetwork, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"network\.jwk_key_id and network\.jwk_private_key go together"):
        _config(network, tmp_path, jwk_key_id="sandbox-jwk-910077473")
