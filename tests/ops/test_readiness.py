"""/readyz beside /healthz, on a real daemon joined to the sandbox network with every channel: every
endpoint (DPF's SvarUt and SvarInn too) is probed, measured and part of readiness; a disk under its
floor makes the daemon not ready while it stays alive. The metrics of its own state beside them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from gateway import __version__
from gateway.formats.keys import load_pkcs12
from gateway.ops.disk import FolderSpace
from gateway.ops.httpwatch import Outcome
from gateway.ops.readiness import CertificateWindow, readiness
from tests.dpo.network import A, SandboxProcess, gateway_config, wait
from tests.ops.support import OpsDaemon, edit_config, healthz
from tests.ops.test_metrics import scrape, value

ENDPOINTS = {"service_registry", "token", "dpo", "dpv", "dpf_svarut", "dpf_svarinn", "dpi_corner2",
             "dpi_print_certificate"}
FOLDERS = ("outbox", "status", "inbox", "failed", "sent", "state", "work", "inbox_staging")
SVARINN = "/svarut/tjenester/svarinn/*"


def readyz(base: str) -> tuple[int, dict]:
    response = httpx.get(f"{base}/readyz", timeout=10)
    return response.status_code, response.json()


@pytest.fixture
def sandbox(tmp_path):
    network = SandboxProcess(tmp_path / "sandbox")
    yield network
    network.stop()


def _faults(sandbox: SandboxProcess, *rules: dict) -> None:
    httpx.post(f"{sandbox.url}/_faults", json={"rules": list(rules)}, timeout=10).raise_for_status()


def test_readiness_follows_every_endpoint_the_disk_and_the_certificate(tmp_path, sandbox):
    root = tmp_path / "a"
    config = gateway_config(root, sandbox, A, ops={"enabled": True, "port": 0},
                            channels={"dpf": {"inbound_poll_seconds": 0.3}})
    started = time.time()
    daemon = OpsDaemon(config, root / "daemon.log").start()
    try:
        base = daemon.endpoint()
        wait(lambda: readyz(base)[0] == 200, timeout=30, message="/readyz 200 once the start-up probe is done")
        _code, report = readyz(base)
        assert report["ready"] is True and report["failing"] == []
        assert set(report["checks"]) == (
            {f"endpoint:{name}" for name in ENDPOINTS} | {f"disk:folders.{name}" for name in FOLDERS}
            | {"certificate", "journal"}
        )
        assert report["checks"]["journal"]["detail"] == "the journal's database answers"
        assert all(check["ok"] for check in report["checks"].values())
        assert " answers " in report["checks"]["endpoint:dpf_svarinn"]["detail"]
        assert "valid until" in report["checks"]["certificate"]["detail"]
        _code, health = healthz(base)
        assert {"dpf_svarut", "dpf_svarinn"} <= set(health["channels"])

        samples = scrape(base)
        for name in ENDPOINTS:
            assert value(samples, "efm_gateway_endpoint_up", endpoint=name) == 1, name
        snippet = yaml.safe_load(config.read_text())["keystore"]
        certificate = load_pkcs12(Path(snippet["pkcs12"]), snippet["password"]).certificate
        assert value(samples, "efm_gateway_certificate_expiry_timestamp_seconds") == (
            certificate.not_valid_after_utc.timestamp()
        )
        assert value(samples, "efm_gateway_build_info", version=__version__) == 1
        assert started - 2 < value(samples, "process_start_time_seconds") < time.time()
        assert value(samples, "process_resident_memory_bytes") > 10 << 20
        assert value(samples, "process_open_fds") > 3
        assert value(samples, "process_cpu_seconds_total") > 0
        assert value(samples, "efm_gateway_worker_late", worker="inbound-DPF") == 0
        assert value(samples, "efm_gateway_worker_late", worker="intake") == 0

        # SvarInn answers 503: counted under its own name (it used to be "other"), and not ready.
        _faults(sandbox, {"fault": "error", "method": "GET", "path": SVARINN, "status": 503})
        wait(lambda: readyz(base)[0] == 503, timeout=20, message="/readyz 503 while SvarInn fails")
        code, report = readyz(base)
        assert code == 503 and report["ready"] is False and report["failing"] == ["endpoint:dpf_svarinn"]
        assert "does not answer (HTTP 503" in report["checks"]["endpoint:dpf_svarinn"]["detail"]
        assert healthz(base)[0] == 200  # alive all the same
        samples = scrape(base)
        assert value(samples, "efm_gateway_channel_errors_total", endpoint="dpf_svarinn", kind="http",
                     status="503") >= 1
        assert not any(labels and dict(labels).get("endpoint") == "other" for _name, labels in samples)
        assert value(samples, "efm_gateway_endpoint_up", endpoint="dpf_svarinn") == 0
        _faults(sandbox)
        wait(lambda: readyz(base)[0] == 200, timeout=20, message="/readyz 200 again once SvarInn answers")

        # A floor no disk reaches (applied live by SIGHUP): not ready, still alive.
        edit_config(config, disk_floor_mb={"state": 1 << 40})
        daemon.hup()
        wait(lambda: readyz(base)[0] == 503, timeout=20, message="/readyz 503 under the disk floor")
        _code, report = readyz(base)
        assert report["failing"] == ["disk:folders.state"]
        assert "floor 1099511627776 MiB" in report["checks"]["disk:folders.state"]["detail"]
        assert healthz(base)[0] == 200
    finally:
        daemon.stop()


def _window(now: datetime, before: timedelta, after: timedelta) -> CertificateWindow:
    return CertificateWindow((now - before).timestamp(), (now + after).timestamp(), "CN=Test,O=910075918")


def test_a_certificate_out_of_its_validity_makes_the_daemon_not_ready(tmp_path):
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    space = [FolderSpace("folders.state", tmp_path, 10 << 20, 0)]
    answered = {"dpo": Outcome(True, now.timestamp() - 5, "OK")}
    endpoints = {"dpo": "https://broker.example/api"}
    ready, report = readiness(endpoints, answered, space, _window(now, timedelta(days=1), timedelta(days=1)),
                              now.timestamp())
    assert ready
    assert report["checks"]["certificate"]["detail"].endswith("valid until 2026-12-02T12:00:00+00:00 (1 days)")
    ready, report = readiness(endpoints, answered, space, _window(now, timedelta(days=400), -timedelta(seconds=1)),
                              now.timestamp())
    assert not ready and report["failing"] == ["certificate"]
    assert "expired 2026-12-01T11:59:59+00:00" in report["checks"]["certificate"]["detail"]
    ready, report = readiness(endpoints, answered, space, _window(now, -timedelta(hours=1), timedelta(days=9)),
                              now.timestamp())
    assert not ready and "not valid before 2026-12-01T13:00:00+00:00" in report["checks"]["certificate"]["detail"]
    # An endpoint not asked yet, and a folder that cannot be read, are not ready either.
    ready, report = readiness({**endpoints, "dpv": "https://dpv.example"}, answered,
                              [FolderSpace("folders.inbox", tmp_path / "gone", None, 0)], None, now.timestamp())
    assert not ready and report["failing"] == ["endpoint:dpv", "disk:folders.inbox"]
    assert report["checks"]["certificate"] == {"ok": True, "detail": "no keystore configured"}
