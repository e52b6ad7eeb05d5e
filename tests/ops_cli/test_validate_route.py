"""`efm-gateway validate` explains the route: it asks the service registry (read-only) and prints the
channel the daemon would use and why, or why none fits; without a network it says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gateway.identifiers import orgnr_problem
from tests.dpo.network import A, SandboxProcess, free_port, gateway_config
from tests.foundation.drops import write_config
from tests.foundation.process import DaemonProcess, wait_for

from .support import SAMPLES, cli, repository_config

ALTINN_ONLY = "974760673"


def _unknown_orgnr() -> str:
    """A valid organisation number that no sandbox registry knows."""
    return next(number for number in (f"9200000{n:02d}" for n in range(100)) if orgnr_problem(number) is None)


def _drop(folder: Path, name: str, receiver: str, security_level: int | None = None) -> Path:
    target = folder / name
    shutil.copytree(SAMPLES / "brev-til-sandkasse-peer", target)
    sidecar = target / "message.xml"
    text = sidecar.read_text(encoding="utf-8").replace("910075918", receiver)
    if security_level:
        text = text.replace("</receiver>", f"</receiver>\n  <securityLevel>{security_level}</securityLevel>")
    sidecar.write_text(text, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(tmp_path_factory.mktemp("route") / "sandbox")
    yield process
    process.stop()


def test_the_route_and_why_or_why_none_fits(sandbox, tmp_path):
    config = gateway_config(tmp_path / "a", sandbox, A)
    drops = tmp_path / "drops"
    drops.mkdir()
    cases = [
        (_drop(drops, "til-peer", "910075918"), 0, ["route: DPO: receiver has a DPO record for process"]),
        (_drop(drops, "til-postkasse", ALTINN_ONLY), 0,
         ["route: DPV: receiver has no DPO record and no SvarInn address for process"]),
        (_drop(drops, "ukjent", _unknown_orgnr()), 1,
         [f"route: none fits: the service registry has no record of {_unknown_orgnr()}", "then fail it (FEIL)"]),
        (_drop(drops, "nivaa-4", ALTINN_ONLY, security_level=4), 1,
         ["route: none fits:", "security level 4 may not go to the Altinn mailbox (DPV)"]),
    ]
    for drop, code, words in cases:
        result = cli(config, "validate", str(drop))
        assert result.returncode == code, (drop.name, result.stdout, result.stderr)
        assert result.stdout.startswith("ACCEPTED:"), result.stdout
        for word in words:
            assert word in result.stdout, (drop.name, result.stdout)
    # The route would be DPV, but this gateway has DPV switched off.
    no_dpv = gateway_config(tmp_path / "b", sandbox, A, channels={"dpv": {"enabled": False}})
    result = cli(no_dpv, "validate", str(drops / "til-postkasse"))
    assert result.returncode == 1
    assert "but DPV is not enabled in this gateway (channels section)" in result.stdout


def test_without_a_network_it_says_so(tmp_path):
    config = write_config(tmp_path)
    drop = _drop(tmp_path, "brev", "910075918")
    result = cli(config, "validate", str(drop))
    assert result.returncode == 0, result.stderr
    assert "route: not looked up: no network is configured in" in result.stdout


def test_an_unreachable_registry_leaves_the_route_to_the_daemon(sandbox, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    config = gateway_config(tmp_path / "a", sandbox, A)
    settings = yaml.safe_load(config.read_text())
    settings["network"].update(service_registry_url=f"{closed}/sr", token_url=f"{closed}/token")
    config.write_text(yaml.safe_dump(settings))
    result = cli(config, "validate", str(_drop(tmp_path, "brev", "910075918")))
    assert result.returncode == 5, result.stdout  # accepted, but the route was not checked
    assert "route: the service registry could not be asked" in result.stdout
    assert "network error" in result.stdout and "the daemon decides the route when it sends" in result.stdout


def test_the_daemons_own_sandbox_is_asked_while_it_runs(tmp_path):
    config = repository_config(tmp_path)
    drop = _drop(tmp_path, "brev", ALTINN_ONLY)
    stopped = cli(config, "validate", str(drop))
    assert stopped.returncode == 0  # there is no network to ask while the daemon (with its sandbox) is down
    assert "runs inside the daemon (sandbox.enabled) and the daemon is not running" in stopped.stdout
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        wait_for(lambda: "efm-gateway is running" in (tmp_path / "daemon.log").read_text(), 60, message="daemon")
        running = cli(config, "validate", str(drop))
    finally:
        daemon.stop()
    assert running.returncode == 0, running.stdout
    assert "route: DPV: receiver has no DPO record" in running.stdout
    assert "asked the running daemon's sandbox" in running.stdout
