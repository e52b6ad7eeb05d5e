"""A SIGHUP that arrives while `efm-gateway run` is still starting (here: its sandbox network not yet up) does not
end the daemon: the reload it asks for is done once the daemon runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from tests.foundation.drops import write_config
from tests.foundation.process import DaemonProcess, wait_for


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (the SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signum - 1)))


def test_a_sighup_during_start_up_is_a_reload_once_running(tmp_path):
    config = write_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["sandbox"] = {"enabled": True}  # the slowest start there is: certificates and a network first
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log).start()
    assert daemon.process is not None
    try:
        wait_for(lambda: _catches(daemon.process.pid, signal.SIGHUP), 30, interval=0.005,
                 message="the SIGHUP handler")
        network_file = tmp_path / "var" / "sandbox" / "network.yaml"
        assert not network_file.exists(), "the handler came only after the slow part of the start"
        os.kill(daemon.process.pid, signal.SIGHUP)
        wait_for(lambda: "efm-gateway is running" in log.read_text(), 90, message="the daemon running")
        wait_for(lambda: "received SIGHUP; reading" in log.read_text(), 15, message="the reload")
        text = log.read_text()
        assert text.index("efm-gateway is running") < text.index("received SIGHUP; reading")
        wait_for(lambda: "reloaded " in log.read_text(), 15, message="the reload done")
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0
