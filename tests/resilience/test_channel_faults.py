"""A real gateway against the sandbox's fault injection: Retry-After is honoured, a channel that answers
again after an outage gets its waiting messages at once, and a batch asks the registry once."""

from __future__ import annotations

import time

import pytest

from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current, history

from .support import BROKER_POSTS, clear_faults, counting, drop_messages, fired, log_lines, set_faults, times_of_counts


@pytest.fixture
def sandbox(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    yield sandbox
    sandbox.stop()


@pytest.fixture
def gateway_a(tmp_path, sandbox):
    gateways: list[Gateway] = []

    def start(**config) -> Gateway:
        gateway = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A, **config)).start()
        gateways.append(gateway)
        return gateway

    yield start
    for gateway in gateways:
        gateway.process.stop()


def test_a_429_with_retry_after_2_is_not_asked_again_before_2_s_and_soon_after(sandbox, gateway_a):
    set_faults(
        sandbox,
        counting("POST", BROKER_POSTS),
        {"fault": "error", "status": 429, "retry_after_seconds": 2, "method": "POST", "path": BROKER_POSTS,
         "times": 1},
    )
    a = gateway_a()
    [message_id] = drop_messages(a, 1)
    seen = times_of_counts(sandbox, 0, {1, 2}, timeout=30)
    assert set(seen) == {1, 2}, f"the broker saw {fired(sandbox)} requests"
    gap = seen[2] - seen[1]
    # Polled every 20 ms: the first time is seen late by at most that, so the gap shown is never longer than real.
    assert gap >= 1.95, f"asked again {gap:.2f} s after a 429 with Retry-After: 2"
    assert gap < 6, f"asked again only after {gap:.1f} s: the server said 2 s (the plain back-off is 20 s)"
    wait(lambda: current(a.status, message_id) == "SENDT", message="SENDT after the 429")
    assert history(a.status, message_id) == ["OPPRETTET", "SENDT"]
    assert log_lines(a.root / "daemon.log", "the server asks us to wait 2 s"), "the log says why it waits"


def test_a_channel_that_answers_again_after_an_outage_gets_its_waiting_messages_within_seconds(sandbox, gateway_a):
    set_faults(sandbox, {"fault": "error", "status": 502, "method": "POST", "path": BROKER_POSTS})
    a = gateway_a()
    ids = drop_messages(a, 10)
    first = times_of_counts(sandbox, 0, {1}, timeout=30)[1]
    wait(lambda: log_lines(a.root / "daemon.log", "DPO paused"), message="the channel paused")
    time.sleep(4)  # the outage goes on: each message's own back-off (20 s ± 20 %) is in force now
    tried_during_outage = fired(sandbox)[0]
    clear_faults(sandbox)
    cleared = time.monotonic()
    wait(lambda: all(current(a.status, m) == "SENDT" for m in ids), timeout=30, message="all ten sent")
    drained = time.monotonic()
    # A paused channel is probed (pauses of 1, 2, 4 s here), not hammered by each message's retries.
    assert tried_during_outage < 20, f"{tried_during_outage} requests to a channel that was down for 5 s"
    assert drained - cleared < 9, f"the waiting messages went {drained - cleared:.1f} s after the channel recovered"
    assert drained - first < 15, "sent before the plain back-off (16 s at the least) would have tried them again"
    log = (a.root / "daemon.log").read_text()
    assert "DPO answers again" in log
    assert "Traceback" not in log


def test_a_batch_to_one_receiver_asks_the_service_registry_once(sandbox, gateway_a, tmp_path):
    set_faults(sandbox, counting("GET", "/sr/identifier/*"))
    config = gateway_config(tmp_path / "a", sandbox, A)  # the folders exist before the gateway starts
    a = Gateway(tmp_path / "a", config)
    for name in ("outbox", "status", "inbox", "failed", "sent", "state"):
        (a.var / name).mkdir(parents=True, exist_ok=True)
    ids = drop_messages(a, 20)  # all waiting at start: the first send pass takes them together
    a = gateway_a()
    wait(lambda: all(current(a.status, m) == "SENDT" for m in ids), timeout=60, message="all twenty sent")
    assert fired(sandbox) == [1], "twenty messages to one receiver and process: one registry lookup"
