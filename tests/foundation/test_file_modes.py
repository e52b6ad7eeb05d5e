"""The gateway sets the modes of what it writes, whatever umask it runs with (a plain run, not systemd's
UMask=0027): the journal and keys 0600; status files, received messages and sent originals 0640 in folders
0750 (an inbox message's folders 0770, so that the archive system can take it away), with folders.group
when it is set; and it refuses to start on a keystore others can read."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from gateway.devcerts import P12_PASSWORD, create_dev_pki
from tests.dpo.statusfiles import history
from tests.ops.support import edit_config

from .drops import OUR_ORGNR, write_config
from .process import DaemonProcess, wait_for

REPO = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _archive_group() -> grp.struct_group:
    """A group of this machine that is not the test's own, to stand for the archive system's."""
    return next(group for group in sorted(grp.getgrall(), key=lambda g: g.gr_gid) if group.gr_gid != os.getgid())


def test_a_sample_run_leaves_each_file_with_its_mode_and_the_archive_group(tmp_path):
    archive = _archive_group()
    config = tmp_path / "config.yaml"
    shutil.copy(REPO / "config.yaml", config)
    edit_config(config, ops={"port": 0, "operator_page": False}, sandbox={"reply": True},
                intake={"mode": "events", "quiet_period_seconds": 0.2, "scan_interval_seconds": 0.5},
                folders={"group": archive.gr_name})
    old_umask = os.umask(0o022)  # a plain run: without our own modes, everything would be world-readable
    try:
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    finally:
        os.umask(old_umask)
    var = tmp_path / "var"
    try:
        wait_for(lambda: (var / "outbox").is_dir(), 60, message="the folders made")
        shutil.copytree(REPO / "sample_drops" / "brev-til-sandkasse-peer", var / "brev-til-sandkasse-peer")
        os.rename(var / "brev-til-sandkasse-peer", var / "outbox" / "brev-til-sandkasse-peer")
        wait_for(lambda: any("LEST" in history(var / "status", name.split(".")[-2])
                             for name in os.listdir(var / "status")), 90, message="LEST from the peer")
        wait_for(lambda: any((folder / "message.xml").exists() for folder in (var / "inbox").iterdir()), 60,
                 message="the peer's reply in the inbox")
        wait_for(lambda: (var / "sent" / "brev-til-sandkasse-peer").is_dir(), 30, message="the originals in sent/")
    finally:
        daemon.stop()

    state = var / "state"
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        if (state / name).exists():
            assert _mode(state / name) == 0o600, name
    keys = [path for path in (var / "sandbox").rglob("*") if path.suffix == ".p12" or path.name.endswith("key.pem")]
    assert keys and all(_mode(path) == 0o600 for path in keys), {str(p): oct(_mode(p)) for p in keys}

    status_files = [path for path in (var / "status").iterdir() if path.suffix == ".xml"]
    assert status_files
    sent = var / "sent" / "brev-til-sandkasse-peer"
    [reply] = [folder for folder in (var / "inbox").iterdir() if folder.is_dir()]
    for path in [*status_files, *sent.rglob("*"), *reply.rglob("*")]:
        if path.is_file():
            assert _mode(path) == 0o640, path
            assert path.stat().st_gid == archive.gr_gid, path
    assert _mode(sent) == 0o750 and sent.stat().st_gid == archive.gr_gid
    assert _mode(reply) == 0o770 and reply.stat().st_gid == archive.gr_gid


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_a_keystore_others_can_read_stops_the_start(tmp_path):
    certs = tmp_path / "certs"
    create_dev_pki(certs, {OUR_ORGNR: "Test kommune"})
    keystore = certs / f"{OUR_ORGNR}.p12"
    config = write_config(tmp_path)
    edit_config(config, keystore={"pkcs12": str(keystore), "password": P12_PASSWORD},
                trust={"ca_bundle": str(certs / "trust-bundle.pem")})
    assert _cli("check-config", "--config", str(config), cwd=tmp_path).returncode == 0
    keystore.chmod(0o644)
    for command in ("check-config", "run"):
        result = _cli(command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [
            f"efm-gateway: keystore.pkcs12: {keystore} can be read by every user of this machine (mode 0644); "
            f"make it readable by the gateway alone: chmod 600 {keystore}"
        ], result.stderr
    keystore.chmod(0o640)  # the gateway's group may read it (systemd's LoadCredential, an admin group)
    assert _cli("check-config", "--config", str(config), cwd=tmp_path).returncode == 0


def test_a_group_that_does_not_exist_stops_the_start(tmp_path):
    config = write_config(tmp_path)
    edit_config(config, folders={"group": "ingen-slik-gruppe"})
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "folders.group: there is no group 'ingen-slik-gruppe' on this machine; create it (groupadd) or name the "
        "archive system's group"
    ), result.stderr
