"""network.environment fills every endpoint from one table; each stays overridable; outside the sandbox the
client id is required, every URL is https, and the other environment's certificate is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography import x509

from gateway.config import load_config
from gateway.environments import PRODUCTION, TEST, anchors_file, certificate_environment_problem, issuing_environment
from gateway.errors import ConfigError
from tests.conftest import REFERENCE

LEAVES = REFERENCE / "vectors" / "pki" / "leaf"
TEST_LEAF = LEAVES / "buypass-g2st-test_digdir-NTRNO-991825827_2026-09-05_expired.pem"
TEST_LEAF_COMMFIDES = LEAVES / "commfides-g3-test_digdir-991825827_2028-11-28.pem"
PRODUCTION_LEAF = LEAVES / "commfides-g3-PROD_ks-971032146_sign_2026-09-27_expired.pem"
CLIENT_ID = "0f6b5d6e-3c1a-4b8e-9a43-7d2f1c9e6a15"


def _load(tmp_path: Path, network: dict, channels: dict | None = None, **sections: dict):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "organisation": {"orgnr": "991825827"},
        "folders": {key: f"var/{key}" for key in ("outbox", "status", "inbox", "failed", "sent", "state")},
        "network": network,
        "channels": channels if channels is not None else {"dpo": {}, "dpv": {}},
        **sections,
    }))
    return load_config(path)


def test_test_fills_in_digdirs_test_endpoints(tmp_path: Path) -> None:
    config = _load(tmp_path, {"environment": "test", "client_id": CLIENT_ID})
    network = config.network
    assert network.service_registry_url == "https://test.eformidling.no/adressetjeneste"
    assert network.token_url == "https://test.maskinporten.no/token"
    assert network.token_audience == "https://test.maskinporten.no/"
    assert network.altinn_exchange_url == (
        "https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten")
    assert config.channels.dpo.broker_url == "https://platform.tt02.altinn.no/broker/api/v1"
    assert config.channels.dpv.correspondence_url == (
        "https://test.eformidling.no/altinn-proxy/correspondence/api/v1")
    assert set(config.channels.enabled()) == {"dpo", "dpv"}  # DPF's block is absent: not used
    assert config.trust.ca_bundle == anchors_file(TEST)


def test_production_fills_in_production_and_each_endpoint_stays_overridable(tmp_path: Path) -> None:
    config = _load(tmp_path, {"environment": "production", "client_id": CLIENT_ID,
                              "service_registry_url": "https://sr.example.no/adressetjeneste"})
    assert config.network.token_url == "https://maskinporten.no/token"
    assert config.network.token_audience == "https://maskinporten.no/"
    assert config.network.service_registry_url == "https://sr.example.no/adressetjeneste"
    assert config.channels.dpo.broker_url == "https://platform.altinn.no/broker/api/v1"
    assert config.trust.ca_bundle == anchors_file(PRODUCTION)


def test_outside_the_sandbox_the_client_id_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"network\.client_id is missing.*Samarbeidsportalen"):
        _load(tmp_path, {"environment": "production"})


def test_outside_the_sandbox_every_url_is_https(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"network\.token_url must be an https:// URL in test"):
        _load(tmp_path, {"environment": "test", "client_id": CLIENT_ID, "token_url": "http://proxy.local/token"})


def test_an_unknown_environment_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"network\.environment is 'prod'; use one of sandbox, test, production"):
        _load(tmp_path, {"environment": "prod", "client_id": CLIENT_ID})


def test_the_sandbox_section_and_a_real_environment_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.enabled is true but network\.environment is test"):
        _load(tmp_path, {"environment": "test", "client_id": CLIENT_ID}, sandbox={"enabled": True})


def test_altinn_channels_need_the_exchange(tmp_path: Path) -> None:
    sandbox_urls = {"service_registry_url": "http://127.0.0.1:9/sr", "token_url": "http://127.0.0.1:9/token/token"}
    with pytest.raises(ConfigError, match=r"network\.altinn_exchange_url is missing; DPO"):
        _load(tmp_path, sandbox_urls, channels={"dpo": {"broker_url": "http://127.0.0.1:9/broker/api/v1"}})


def test_certificates_are_known_by_the_environment_whose_ca_issued_them() -> None:
    test_leaf = x509.load_pem_x509_certificate(TEST_LEAF.read_bytes())
    commfides_test = x509.load_pem_x509_certificate(TEST_LEAF_COMMFIDES.read_bytes())
    production_leaf = x509.load_pem_x509_certificate(PRODUCTION_LEAF.read_bytes())
    assert issuing_environment(test_leaf) == TEST
    assert issuing_environment(commfides_test) == TEST
    assert issuing_environment(production_leaf) == PRODUCTION
    assert certificate_environment_problem(test_leaf, TEST) is None
    assert certificate_environment_problem(production_leaf, PRODUCTION) is None
    in_production = certificate_environment_problem(test_leaf, PRODUCTION)
    assert in_production and "TEST certificate" in in_production and "Buypass Class 3 Test4" in in_production
    in_test = certificate_environment_problem(production_leaf, TEST)
    assert in_test and "PRODUCTION certificate" in in_test and "MP-120" in in_test
    assert certificate_environment_problem(test_leaf, "sandbox") is None
