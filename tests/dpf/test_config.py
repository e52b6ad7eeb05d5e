"""channels.dpf in config.yaml: what SvarUt and SvarInn need, passwords from files only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.config_check import secrets_check
from gateway.errors import ConfigError

FOLDER_KEYS = ("outbox", "status", "inbox", "failed", "sent", "state")


def _config(tmp_path: Path, dpf: dict) -> Path:
    (tmp_path / "integrasjon.secret").write_text("hemmelig-1\n")
    (tmp_path / "svarinn.secret").write_text("hemmelig-2\n")
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {"create_missing": True, **{key: f"var/{key}" for key in FOLDER_KEYS}},
        "network": {"service_registry_url": "https://sr.example/sr", "token_url": "https://mp.example/token"},
        "channels": {"dpf": dpf},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


FULL = {
    "svarut_url": "https://svarut.example/api",
    "account_id": "7c3f0b7e-1d1a-4c37-9a8e-2f8b6a0c1d2e",
    "integration_id": "5b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "integration_password_file": "integrasjon.secret",
    "svarinn_url": "https://svarut.example/tjenester/svarinn",
    "svarinn_username": "mottaker-1",
    "svarinn_password_file": "svarinn.secret",
}


def test_a_full_dpf_block_loads_with_its_secret_files_relative_to_the_config(tmp_path):
    config = load_config(_config(tmp_path, FULL))
    dpf = config.channels.dpf
    assert dpf.configured and "dpf" in config.channels.enabled()
    assert dpf.integration_password_file == tmp_path / "integrasjon.secret"
    assert dpf.inbound_poll_seconds == 900.0


@pytest.mark.parametrize("missing", ["account_id", "integration_id", "integration_password_file",
                                     "svarinn_username", "svarinn_password_file"])
def test_a_missing_key_is_named(tmp_path, missing):
    block = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(ConfigError) as refused:
        load_config(_config(tmp_path, block))
    assert f"channels.dpf.{missing} is missing" in str(refused.value)


def test_without_svarinn_nothing_is_received_but_sending_is_configured(tmp_path):
    block = {k: v for k, v in FULL.items() if not k.startswith("svarinn")}
    assert load_config(_config(tmp_path, block)).channels.dpf.configured


def test_a_password_file_that_is_not_there_is_named_and_no_password_is_accepted_inline(tmp_path):
    # Operator commands load config.yaml as users that may not read the service's credentials: no refusal there.
    config = load_config(_config(tmp_path, {**FULL, "integration_password_file": "nowhere.secret"}))
    with pytest.raises(ConfigError) as refused:  # check-config and the daemon's start read it, and say so
        secrets_check(config)
    assert "channels.dpf.integration_password_file" in str(refused.value) and "cannot be read (No such file" in str(
        refused.value)
    with pytest.raises(ConfigError) as inline:
        load_config(_config(tmp_path, {**FULL, "integration_password": "hemmelig"}))
    assert "unknown key 'channels.dpf.integration_password'" in str(inline.value)
