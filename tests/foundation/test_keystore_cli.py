"""dev-certs makes usable test certificates, and a bad keystore stops the daemon with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from gateway.devcerts import P12_PASSWORD, create_dev_pki, dev_identity, issue_identity
from gateway.formats.keys import load_pkcs12, orgnr_of
from tests.formats_crypto.keystores import multi_entry_keystore

from .drops import write_config


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _with_keystore(tmp_path: Path, **keystore: str) -> Path:
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["keystore"] = keystore
    data["trust"] = {"ca_bundle": str(tmp_path / "certs" / "trust-bundle.pem")}
    config.write_text(yaml.safe_dump(data))
    return config


def test_dev_certs_makes_a_keystore_for_each_organisation(tmp_path):
    result = _cli("dev-certs", "--out", "certs", "991825827=Sandkasse kommune", "910077473", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for orgnr in ("991825827", "910077473"):
        identity = load_pkcs12(tmp_path / "certs" / f"{orgnr}.p12", "changeit")
        assert orgnr_of(identity.certificate) == orgnr
    assert "trust.ca_bundle" in result.stdout
    refused = _cli("dev-certs", "--out", "certs", "910075919", cwd=tmp_path)
    assert refused.returncode == 2 and "check digit" in refused.stderr


def test_check_config_accepts_a_good_keystore(tmp_path):
    assert _cli("dev-certs", "--out", "certs", "991825827", cwd=tmp_path).returncode == 0
    config = _with_keystore(tmp_path, pkcs12="certs/991825827.p12", password="changeit")
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "keystore: OK (organisation 991825827" in result.stdout


def test_a_wrong_password_stops_with_one_line(tmp_path):
    assert _cli("dev-certs", "--out", "certs", "991825827", cwd=tmp_path).returncode == 0
    config = _with_keystore(tmp_path, pkcs12="certs/991825827.p12", password="wrong")
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "wrong password" in result.stderr


def test_a_certificate_of_another_organisation_stops_with_one_line(tmp_path):
    assert _cli("dev-certs", "--out", "certs", "910077473", cwd=tmp_path).returncode == 0
    config = _with_keystore(tmp_path, pkcs12="certs/910077473.p12", password="changeit")
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "910077473" in result.stderr and "991825827" in result.stderr


def test_check_config_takes_the_key_entry_keystore_alias_names_from_a_multi_entry_keystore(tmp_path):
    pki = create_dev_pki(tmp_path / "certs", {"991825827": "Sandkasse kommune"})
    entries = [
        ("gammel-2024", issue_identity(pki, "910077473", "Forgjenger AS")),
        ("virksomhet", dev_identity(pki, "991825827")),
        ("signering", issue_identity(pki, "910077473", "Annen AS")),
    ]
    multi_entry_keystore(tmp_path / "multi.p12", entries, P12_PASSWORD)
    (tmp_path / "multi.p12").chmod(0o600)  # the gateway refuses a keystore every user may read

    chosen = _with_keystore(tmp_path, pkcs12="multi.p12", password=P12_PASSWORD, alias="virksomhet")
    result = _cli("check-config", "--config", str(chosen), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "keystore: OK (organisation 991825827" in result.stdout

    unnamed = _with_keystore(tmp_path, pkcs12="multi.p12", password=P12_PASSWORD)
    result = _cli("check-config", "--config", str(unnamed), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "holds 3 key entries ('gammel-2024', 'virksomhet', 'signering'); set keystore.alias" in result.stderr

    wrong = _with_keystore(tmp_path, pkcs12="multi.p12", password=P12_PASSWORD, alias="gammel-2024")
    result = _cli("check-config", "--config", str(wrong), cwd=tmp_path)
    assert result.returncode == 2
    assert "the certificate is for organisation 910077473, but config.yaml says 991825827" in result.stderr
