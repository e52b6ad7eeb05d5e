"""The systemd units: systemd itself finds nothing to say about them (verify, on a root that holds what they
run), the template for one instance per organisation is hardened like the single unit (systemd's own exposure
score at most 2.0), both reload on SIGHUP, stop restarting on a configuration error, wait for their state
folder's mount and take the secrets config.yaml names as credentials; the sysusers and tmpfiles snippets do
what the README says."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gateway.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNITS = ("efm-gateway.service", "efm-gateway@.service")
MAX_EXPOSURE = 2.0
# Not hardening: what differs between one instance and many.
PER_INSTANCE = ("Description", "ExecStartPre", "ExecStart", "ExecReload", "StateDirectory", "ConfigurationDirectory",
                "ReadWritePaths", "LoadCredential")
PROGRAM = "/opt/efm-gateway/bin/efm-gateway"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (.ci/run installs Debian's systemd package when it is missing)")
    return found


def _settings(unit: Path, wanted: str = "[Service]") -> dict[str, list[str]]:
    """Every setting of one section, each with all its values in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == wanted and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _service_settings(unit: Path) -> dict[str, str]:
    return {key: values[-1] for key, values in _settings(unit).items()}


def test_systemd_verifies_both_units_without_a_word(tmp_path):
    """On a root with systemd's own units, the program and /bin/kill: any unknown key, bad value or missing
    command is a line on stderr."""
    analyze = _tool("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc" / "systemd" / "system" / unit)
    for program in (PROGRAM, "/bin/kill"):
        path = root / program.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    result = subprocess.run([analyze, "verify", f"--root={root}", "efm-gateway.service",
                             "efm-gateway@kommune-a.service"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(("unit", "instance"), [("efm-gateway.service", ""), ("efm-gateway@.service", "%i")])
def test_reload_restart_mounts_and_secrets(unit, instance):
    service = _settings(SYSTEMD / unit)
    config = f"/etc/efm-gateway/{instance + '/' if instance else ''}config.yaml"
    assert service["ExecStart"] == [f"{PROGRAM} run --config {config}"]  # the venv: PEP 668 forbids a global pip
    assert service["ExecStartPre"] == [f"{PROGRAM} check-config --config {config}"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RestartPreventExitStatus"] == [str(int(ExitCode.CONFIG))]  # a configuration error
    state = "/var/lib/efm-gateway" + (f"/{instance}" if instance else "")
    assert _settings(SYSTEMD / unit, "[Unit]")["RequiresMountsFor"] == [state]
    # The credentials are the files config.yaml's template names in ${CREDENTIALS_DIRECTORY:-/etc/credstore}.
    template = (REPO / "packaging" / "config.yaml").read_text()
    named = re.findall(r"\$\{CREDENTIALS_DIRECTORY:-/etc/credstore\}/(efm-gateway\.[\w.-]+)", template)
    assert len(named) == 4
    prefix = f"efm-gateway.{instance}." if instance else "efm-gateway."
    assert service["LoadCredential"] == [name.replace("efm-gateway.", prefix, 1) for name in named]


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
    assert template["ExecStart"] == f"{PROGRAM} run --config /etc/efm-gateway/%i/config.yaml"
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
