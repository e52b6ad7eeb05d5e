"""The online checks against the sandbox network: one line per endpoint, asked with its real authentication;
the clock's skew, our certificate against the registry's, and Maskinporten's refusals each with the fix."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.clock import FakeClock, SystemClock
from gateway.config import Config, load_config
from gateway.credentials import authorisation_for, load_identity, load_trust
from gateway.devcerts import issue_identity
from gateway.ops.online import ERROR, OK, WARNING, CheckResult, certificate_life, clock_skew, online_checks
from gateway.sandbox import SandboxCatalogue, SandboxServer
from gateway.sandbox.network import SandboxNetwork, start_network

ORGNR = "910077473"


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("online"), peers=()) as running:
        yield running


def config_for(network: SandboxNetwork, folder: Path, **network_overrides: str) -> Config:
    settings = network.config_snippet(ORGNR)
    settings["network"].update(network_overrides)
    settings["folders"] = {key: str(folder / key) for key in ("outbox", "status", "inbox", "failed", "sent", "state")}
    settings["folders"]["create_missing"] = True
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def run_checks(config: Config, identity=None) -> list[CheckResult]:  # type: ignore[no-untyped-def]
    clock = SystemClock()
    identity = identity or load_identity(config, clock.now())
    with httpx.Client(timeout=10) as http:
        auth = authorisation_for(config, identity, http, clock)
        return online_checks(config, identity, load_trust(config), auth, http, clock)


def test_every_endpoint_answers_with_its_real_authentication(network: SandboxNetwork, tmp_path: Path) -> None:
    results = run_checks(config_for(network, tmp_path))
    by_key = {result.key: result for result in results}
    assert [result.line for result in results if result.level != OK] == []
    for key in ("keystore", "clock", "network.token_url", "virksert", "channels.dpo.broker_url",
                "channels.dpv.correspondence_url", "channels.dpf.svarut_url", "channels.dpf.svarinn_url"):
        assert key in by_key, [result.line for result in results]
    assert "Altinn token exchanged" in by_key["channels.dpo.broker_url"].text
    assert "eformidling:dpo eformidling:dpv eformidling:dpf" in by_key["network.token_url"].text


def test_a_certificate_the_registry_does_not_hold_is_refused(network: SandboxNetwork, tmp_path: Path) -> None:
    config = config_for(network, tmp_path)
    other = issue_identity(network.pki, ORGNR, "Testorganisasjon B")  # same organisation, a new certificate
    results = run_checks(config, other)
    virksert = next(result for result in results if result.key == "virksert")
    assert virksert.level == ERROR
    assert f"{other.certificate.serial_number:x}" in virksert.text and "have Digdir register" in virksert.text


def test_a_wrong_client_id_gets_mp_100_and_the_fix_on_each_line(network: SandboxNetwork, tmp_path: Path) -> None:
    results = run_checks(config_for(network, tmp_path, client_id="efm-gateway-910077473"))
    token_line = next(result for result in results if result.key == "network.token_url")
    assert token_line.level == ERROR
    assert "MP-100" in token_line.text and "set network.client_id" in token_line.text
    assert "\n" not in token_line.line
    broker_line = next(result for result in results if result.key == "channels.dpo")
    assert broker_line.level == ERROR and "MP-100" in broker_line.text


def test_a_clock_20_seconds_off_is_told(tmp_path: Path, catalogue_for_clock: SandboxCatalogue) -> None:
    ahead = FakeClock(datetime.now(UTC) + timedelta(seconds=20))
    with SandboxServer(tmp_path, catalogue_for_clock, clock=ahead) as sandbox, httpx.Client(timeout=5) as http:
        result = clock_skew(http, sandbox.token_url, lambda: datetime.now(UTC))
        assert result.level == ERROR
        # A Date header counts whole seconds.
        assert re.search(r"\b(19|20|21) s behind", result.text) and "NTP" in result.text
    slightly = FakeClock(datetime.now(UTC) - timedelta(seconds=7))
    with SandboxServer(tmp_path, catalogue_for_clock, clock=slightly) as sandbox, httpx.Client(timeout=5) as http:
        result = clock_skew(http, sandbox.token_url, lambda: datetime.now(UTC))
        assert result.level == WARNING and re.search(r"\b[678] s ahead", result.text)


def test_the_certificates_remaining_life(network: SandboxNetwork) -> None:
    now = datetime.now(UTC)
    for days, level in ((60, OK), (20, WARNING), (5, ERROR)):
        identity = issue_identity(network.pki, ORGNR, "B", not_after=now + timedelta(days=days))
        assert certificate_life(identity.certificate, now).level == level


@pytest.fixture
def catalogue_for_clock(network: SandboxNetwork) -> SandboxCatalogue:
    return dataclasses.replace(network.server.catalogue)


def _check_config_online(config: Config) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--online", "--json", "--config",
                           str(config.source)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})


def test_check_config_online_prints_one_result_per_endpoint_and_exits_0(network: SandboxNetwork,
                                                                        tmp_path: Path) -> None:
    result = _check_config_online(config_for(network, tmp_path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    online = {entry["key"]: entry for entry in document["results"] if entry.get("online")}
    assert {"clock", "network.token_url", "virksert", "channels.dpo.broker_url", "channels.dpv.correspondence_url",
            "channels.dpf.svarut_url", "channels.dpf.svarinn_url"} <= set(online)
    assert {entry["level"] for entry in online.values()} == {OK}
    assert document["ok"] is True


def test_check_config_online_with_a_wrong_client_id_exits_6_with_the_fix_on_stderr(network: SandboxNetwork,
                                                                                  tmp_path: Path) -> None:
    result = _check_config_online(config_for(network, tmp_path, client_id="efm-gateway-910077473"))
    assert result.returncode == 6, (result.stdout, result.stderr)
    assert "MP-100" in result.stderr and "set network.client_id" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["ok"] is False
