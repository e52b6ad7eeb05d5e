"""The daemon speaks systemd's notify protocol: READY when it runs, WATCHDOG pings, STOPPING on SIGTERM."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.logcheck import assert_clean_log

from .drops import write_config

REPO = Path(__file__).resolve().parents[2]


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path):
    config = write_config(tmp_path)
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(1)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
    log = tmp_path / "daemon.log"
    with open(log, "wb") as log_handle:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
            env=env,
            cwd=tmp_path,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    received: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and received.count("WATCHDOG=1") < 2:
            try:
                received.append(listener.recv(256).decode())
            except TimeoutError:
                continue
        assert "READY=1" in received
        assert received.count("WATCHDOG=1") >= 2, received
        assert received.index("READY=1") < received.index("WATCHDOG=1")
        daemon.send_signal(signal.SIGTERM)
        while time.monotonic() < deadline + 30 and "STOPPING=1" not in received:
            try:
                received.append(listener.recv(256).decode())
            except TimeoutError:
                continue
        assert "STOPPING=1" in received
        assert daemon.wait(timeout=30) == 0
        assert_clean_log(log)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()


def test_the_unit_file_runs_the_daemon_as_a_notify_service_with_a_watchdog():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "efm-gateway.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["ExecStart"].split()[1:3] == ["run", "--config"]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
