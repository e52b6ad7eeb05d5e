"""The watchdog is fed only while every worker reports: a receiver hung on a stalled broker stops
WATCHDOG=1, /healthz names it, and both recover when it reports again."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from gateway.ops.health import Heartbeats
from gateway.ops.watchdog import Watchdog
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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


WORKERS = (("intake", 0.3), ("sender", 0.3), ("status-poll-DPI", 30.0))


def _watched(clock: _Clock, summary=lambda: "running") -> Watchdog:
    heartbeats = Heartbeats(30.0, monotonic=clock)
    for name, interval in WORKERS:
        heartbeats.register(name, interval)
    return Watchdog(heartbeats, None, summary)


def _said(caplog, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level]


def test_a_daemon_that_stood_still_says_so_once_and_its_workers_are_not_taken_for_hung(caplog):
    """SIGSTOP, or a frozen VM: no worker could beat while the daemon stood still, the watchdog's own check included;
    that is one WARNING, not an ERROR per worker (and systemd's watchdog unfed until the slowest job ran again)."""
    clock = _Clock()
    watchdog = _watched(clock)
    watchdog.check()
    clock.now += 76.0  # stopped for 76 s, between two checks
    with caplog.at_level(logging.INFO, logger="gateway.ops.watchdog"):
        watchdog.check()
    assert _said(caplog, logging.ERROR) == []
    assert _said(caplog, logging.WARNING) == [
        "the daemon did not run for 74 s (its process was stopped, or its machine frozen or suspended); its "
        "workers' silence through it is not taken for a hang"]
    assert watchdog.heartbeats.late() == []

    caplog.clear()  # a worker that stays silent after the pause is found hung after its interval and grace
    for _ in range(20):
        clock.now += 2.0
        watchdog.heartbeats.beat("intake")
        watchdog.heartbeats.beat("status-poll-DPI")
        with caplog.at_level(logging.INFO, logger="gateway.ops.watchdog"):
            watchdog.check()
    assert _said(caplog, logging.ERROR) == [
        "worker sender has not reported for 32 s (it runs every 0.3 s); see /healthz"]
    assert _said(caplog, logging.WARNING) == []


def test_a_worker_silent_while_the_watchdog_checks_on_is_hung_however_long(caplog):
    clock = _Clock()
    watchdog = _watched(clock)
    with caplog.at_level(logging.INFO, logger="gateway.ops.watchdog"):
        for _ in range(40):  # 80 s of checks every 2 s: the daemon runs, and no worker beats
            watchdog.check()
            clock.now += 2.0
    assert _said(caplog, logging.WARNING) == []
    assert sorted(_said(caplog, logging.ERROR)) == [
        "worker intake has not reported for 32 s (it runs every 0.3 s); see /healthz",
        "worker sender has not reported for 32 s (it runs every 0.3 s); see /healthz",
        "worker status-poll-DPI has not reported for 62 s (it runs every 30 s); see /healthz",
    ]


def test_a_check_that_itself_took_long_is_not_the_daemon_standing_still(caplog):
    """The summary for STATUS= reads the journal: while its database is out of reach, that waits for a connect
    timeout (10 s) at every check. The daemon runs on meanwhile; the checks say nothing of standing still."""
    clock = _Clock()

    def summary_waiting_for_the_database() -> str:
        clock.now += 12.0
        return "the journal's database does not answer"

    watchdog = _watched(clock, summary_waiting_for_the_database)
    with caplog.at_level(logging.INFO, logger="gateway.ops.watchdog"):
        for _ in range(5):
            for name, _interval in WORKERS:
                watchdog.heartbeats.beat(name)
            watchdog.check()
            clock.now += watchdog.tick
    assert _said(caplog, logging.WARNING) == [] and _said(caplog, logging.ERROR) == []
