"""The watchdog is fed only while every worker reports: a receiver hung on a stalled broker stops
WATCHDOG=1, /healthz names it, and both recover when it reports again."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config
from tests.foundation.process import wait_for
from tests.ops.support import NotifyListener, OpsDaemon, healthz

LIST_TRANSFERS = "/broker/api/v1/filetransfer"


@pytest.fixture
def sandbox(tmp_path):
    network = SandboxProcess(tmp_path / "sandbox")
    yield network
    network.stop()


def test_a_hung_receiver_stops_the_watchdog_and_healthz_names_it(tmp_path, sandbox):
    root = tmp_path / "a"
    config = gateway_config(
        root, sandbox, A,
        ops={"enabled": True, "port": 0, "heartbeat_grace_seconds": 1},
        network={"http_timeout_seconds": 120},
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    gateway = Gateway(root, config)
    daemon = OpsDaemon(
        config, root / "daemon.log", listener, watchdog_usec=1_000_000,
        allowed_log=(r"worker inbound-DPO has not reported",),
    ).start()
    gateway.process = daemon
    try:
        base = daemon.endpoint()
        started = time.monotonic()
        wait_for(lambda: len(listener.since(started, "WATCHDOG=1")) >= 2, 15, message="watchdog pings")
        assert healthz(base)[0] == 200

        stall = {"rules": [{"fault": "stall", "method": "GET", "path": LIST_TRANSFERS, "stall_seconds": 8}]}
        httpx.post(f"{sandbox.url}/_faults", json=stall, timeout=10).raise_for_status()
        wait_for(lambda: healthz(base)[0] == 503, 20, interval=0.2, message="/healthz turning unhealthy")
        code, report = healthz(base)
        assert code == 503 and report["healthy"] is False
        assert report["late_workers"] == ["inbound-DPO"]
        assert report["workers"]["inbound-DPO"]["late"] is True
        assert report["workers"]["intake"]["late"] is False and report["workers"]["sender"]["late"] is False
        daemon.wait_log("worker inbound-DPO has not reported")
        quiet_from = time.monotonic()
        time.sleep(2.5)  # five watchdog periods
        assert listener.since(quiet_from, "WATCHDOG=1") == []
        assert "late: inbound-DPO" in (listener.last_status() or "")

        httpx.delete(f"{sandbox.url}/_faults", timeout=10).raise_for_status()  # the stalled poll ends within 8 s
        wait_for(lambda: healthz(base)[0] == 200, 30, interval=0.2, message="/healthz healthy again")
        back = time.monotonic()
        wait_for(lambda: listener.since(back, "WATCHDOG=1"), 10, message="watchdog pings again")
        daemon.wait_log("worker inbound-DPO reports again")
    finally:
        daemon.stop()
        listener.close()
