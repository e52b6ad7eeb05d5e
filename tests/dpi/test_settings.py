"""channels.dpi in config.yaml: what Corner 2 needs, the environments' URLs, the block's own rules, its
endpoints for health and metrics, and the registry scopes a person lookup needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.channels.dpi.kind import KIND
from gateway.channels.registry import registry_scopes
from gateway.config import load_config
from gateway.errors import ConfigError

FOLDER_KEYS = ("outbox", "status", "inbox", "failed", "sent", "state")


def _config(tmp_path: Path, dpi: dict, environment: str | None = None) -> Path:
    network = {"service_registry_url": "https://sr.example/sr", "token_url": "https://mp.example/token"}
    if environment:
        network = {"environment": environment, "client_id": "2b8c6f1e-3f4a-4c5d-9e7f-0a1b2c3d4e5f"}
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {"create_missing": True, **{key: f"var/{key}" for key in FOLDER_KEYS}},
        "network": network,
        "channels": {"dpi": dpi},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_dpi_block_with_its_corner2_url_is_enabled_with_defaults(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, {"corner2_url": "https://c2.example/api/v2/dpi"}))
    dpi = config.channels.dpi
    assert list(config.channels.enabled()) == ["dpi"]
    assert (dpi.status_poll_seconds, dpi.status_batch, dpi.post_type, dpi.language) == (30.0, 200, "B", "NO")
    assert dpi.print_certificate_url is None
    assert KIND.endpoints(dpi) == {"dpi_corner2": "https://c2.example/api/v2/dpi"}


def test_the_environment_fills_in_corner2_and_krrs_print_certificate(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, {}, environment="production"))
    dpi = config.channels.dpi
    assert dpi.corner2_url == "https://edi.edigard.com/api/v2/dpi"
    assert dpi.print_certificate_url == "https://kontaktregisteret.no/rest/v2/printSertifikat"
    assert KIND.endpoint_keys(dpi) == {
        "channels.dpi.corner2_url": "https://edi.edigard.com/api/v2/dpi",
        "channels.dpi.print_certificate_url": "https://kontaktregisteret.no/rest/v2/printSertifikat",
    }
    test = load_config(_config(tmp_path, {}, environment="test")).channels.dpi
    assert test.corner2_url == "https://sandbox1.ediex.no/api/v2/dpi"
    assert test.print_certificate_url == "https://test.kontaktregisteret.no/rest/v2/printSertifikat"


@pytest.mark.parametrize(("block", "words"), [
    ({"kanal": "min kanal"}, "channels.dpi.kanal 'min kanal' may hold only a-z, A-Z, 0-9, _ and -"),
    ({"receipt_page_size": 5000}, "channels.dpi.receipt_page_size may be at most 1000"),
    ({"post_type": "C"}, "channels.dpi.post_type"),
    ({"print_colour": "rosa"}, "channels.dpi.print_colour"),
    ({"status_batch": 0}, "channels.dpi.status_batch"),
    ({"avsenderidentifikator": "x" * 101}, "channels.dpi.avsenderidentifikator must be 1 to 100 characters"),
    ({"corner2_url": "ftp://c2.example"}, "channels.dpi.corner2_url"),
    ({"postkasse": "x"}, "unknown key 'channels.dpi.postkasse'"),
])
def test_the_blocks_mistakes_are_named(tmp_path: Path, block: dict, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(_config(tmp_path, {"corner2_url": "https://c2.example/dpi", **block}))
    assert words in str(refused.value)


def test_person_lookups_ask_the_registry_with_the_krr_scopes() -> None:
    [scope] = registry_scopes({"dpi": object()})
    assert scope.split() == ["eformidling:dpi", "digitalpostinnbygger:send", "global/kontaktinformasjon.read",
                             "global/sikkerdigitalpost.read", "global/varslingsstatus.read", "global/sertifikat.read",
                             "global/navn.read", "global/postadresse.read"]
