"""Hundreds of messages through a network that breaks 30 % of the broker's requests: every message arrives
exactly once, every sender hears MOTTATT, and neither gateway logs a traceback or an ERROR line."""

from __future__ import annotations

import os

import pytest

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current

from .support import clear_faults, drop_messages, fired, set_faults

MESSAGES = 300
BROKER = "/broker/api/v1/filetransfer*"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_300_messages_through_30_percent_faults_arrive_once_each(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateways = []
    try:
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
        gateways += [a, b]
        set_faults(
            sandbox,
            {"fault": "error", "status": 502, "path": BROKER, "probability": 0.12},
            {"fault": "error", "status": 429, "retry_after_seconds": 1, "path": BROKER, "probability": 0.05},
            {"fault": "reset", "path": BROKER, "probability": 0.08},
            {"fault": "error", "status": 500, "after": True, "path": BROKER, "probability": 0.05},
        )
        ids = drop_messages(a, MESSAGES)
        wait(lambda: len(os.listdir(b.inbox)) >= MESSAGES, timeout=600, message="all in B's inbox")
        broken = sum(fired(sandbox))
        clear_faults(sandbox)
        wait(lambda: all(current(a.status, m) == "MOTTATT" for m in ids), timeout=300, message="MOTTATT for all")
        assert sorted(os.listdir(b.inbox)) == sorted(ids), "each message once, none missing"
        assert broken > MESSAGES / 2, f"only {broken} requests were broken: the faults did not bite"
    finally:
        for gateway in gateways:
            gateway.process.stop()  # no traceback, no ERROR line: every fault here is expected
        sandbox.stop()
