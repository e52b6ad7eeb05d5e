"""The sandbox as a whole: catalogue from config, other registry routes, token expiry, standalone run,
and the rule that the daemon's code never imports the sandbox."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gateway.clock import FakeClock
from gateway.errors import ConfigError
from gateway.sandbox import SandboxCatalogue, SandboxServer, catalogue_from_dict
from gateway.sandbox.catalogue import ARKIVMELDING_PROCESSES, RESPONSE_PROCESS
from tests.logcheck import assert_clean_log
from tests.sandbox.support import DPO_RECEIVER, DPV_RECEIVER, REGISTRY_SCOPES, SENDER, Pki, TokenFactory, tokens_for

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def test_a_catalogue_reads_from_the_config_form(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca.pem").write_text(pki.root.pem)
    (tmp_path / "b.pem").write_text(pki.orgs[DPO_RECEIVER].pem)
    catalogue = catalogue_from_dict(
        {
            "trusted_ca_pem_files": ["ca.pem"],
            "organisations": [
                {"orgnr": DPO_RECEIVER, "name": "Mottaker kommune", "certificate_pem_file": "b.pem",
                 "channels": {"DPO": ["arkivmelding", "response"]}},
                {"orgnr": DPV_RECEIVER, "name": "Liten stiftelse",
                 "channels": {"DPV": "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"}},
            ],
        },
        base_dir=tmp_path,
    )
    receiver = catalogue.find(f"0192:{DPO_RECEIVER}")
    assert receiver is not None and receiver.certificate_pem == pki.orgs[DPO_RECEIVER].pem
    assert receiver.channels["DPO"] == set(ARKIVMELDING_PROCESSES) | {RESPONSE_PROCESS}
    assert catalogue.trusted_ca_pems == [pki.root.pem]


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"orgnr": "910075917", "name": "x", "channels": {}}, "check digit"),
        ({"orgnr": DPO_RECEIVER, "name": "x", "channels": {"DPX": ["arkivmelding"]}}, "unknown channel 'DPX'"),
        ({"orgnr": DPO_RECEIVER, "name": "x", "channels": {"DPO": ["arkivmelding"]}}, "need a certificate"),
        ({"orgnr": DPO_RECEIVER, "name": "x", "channels": {"DPV": ["arkiv"]}}, "neither a process URN"),
    ],
)
def test_a_wrong_catalogue_says_what_is_wrong(entry: dict, complaint: str, pki: Pki) -> None:
    with pytest.raises(ConfigError, match=complaint):
        catalogue_from_dict({"trusted_ca_pems": [pki.root.pem], "organisations": [entry]})


def test_info_virksert_and_all_records_of_an_identifier(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, pki: Pki
) -> None:
    auth = {"Authorization": f"Bearer {token_client(SENDER, REGISTRY_SCOPES)()}"}
    info = http.get(f"{sandbox.registry_url}/info/{DPO_RECEIVER}", headers=auth).json()
    assert info == {"infoRecord": {"identifier": DPO_RECEIVER, "organizationName": "Mottaker kommune",
                                   "postadresse": None, "entityType": {"name": "ORGL"}}}
    certificate = http.get(f"{sandbox.registry_url}/virksert/{DPO_RECEIVER}", headers=auth)
    assert certificate.text == pki.orgs[DPO_RECEIVER].pem
    assert http.get(f"{sandbox.registry_url}/virksert/{DPV_RECEIVER}", headers=auth).status_code == 404
    everything = http.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}", headers=auth,
                          params={"securityLevel": "3"}).json()
    processes = {record["process"] for record in everything["serviceRecords"]}
    assert processes == set(ARKIVMELDING_PROCESSES) | {RESPONSE_PROCESS}


def test_an_expired_access_token_gets_401(tmp_path: Path, catalogue: SandboxCatalogue, pki: Pki) -> None:
    clock = FakeClock(datetime.now(UTC))
    with SandboxServer(tmp_path, catalogue, clock=clock) as sandbox, httpx.Client(timeout=10) as http:
        tokens = tokens_for(sandbox, pki.orgs[SENDER], SENDER, REGISTRY_SCOPES, http, clock=clock)
        auth = {"Authorization": f"Bearer {tokens()}"}
        url = f"{sandbox.registry_url}/info/{DPO_RECEIVER}"
        assert http.get(url, headers=auth).status_code == 200
        clock.advance(121)
        expired = http.get(url, headers=auth)
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]


def test_the_sandbox_listens_on_loopback_only(tmp_path: Path, catalogue: SandboxCatalogue) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        SandboxServer(tmp_path, catalogue, host="0.0.0.0")  # noqa: S104


def test_serve_forever_runs_until_sigterm_and_stops_cleanly(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca.pem").write_text(pki.root.pem)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from gateway.sandbox import catalogue_from_dict, serve_forever
        catalogue = catalogue_from_dict({{"trusted_ca_pem_files": ["{tmp_path / 'ca.pem'}"], "organisations": []}})
        serve_forever(Path("{tmp_path / 'data'}"), catalogue, port=0)
        print("stopped", flush=True)
    """)
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("sandbox network on http://127.0.0.1:")
        url = first_line.split()[-1]
        assert httpx.get(f"{url}/sr/jwk", timeout=5).status_code == 200
        process.terminate()
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert output.rstrip().endswith("stopped")
    assert_clean_log(log)


def test_the_daemon_code_never_imports_the_sandbox() -> None:
    offenders = []
    for source in GATEWAY.rglob("*.py"):
        if "sandbox" in source.relative_to(GATEWAY).parts or source.name in ("cli.py", "commands.py"):
            continue  # the command line starts the sandbox (`efm-gateway sandbox`, sandbox mode of `run`)
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name == "gateway.sandbox" or name.startswith("gateway.sandbox.") for name in names):
                offenders.append(str(source.relative_to(GATEWAY)))
    assert offenders == []
