"""Each channel names its own endpoints: DPF's SvarUt and SvarInn are probed at start and labelled in metrics."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import yaml

from gateway.config import load_config
from gateway.ops.checks import endpoint_names, network_endpoints, reachability_warnings
from gateway.ops.httpwatch import HttpOutcomes

FOLDER_KEYS = ("outbox", "status", "inbox", "failed", "sent", "state")


class _Seen(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _dpf_config(tmp_path: Path, base: str) -> Path:
    (tmp_path / "integrasjon.secret").write_text("hemmelig-1\n")
    (tmp_path / "svarinn.secret").write_text("hemmelig-2\n")
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {"create_missing": True, **{key: f"var/{key}" for key in FOLDER_KEYS}},
        "network": {"service_registry_url": f"{base}/sr", "token_url": f"{base}/token"},
        "channels": {"dpf": {
            "svarut_url": f"{base}/svarut/api",
            "account_id": "7c3f0b7e-1d1a-4c37-9a8e-2f8b6a0c1d2e",
            "integration_id": "5b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "integration_password_file": "integrasjon.secret",
            "svarinn_url": f"{base}/svarinn",
            "svarinn_username": "mottaker-1",
            "svarinn_password_file": "svarinn.secret",
        }},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_dpf_endpoints_are_probed_at_start_and_labelled_by_their_own_names(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Seen)
    _Seen.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        config = load_config(_dpf_config(tmp_path, base))
        names = endpoint_names(config)
        assert names == {"service_registry": f"{base}/sr", "token": f"{base}/token",
                         "dpf_svarut": f"{base}/svarut/api", "dpf_svarinn": f"{base}/svarinn"}
        assert set(network_endpoints(config)) >= {"channels.dpf.svarut_url", "channels.dpf.svarinn_url"}

        outcomes = HttpOutcomes(names)
        assert reachability_warnings(config, outcomes=outcomes) == []
        assert sorted(_Seen.paths) == ["/sr", "/svarinn", "/svarut/api", "/token"]
        assert outcomes.last["dpf_svarut"].reachable and outcomes.last["dpf_svarinn"].reachable
        assert outcomes.endpoint_of(f"{base}/svarut/api/v2/forsendelser") == "dpf_svarut"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_dpf_endpoint_is_named_by_its_config_key(tmp_path: Path) -> None:
    config = load_config(_dpf_config(tmp_path, "http://127.0.0.1:9"))
    warnings = reachability_warnings(config, timeout=1.0)
    assert any(warning.startswith("channels.dpf.svarut_url (http://127.0.0.1:9/svarut/api) does not answer")
               for warning in warnings)
    assert any(warning.startswith("channels.dpf.svarinn_url") for warning in warnings)
