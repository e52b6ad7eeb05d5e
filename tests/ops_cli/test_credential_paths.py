"""Paths in config.yaml may name environment variables: under systemd the keystore and the passwords are
in ${CREDENTIALS_DIRECTORY} (LoadCredential=), by hand they come from the fallback, and a variable that is not
set stops the command with one line naming the key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.devcerts import P12_PASSWORD, create_dev_pki
from tests.foundation.drops import OUR_ORGNR, write_config
from tests.foundation.process import without_dac_command, without_dac_problem
from tests.ops.support import edit_config


def _check_config(config: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("CREDENTIALS_DIRECTORY", "EFM_TEST_SHARE")}
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=120)


def _credentials(folder: Path, certs: Path) -> Path:
    """A folder as systemd fills $CREDENTIALS_DIRECTORY from /etc/credstore: one file per credential."""
    folder.mkdir()
    shutil.copy(certs / f"{OUR_ORGNR}.p12", folder / "efm-gateway.keystore.p12")
    (folder / "efm-gateway.keystore-password").write_text(P12_PASSWORD + "\n")
    (folder / "efm-gateway.keystore-password").chmod(0o600)  # as LoadCredential= hands it over: the gateway's alone
    return folder


def test_the_keystore_and_its_password_from_the_credentials_directory(tmp_path):
    certs = tmp_path / "certs"
    create_dev_pki(certs, {OUR_ORGNR: "Test kommune"})
    credentials = _credentials(tmp_path / "credentials", certs)
    config = write_config(tmp_path)
    edit_config(config, keystore={"pkcs12": "${CREDENTIALS_DIRECTORY}/efm-gateway.keystore.p12",
                                  "password_file": "${CREDENTIALS_DIRECTORY}/efm-gateway.keystore-password"},
                trust={"ca_bundle": str(certs / "trust-bundle.pem")})

    under_systemd = _check_config(config, CREDENTIALS_DIRECTORY=str(credentials))
    assert under_systemd.returncode == 0, under_systemd.stderr
    assert f"keystore: OK (organisation {OUR_ORGNR}" in under_systemd.stdout

    by_hand = _check_config(config)
    assert by_hand.returncode == 2
    assert by_hand.stderr.strip().splitlines() == [
        f"efm-gateway: {config}: keystore.pkcs12 (${{CREDENTIALS_DIRECTORY}}/efm-gateway.keystore.p12) uses "
        "${CREDENTIALS_DIRECTORY}, which is not set (or empty) in the environment (systemd sets it for the service "
        "when its unit has LoadCredential= lines; a command run outside the service does not have it); set it, or "
        "write ${CREDENTIALS_DIRECTORY:-/a/folder} to name the folder to use without it"
    ]


def test_a_fallback_names_the_folder_to_use_outside_the_service(tmp_path):
    certs = tmp_path / "certs"
    create_dev_pki(certs, {OUR_ORGNR: "Test kommune"})
    credstore = _credentials(tmp_path / "credstore", certs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # what systemd would hand the service: empty, so only the fallback can pass
    config = write_config(tmp_path)
    fallback = f"${{CREDENTIALS_DIRECTORY:-{credstore}}}"
    edit_config(config, keystore={"pkcs12": f"{fallback}/efm-gateway.keystore.p12",
                                  "password_file": f"{fallback}/efm-gateway.keystore-password"},
                trust={"ca_bundle": str(certs / "trust-bundle.pem")})
    by_hand = _check_config(config)
    assert by_hand.returncode == 0, by_hand.stderr
    assert f"keystore: OK (organisation {OUR_ORGNR}" in by_hand.stdout
    in_service = _check_config(config, CREDENTIALS_DIRECTORY=str(elsewhere))  # the variable wins when set
    assert in_service.returncode == 2
    assert f"cannot read {elsewhere / 'efm-gateway.keystore-password'}" in in_service.stderr


def test_a_folder_may_name_a_variable_too(tmp_path):
    config = write_config(tmp_path)
    share = tmp_path / "share"
    edit_config(config, folders={"outbox": "$EFM_TEST_SHARE/ut"})
    result = _check_config(config, EFM_TEST_SHARE=str(share))
    assert result.returncode == 0, result.stderr
    assert f"outbox {share / 'ut'})" in result.stdout and (share / "ut").is_dir()


def test_a_secret_the_user_may_not_see_stops_only_what_reads_it(tmp_path):
    """Operator commands read no secret: they run as the service's user although /etc/credstore is closed to it;
    check-config, which reads the password files as the daemon will, names the one it cannot read."""
    problem = without_dac_problem()
    if problem:
        pytest.skip(problem)
    credstore = tmp_path / "credstore"
    credstore.mkdir(mode=0o700)
    (credstore / "efm-gateway.svarut-password").write_text("hemmelig\n")
    config = write_config(tmp_path)
    edit_config(config, network={"service_registry_url": "https://sr.example", "token_url": "https://token.example"},
                channels={"dpf": {"svarut_url": "https://svarut.example/api", "account_id": "konto",
                                  "integration_id": "integrasjon",
                                  "integration_password_file": f"${{CREDENTIALS_DIRECTORY:-{credstore}}}/"
                                                               "efm-gateway.svarut-password"}})
    os.chown(credstore, 12345, 12345)  # another user's folder: closed to root without CAP_DAC_OVERRIDE
    env = {key: value for key, value in os.environ.items() if key != "CREDENTIALS_DIRECTORY"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = without_dac_command([sys.executable, "-m", "gateway.cli", *args, "--config", str(config)])
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    status = run("status")
    assert status.returncode == 3, status.stderr  # no journal yet: the status command itself ran
    assert "Traceback" not in status.stderr
    check = run("check-config")
    assert check.returncode == 2
    lines = check.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "channels.dpf.integration_password_file" in lines[0] and "cannot be read (Permission denied)" in lines[0]
