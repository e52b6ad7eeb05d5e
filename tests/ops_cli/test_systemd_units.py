"""The systemd units: the template for one instance per organisation is hardened like the single unit
(systemd's own exposure score at most 2.0), and the sysusers and tmpfiles snippets do what the README says."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("efm-gateway.service", "efm-gateway@.service")
MAX_EXPOSURE = 2.0
# Not hardening: what differs between one instance and many.
PER_INSTANCE = ("Description", "ExecStartPre", "ExecStart", "ExecReload", "StateDirectory", "ConfigurationDirectory",
                "ReadWritePaths")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (.ci/run installs Debian's systemd package when it is missing)")
    return found


def _service_settings(unit: Path) -> dict[str, str]:
    settings: dict[str, str] = {}
    section = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


@pytest.mark.parametrize("unit", UNITS)
def test_the_units_exposure_is_at_most_2(unit):
    analyze = _tool("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=true", str(SYSTEMD / unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score, result.stdout[-2000:]
    assert float(score.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_template_has_the_single_units_hardening_and_its_own_folders():
    single = _service_settings(SYSTEMD / "efm-gateway.service")
    template = _service_settings(SYSTEMD / "efm-gateway@.service")
    hardening = {key: value for key, value in single.items() if key not in PER_INSTANCE}
    assert {key: template.get(key) for key in hardening} == hardening
    assert template["ExecStart"] == "/usr/local/bin/efm-gateway run --config /etc/efm-gateway/%i/config.yaml"
    assert template["StateDirectory"] == "efm-gateway/%i"
    assert template["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_sysusers_and_tmpfiles_snippets_make_the_user_and_the_folders(tmp_path):
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run([sysusers, f"--root={root}", str(SYSTEMD / "sysusers.d" / "efm-gateway.conf")],
                   check=True, capture_output=True, timeout=60)
    user = next(line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()
                if line.startswith("efm-gateway:"))
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert home == "/var/lib/efm-gateway" and shell.endswith("nologin")
    subprocess.run([tmpfiles, f"--root={root}", "--create", str(SYSTEMD / "tmpfiles.d" / "efm-gateway.conf")],
                   check=True, capture_output=True, timeout=60)
    configuration, state = (root / "etc" / "efm-gateway").stat(), (root / "var" / "lib" / "efm-gateway").stat()
    assert stat.S_IMODE(configuration.st_mode) == 0o750 and (configuration.st_uid, configuration.st_gid) == (0, gid)
    assert stat.S_IMODE(state.st_mode) == 0o750 and (state.st_uid, state.st_gid) == (uid, gid)
