"""Start-up checks: each problem that stops the start is one clear line; what only waits (a network
that does not answer, a certificate near its end) is a warning and the daemon runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from gateway.devcerts import P12_PASSWORD, create_dev_pki
from tests.dpo.network import free_port
from tests.foundation.drops import OUR_ORGNR, make_folder_drop, write_config
from tests.foundation.process import current_status, status_files, wait_for, without_dac_command, without_dac_problem
from tests.ops.support import NotifyListener, OpsDaemon, edit_config
from tests.tools import machine_skip, require_tool


def _cli(*args: str, cwd: Path, dac: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(
        command if dac else without_dac_command(command), cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _only_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _with_keys(tmp_path: Path, certs: Path, trust: Path | None = None) -> Path:
    config = write_config(tmp_path)
    edit_config(
        config,
        keystore={"pkcs12": str(certs / f"{OUR_ORGNR}.p12"), "password": P12_PASSWORD},
        trust={"ca_bundle": str(trust or certs / "trust-bundle.pem")},
    )
    return config


def test_a_missing_folder_stops_the_start_with_one_line(tmp_path):
    config = write_config(tmp_path)
    edit_config(config, folders={"create_missing": False})
    for folder in ("status", "inbox", "failed", "sent", "state"):
        (tmp_path / "var" / folder).mkdir(parents=True)
    for command in ("check-config", "run"):
        result = _cli(command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2
        line = _only_line(result)
        assert line.startswith("efm-gateway: folders.outbox: the folder ")
        assert "does not exist; create it (or mount the share)" in line


def test_a_folder_that_is_not_writable_stops_the_start_with_one_line(tmp_path):
    problem = without_dac_problem()
    if problem:
        pytest.skip(problem)
    config = write_config(tmp_path)
    assert _cli("check-config", "--config", str(config), cwd=tmp_path).returncode == 0
    failed = tmp_path / "var" / "failed"
    failed.chmod(0o500)
    try:
        result = _cli("check-config", "--config", str(config), cwd=tmp_path, dac=False)
    finally:
        failed.chmod(0o700)
    assert result.returncode == 2
    assert _only_line(result) == (
        f"efm-gateway: folders.failed: the folder {failed} is not writable by this user; fix its permissions"
    )


def test_inbox_staging_on_another_file_system_than_the_inbox_stops_the_start(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        machine_skip("needs a writable /dev/shm on another file system")
    staging = shm / f"efm-test-{uuid.uuid4().hex}"
    config = write_config(tmp_path)
    edit_config(config, folders={"inbox_staging": str(staging)})
    try:
        result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    finally:
        subprocess.run(["rm", "-rf", str(staging)], check=False)
    assert result.returncode == 2
    line = _only_line(result)
    assert f"folders.inbox_staging ({staging}) and folders.inbox" in line
    assert "are on different file systems" in line
    assert "set folders.inbox_staging to a folder on the inbox's share" in line


def test_inbox_staging_beside_the_inbox_is_used(tmp_path):
    config = write_config(tmp_path)
    edit_config(config, folders={"inbox_staging": "var/inbox-staging"})
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "inbox-staging").is_dir()
    assert not (tmp_path / "var" / "state" / "inbox-staging").exists()


def test_a_certificate_that_expires_within_30_days_is_a_warning(tmp_path):
    certs = tmp_path / "certs"
    create_dev_pki(certs, {OUR_ORGNR: "Test kommune"}, days=10)
    config = _with_keys(tmp_path, certs)
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "keystore: the certificate expires on" in warnings[0]
    assert "in 9 days" in warnings[0] or "in 10 days" in warnings[0]
    assert "order a new enterprise certificate" in warnings[0]
    far = tmp_path / "far"
    far.mkdir()
    create_dev_pki(far / "certs", {OUR_ORGNR: "Test kommune"})
    result = _cli("check-config", "--config", str(_with_keys(far, far / "certs")), cwd=far)
    assert result.returncode == 0 and "warning:" not in result.stdout


def test_a_trust_store_without_the_ca_of_our_own_certificate_stops_the_start(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    create_dev_pki(ours, {OUR_ORGNR: "Test kommune"})
    create_dev_pki(theirs, {"910077473": "Andre AS"})
    config = _with_keys(tmp_path, ours, trust=theirs / "trust-bundle.pem")
    for command in ("check-config", "run"):
        result = _cli(command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2
        line = _only_line(result)
        assert line.startswith(f"efm-gateway: trust.ca_bundle ({theirs / 'trust-bundle.pem'}) does not hold the CA "
                               "that signed our own certificate")
        assert "add that CA (and its intermediates) to the bundle" in line


def test_an_unreachable_network_is_a_warning_and_intake_keeps_running(tmp_path):
    certs = tmp_path / "certs"
    create_dev_pki(certs, {OUR_ORGNR: "Test kommune"})
    config = _with_keys(tmp_path, certs)
    closed = f"http://127.0.0.1:{free_port()}"
    edit_config(
        config,
        network={"service_registry_url": f"{closed}/sr", "token_url": f"{closed}/token", "http_timeout_seconds": 2,
                 "altinn_exchange_url": f"{closed}/authentication/api/v1/exchange/maskinporten"},
        channels={"dpo": {"broker_url": f"{closed}/broker/api/v1"}},
    )
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert [line.split(" (")[0] for line in warnings] == [
        "warning: network.service_registry_url", "warning: network.token_url", "warning: channels.dpo.broker_url",
    ]
    assert all("does not answer (ConnectError); intake keeps running and messages wait" in w for w in warnings)

    daemon = OpsDaemon(config, tmp_path / "daemon.log").start()
    try:
        daemon.wait_log("network.service_registry_url")
        outbox = tmp_path / "var" / "outbox"
        make_folder_drop(outbox, "venter")
        status = tmp_path / "var" / "status"
        wait_for(lambda: status_files(status), 20, message="a status file")
        [path] = status_files(status)
        assert current_status(path) == "OPPRETTET"  # accepted; it waits for the network
        assert daemon.alive()
        assert "does not answer (ConnectError); intake keeps running" in daemon.text()
    finally:
        daemon.stop()


def test_the_disk_floor_holds_new_drops_in_the_outbox_until_it_is_lowered(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    config = write_config(tmp_path)
    edit_config(config, disk_floor_mb={"state": 1 << 40})  # a floor no disk reaches
    daemon = OpsDaemon(config, tmp_path / "daemon.log", listener).start()
    outbox = tmp_path / "var" / "outbox"
    try:
        daemon.wait_log("intake holds new drops in the outbox")
        line = next(line for line in daemon.text().splitlines() if "intake holds new drops" in line)
        assert " WARNING " in line
        assert "folders.state" in line and "under its floor of 1099511627776 MiB (disk_floor_mb.state)" in line
        drop = make_folder_drop(outbox, "venter")
        before = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in drop.iterdir())
        wait_for(lambda: "intake held" in (listener.last_status() or ""), 10, message="STATUS= says intake is held")
        time.sleep(2)  # four scan intervals
        assert sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in drop.iterdir()) == before
        assert not status_files(tmp_path / "var" / "status")

        edit_config(config, disk_floor_mb={"state": 1})
        daemon.hup()
        daemon.wait_log("intake resumes: free space is back above every floor")
        wait_for(lambda: not drop.exists(), 15, message="the held drop taken")
        wait_for(lambda: "intake held" not in (listener.last_status() or "intake held"), 10,
                 message="STATUS= no longer says intake is held")
    finally:
        daemon.stop()
        listener.close()


def test_config_keys_for_the_operations_endpoint_are_checked(tmp_path):
    config = write_config(tmp_path)
    edit_config(config, ops={"port": 70000})
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "ops.port must be 0 (any free port) or a port number up to 65535" in _only_line(result)
    data = yaml.safe_load(config.read_text())
    data["disk_floor_mb"] = {"stat": 5}
    config.write_text(yaml.safe_dump(data))
    result = _cli("check-config", "--config", str(config), cwd=tmp_path)
    assert "unknown key 'disk_floor_mb.stat'" in _only_line(result)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs of its own (needs root and mount), unmounted after the test."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run([require_tool("mount", package="mount"), "-t", "tmpfs", "-o", "size=32m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        machine_skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_intake_resumes_by_itself_when_space_returns(tmp_path, small_disk):
    config = write_config(tmp_path)
    # state (the journal) on the small disk; work, failed and sent stay beside the outbox for their renames
    edit_config(config, folders={"state": str(small_disk / "state"), "work": "var/work",
                                 "inbox_staging": "var/inbox-staging"},
                disk_floor_mb={"state": 16})
    daemon = OpsDaemon(config, tmp_path / "daemon.log").start()
    outbox = tmp_path / "var" / "outbox"
    try:
        wait_for(lambda: (small_disk / "state" / "efm-gateway.lock").exists(), 30, message="start")
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (24 << 20))  # 8 MiB left: under the floor
        daemon.wait_log("intake holds new drops in the outbox: folders.state")
        drop = make_folder_drop(outbox, "venter")
        time.sleep(1.5)
        assert drop.exists()
        filler.unlink()
        daemon.wait_log("intake resumes: free space is back above every floor")
        wait_for(lambda: not drop.exists(), 15, message="the held drop taken")
        wait_for(lambda: status_files(tmp_path / "var" / "status"), 15, message="its status file")
        [path] = status_files(tmp_path / "var" / "status")
        assert current_status(path) == "OPPRETTET"
    finally:
        daemon.stop()


def test_an_ops_port_already_taken_stops_the_start_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path)
        edit_config(config, ops={"enabled": True, "port": port})
        result = _cli("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert _only_line(result) == (
        f"efm-gateway: ops.address/ops.port: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose a free port (or 0 for any) or turn the endpoint off with ops.enabled: false"
    )
