"""SIGTERM ends the daemon promptly whatever the main thread is doing when it comes, as systemd's TimeoutStopSec
relies on. A signal handler runs in the main thread between two of its bytecodes, perhaps while that thread
holds a lock (an Event's own, inside Event.wait() or clear()): a handler that takes a lock there waits for
itself, and the daemon never stops. A storm of SIGHUPs (a configuration tool reloading in a loop) makes the
handlers run at nearly every moment, so such a lock would be met within the storm."""

from __future__ import annotations

import os
import signal
import time

from tests.foundation.drops import write_config
from tests.foundation.process import DaemonProcess, wait_for

STORM_SECONDS = 4.0
STOP_SECONDS = 15.0  # the daemon stops in well under a second; this bound is for a loaded machine


def test_sigterm_after_a_storm_of_sighups_ends_the_daemon_promptly(tmp_path):
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(write_config(tmp_path), log).start()
    assert daemon.process is not None
    try:
        wait_for(lambda: "efm-gateway is running" in log.read_text(), 60, message="the daemon running")
        pid = daemon.process.pid
        sent = 0
        ends = time.monotonic() + STORM_SECONDS
        while time.monotonic() < ends:
            os.kill(pid, signal.SIGHUP)
            sent += 1
        wait_for(lambda: "reloaded " in log.read_text(), 15, message="a reload asked for by the storm")
        assert daemon.alive(), "a SIGHUP ended the daemon"
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        wait_for(lambda: not daemon.alive(), STOP_SECONDS, message=f"the daemon to stop after {sent} SIGHUPs")
        assert time.monotonic() - started < STOP_SECONDS
    finally:
        assert daemon.stop() == 0
