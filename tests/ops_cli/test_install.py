"""packaging/install.sh on a server's root of its own (--root, --prefix): the system user, a real virtual
environment with the package in it, the units, /etc/efm-gateway with the template; run again, it upgrades the
program and keeps the configuration. Offline: pip gets the package as a wheel built here, and the dependencies
from this Python's own site-packages."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from tests.tools import machine_skip

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "packaging" / "install.sh"


def _wheel(tmp_path: Path, version: str) -> Path:
    """efm-gateway's wheel as `version`, built from a copy of this source tree (nothing is written into it)."""
    source = tmp_path / f"source-{version}"
    shutil.copytree(REPO / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", source / "README.md")
    project = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (source / "pyproject.toml").write_text(project.replace('version = "', f'version = "{version}"  # was "', 1))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(wheels), str(source)], check=True, timeout=300,
                   capture_output=True)
    [wheel] = wheels.glob(f"efm_gateway-{version}-*.whl")
    return wheel


def _install(root: Path, prefix: Path, wheel: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PIP_NO_INDEX"] = "1"  # never the network: the dependencies are this Python's own
    return subprocess.run(
        ["sh", str(INSTALL), "--root", str(root), "--prefix", str(prefix), "--package", str(wheel),
         "--python", sys.executable, "--system-site-packages"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )


def _installed(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return subprocess.run([str(prefix / "bin" / "efm-gateway"), *args], env=env, cwd=prefix, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_install_then_upgrade_on_a_root_of_its_own(tmp_path):
    if os.geteuid() != 0:
        machine_skip("install.sh runs as root (it makes a system user); the suite runs as root in CI")
    root, prefix = tmp_path / "root", tmp_path / "opt" / "efm-gateway"
    root.mkdir()
    first = _install(root, prefix, _wheel(tmp_path, "9.0.0"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"installed efm-gateway 9.0.0 in {prefix}" in first.stdout

    # The program runs from its own environment, not from this checkout.
    assert _installed(prefix, "--version").stdout == "efm-gateway 9.0.0\n"
    where = subprocess.run([str(prefix / "bin" / "python"), "-c", "import gateway; print(gateway.__file__)"],
                           env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
                           cwd=prefix, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(prefix)
    assert os.readlink(root / "usr" / "local" / "bin" / "efm-gateway") == str(prefix / "bin" / "efm-gateway")

    # The system user and the folders.
    [user] = [line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()
              if line.startswith("efm-gateway:")]
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert uid < 1000 and home == "/var/lib/efm-gateway" and shell.endswith("nologin")
    state = (root / "var" / "lib" / "efm-gateway").stat()
    assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (uid, gid, 0o750)
    assert stat.S_IMODE((root / "etc" / "credstore").stat().st_mode) == 0o700

    # The units run the environment's program.
    unit = (root / "etc" / "systemd" / "system" / "efm-gateway.service").read_text()
    assert f"ExecStart={prefix}/bin/efm-gateway run --config /etc/efm-gateway/config.yaml\n" in unit
    template_unit = (root / "etc" / "systemd" / "system" / "efm-gateway@.service").read_text()
    assert f"ExecStart={prefix}/bin/efm-gateway run --config /etc/efm-gateway/%i/config.yaml\n" in template_unit

    # The configuration template: readable by the service's group only; the one thing it asks first is the
    # organisation number, and with one it is a configuration the daemon takes.
    config = root / "etc" / "efm-gateway" / "config.yaml"
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o640)
    assert config.read_text() == (REPO / "packaging" / "config.yaml").read_text()
    refused = _installed(prefix, "check-config", "--config", str(config))
    assert refused.returncode == 2
    assert "organisation.orgnr: 'CHANGE-ME' is not an organisation number" in refused.stderr
    settings = yaml.safe_load(config.read_text())
    settings["organisation"]["orgnr"] = "991825827"
    filled = tmp_path / "filled.yaml"
    filled.write_text(yaml.safe_dump(settings))
    assert load_config(filled).folders.state == Path("/var/lib/efm-gateway/state")

    # Again, with a newer version: the program is upgraded, the operator's configuration kept.
    config.write_text(config.read_text().replace('orgnr: "CHANGE-ME"', 'orgnr: "991825827"'))
    mine = config.read_text()
    second = _install(root, prefix, _wheel(tmp_path, "9.0.1"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert _installed(prefix, "--version").stdout == "efm-gateway 9.0.1\n"
    assert config.read_text() == mine
    assert (root / "etc" / "efm-gateway" / "config.yaml.example").read_text() == (
        REPO / "packaging" / "config.yaml").read_text()
    assert [line for line in (root / "etc" / "passwd").read_text().splitlines()
            if line.startswith("efm-gateway:")] == [":".join(user)]
