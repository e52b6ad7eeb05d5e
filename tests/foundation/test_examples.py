"""The example configurations for Digdir's test environment and production load, fill in that environment's
endpoints, and pass check-config once their files exist; the firewall list in docs/production.md names every
host they reach.

check-config probes each endpoint; here it does so through a forward proxy on loopback that notes where it was
asked to connect and refuses, so nothing leaves this machine and the probes' targets are seen.
"""

from __future__ import annotations

import os
import re
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.channels.registry import KINDS, dpo_system_user
from gateway.config import Config, load_config
from gateway.devcerts import P12_PASSWORD, create_dev_pki
from gateway.environments import TABLE, anchors_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PRODUCTION_DOC = ROOT / "docs" / "production.md"
ENVIRONMENTS = ("test", "production")


class _RefusingProxy(socketserver.ThreadingTCPServer):
    """A forward proxy on 127.0.0.1 that records each request line (CONNECT host:443) and answers 403."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").strip()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.server.requests.append(request_line)  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def refusing_proxy() -> Iterator[_RefusingProxy]:
    proxy = _RefusingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def _runnable_copy(example: Path, tmp_path: Path) -> Path:
    """The example with every absolute path moved under tmp_path, its files made (a dev keystore for its
    organisation, the password files) and its folders created; trust.ca_bundle names the dev CA, since a dev
    certificate does not chain to Buypass or Commfides. Nothing else of the example changes."""
    root = tmp_path / "root"
    text = re.sub(r"^(\s*[a-z0-9_]+:\s+)(/\S+)", lambda m: f"{m.group(1)}{root}{m.group(2)}", example.read_text(),
                  flags=re.MULTILINE)
    raw = yaml.safe_load(text)
    orgnr = str(raw["organisation"]["orgnr"])
    pki = create_dev_pki(tmp_path / "pki", {orgnr: "Eksempel kommune"})
    text += f"\ntrust:\n  ca_bundle: {pki.trust_bundle}\n"
    files = {
        raw["keystore"]["pkcs12"]: (pki.folder / f"{orgnr}.p12").read_bytes(),
        raw["keystore"]["password_file"]: f"{P12_PASSWORD}\n".encode(),
        raw["channels"]["dpf"]["integration_password_file"]: b"integrasjonspassord\n",
        raw["channels"]["dpf"]["svarinn_password_file"]: b"tjenestepassord\n",
    }
    for name, content in files.items():
        assert name.startswith(str(root)), f"{name} was not moved under the test's folder"
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(content)
        Path(name).chmod(0o600)  # secrets: the gateway refuses to start on one every user may read
    for folder in raw["folders"].values():
        if isinstance(folder, str):
            assert folder.startswith(str(root)), f"{folder} was not moved under the test's folder"
            Path(folder).mkdir(parents=True, exist_ok=True)
    copy = tmp_path / "config.yaml"
    copy.write_text(text)
    # With create_missing: false the default work area (<state>/work) is not made either: the install steps in
    # docs/production.md create it with the other folders.
    load_config(copy).folders.work_area.mkdir(exist_ok=True)
    return copy


def _hosts(config: Config) -> set[str]:
    """Every host the configuration talks to: the network's endpoints and those of each channel used."""
    urls = [config.network.service_registry_url, config.network.token_url, config.network.altinn_exchange_url,
            config.channels.dpo.broker_url, config.channels.dpv.correspondence_url,
            config.channels.dpf.svarut_url, config.channels.dpf.svarinn_url]
    return {urlsplit(url).hostname for url in urls if url}  # type: ignore[misc]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_example_fills_in_its_environments_endpoints_and_uses_every_channel(environment, tmp_path):
    config = load_config(_runnable_copy(EXAMPLES / f"config.{environment}.yaml", tmp_path))
    endpoints = TABLE[environment]
    network = config.network
    assert network.environment == environment
    assert network.service_registry_url == endpoints.service_registry_url
    assert network.token_url == endpoints.token_url
    assert network.token_audience == network.token_url.removesuffix("token")  # the issuer, trailing slash kept
    assert network.altinn_exchange_url == endpoints.altinn_exchange_url
    assert network.client_id  # required outside the sandbox; the example holds a placeholder
    assert sorted(config.channels.enabled()) == ["dpf", "dpo", "dpv"]
    rows = {key: KINDS[key].settings.urls[environment] for key in ("dpo", "dpv", "dpf")}  # each channel's own rows
    assert config.channels.dpo.broker_url == rows["dpo"]["broker_url"]
    assert config.channels.dpv.correspondence_url == rows["dpv"]["correspondence_url"]
    assert config.channels.dpf.svarut_url == rows["dpf"]["svarut_url"]
    assert config.channels.dpf.svarinn_url == rows["dpf"]["svarinn_url"]
    if environment == "test":
        assert network.token_url == "https://test.maskinporten.no/token"
        assert config.channels.dpo.broker_url == "https://platform.tt02.altinn.no/broker/api/v1"
    else:
        assert network.token_url == "https://maskinporten.no/token"
        assert config.channels.dpo.broker_url == "https://platform.altinn.no/broker/api/v1"
    orgnr = config.organisation.orgnr
    system_user = dpo_system_user(config.channels.dpo, orgnr)
    assert (system_user.orgnr, system_user.external_ref) == (orgnr, f"{orgnr}_integrasjonspunkt_systembruker_{orgnr}")
    assert (config.ops.enabled, config.ops.address, config.logging.format) == (True, "127.0.0.1", "json")
    assert not config.folders.create_missing


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_example_leaves_trust_to_the_environments_shipped_anchors(environment, tmp_path):
    """Without the dev CA the runnable copy adds, trust.ca_bundle is the environment's Buypass/Commfides bundle."""
    copy = _runnable_copy(EXAMPLES / f"config.{environment}.yaml", tmp_path)
    copy.write_text(copy.read_text().split("\ntrust:\n")[0])
    assert load_config(copy).trust.ca_bundle == anchors_file(environment)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_check_config_passes_the_example_and_probes_only_its_environments_hosts(
    environment, tmp_path, refusing_proxy
):
    copy = _runnable_copy(EXAMPLES / f"config.{environment}.yaml", tmp_path)
    config = load_config(copy)
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(HTTPS_PROXY=refusing_proxy.url, HTTP_PROXY=refusing_proxy.url)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--config", str(copy)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert f"keystore: OK (organisation {config.organisation.orgnr}," in result.stdout
    assert lines[-1].startswith(f"{copy}: OK (organisation {config.organisation.orgnr}")
    probed = {
        "network.service_registry_url": config.network.service_registry_url,
        "network.token_url": config.network.token_url,
        "channels.dpo.broker_url": config.channels.dpo.broker_url,
        "channels.dpv.correspondence_url": config.channels.dpv.correspondence_url,
        "channels.dpf.svarut_url": config.channels.dpf.svarut_url,
        "channels.dpf.svarinn_url": config.channels.dpf.svarinn_url,
    }
    # The only warnings are the probes the proxy refused; nothing else speaks of an error.
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == len(probed)
    for key, url in probed.items():
        assert [line for line in warnings if line.startswith(f"warning: {key} ({url}) ")], (key, warnings)
    assert not [line for line in lines if line not in warnings and "error" in line.lower()]
    assert {line.split()[1] for line in refusing_proxy.requests if line.startswith("CONNECT ")} == {
        f"{urlsplit(url).hostname}:443" for url in probed.values()
    }


def _firewall_hosts(environment: str) -> set[str]:
    """The hosts docs/production.md's outbound port-443 table lists for `environment`."""
    lines = PRODUCTION_DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and "port 443" in line)
    table = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    column = table[0].index(environment)
    return {host for row in table[2:] for host in re.findall(r"`([a-z0-9.-]+)`", row[column])}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_firewall_list_names_every_host_the_example_reaches(environment, tmp_path):
    config = load_config(_runnable_copy(EXAMPLES / f"config.{environment}.yaml", tmp_path))
    listed = _firewall_hosts(environment)
    assert _hosts(config) <= listed, f"missing from docs/production.md: {sorted(_hosts(config) - listed)}"
