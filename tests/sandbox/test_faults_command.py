"""Fault rules from the command line and config.yaml: `efm-gateway sandbox --faults FILE`, `sandbox.faults`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.dpo.network import free_port
from tests.foundation.process import wait_for

FAULTS = """\
seed: 1
rules:
  - {fault: error, method: GET, path: /nowhere, status: 503, retry_after_seconds: 30, times: 1}
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_sandbox_command_starts_with_the_rules_of_a_faults_file(tmp_path: Path) -> None:
    (tmp_path / "faults.yaml").write_text(FAULTS)
    port = free_port()
    log = tmp_path / "sandbox.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "sandbox", "--data", "net", "--port", str(port),
             "--faults", "faults.yaml"],
            cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: (tmp_path / "net" / "network.yaml").exists() or process.poll() is not None, 60,
                 message="sandbox start")
        assert process.poll() is None, log.read_text()
        url = f"http://127.0.0.1:{port}"
        first = httpx.get(f"{url}/nowhere", timeout=10)
        assert (first.status_code, first.headers["retry-after"]) == (503, "30")
        assert httpx.get(f"{url}/nowhere", timeout=10).status_code == 404
        shown = httpx.get(f"{url}/_faults", timeout=10).json()
        assert shown["seed"] == 1
        assert [(r["fault"], r["injected"], r["remaining"]) for r in shown["rules"]] == [("error", 1, 0)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert f"fault rules      {url}/_faults (1 in force)" in log.read_text()


def test_a_wrong_faults_file_stops_the_sandbox_command_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "faults.yaml").write_text("rules:\n  - {fault: error, path: /broker/*, latency: 5}\n")
    result = _cli("sandbox", "--data", "net", "--port", str(free_port()), "--faults", "faults.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "efm-gateway: faults.yaml, rule 1: 'latency' does not apply to error faults; their keys are after, caller, "
        "fault, method, path, probability, retry_after_seconds, status, times"
    ]


def _config(tmp_path: Path, faults: str) -> Path:
    (tmp_path / "faults.yaml").write_text(faults)
    config = {
        "organisation": {"orgnr": "991825827"},
        "folders": {"create_missing": True,
                    **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")}},
        "sandbox": {"enabled": True, "faults": "faults.yaml"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_config_reads_the_sandbox_faults_file(tmp_path: Path) -> None:
    result = _cli("check-config", "--config", str(_config(tmp_path, FAULTS)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"sandbox.faults: OK (1 fault rule in {tmp_path / 'faults.yaml'})" in result.stdout


def test_check_config_refuses_a_wrong_sandbox_faults_file(tmp_path: Path) -> None:
    result = _cli("check-config", "--config", str(_config(tmp_path, "rules: [{fault: stall, stall_seconds: 0}]\n")),
                  cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"efm-gateway: {tmp_path / 'faults.yaml'}, rule 1: stall_seconds must be more "
                                     "than 0, not 0")
