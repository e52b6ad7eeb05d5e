"""PostgreSQL restarted (pg_ctl stop -m immediate, as a crash or a fail-over cuts every session, then started)
while two nodes send and receive on one shared folder tree: each node pauses, says so in one line and in /readyz,
and goes on when the database answers again (one line); no message is lost or doubled, and every status file
ends at its final status."""

from __future__ import annotations

import random
import re
import time

import httpx
import pytest

from tests.dpo.network import SandboxProcess
from tests.foundation.process import DaemonProcess, wait_for
from tests.nodes.support import CpuUse, node_config
from tests.nodes.test_database_outage import OUTAGE_LINE, RECOVERY_LINE
from tests.nodes.traffic import NODE_SETTINGS, Traffic
from tests.resilience.support import log_lines

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 200
ENDPOINT = re.compile(r"metrics on (http://\S+)/metrics")


def _journal_check(endpoint: str) -> tuple[int, dict]:
    answer = httpx.get(f"{endpoint}/readyz", timeout=10)
    return answer.status_code, answer.json()["checks"]["journal"]


@pytest.mark.timeout(1800)  # a bound for a hang only: the waits inside end when nothing moves
def test_postgresql_restarted_under_two_nodes_sending_and_receiving(tmp_path, postgres_database):
    server = postgres_database.server
    cpu = CpuUse(postgres_database)
    sandbox = SandboxProcess(tmp_path / "sandbox")
    settings = {**NODE_SETTINGS, "ops": {**NODE_SETTINGS["ops"], "enabled": True, "port": 0}}
    configs = [node_config(tmp_path, sandbox, postgres_database, name, **settings)
               for name in ("node-1", "node-2")]
    # A session the server cut in the middle of a step ends that step with the outage's one line (an ERROR).
    nodes = [DaemonProcess(config, config.parent / "daemon.log", allowed_log=(OUTAGE_LINE,)).start()
             for config in configs]
    traffic = Traffic(tmp_path, sandbox, random.Random(1919), MESSAGES, postgres_database)
    stopped = False
    try:
        endpoints = []
        for node in nodes:
            wait_for(lambda node=node: ENDPOINT.search(node.log.read_text(errors="replace")), 180, interval=0.2,
                     message=f"{node.config.parent.name}'s operations endpoint")
            endpoints.append(ENDPOINT.search(node.log.read_text(errors="replace")).group(1))
        traffic.start()
        wait_for(lambda: min(traffic.progress()) >= MESSAGES // 5, 300, interval=0.5,
                 message="a fifth of the messages done both ways")
        server.stop()  # the rest are under way
        stopped = True
        at_stop = traffic.progress()
        for node in nodes:
            wait_for(lambda node=node: log_lines(node.log, OUTAGE_LINE), 60, interval=0.2,
                     message=f"{node.config.parent.name} says the outage")
        for endpoint in endpoints:
            status, journal = _journal_check(endpoint)
            assert status == 503 and journal["ok"] is False and journal["detail"].startswith(OUTAGE_LINE), journal
        time.sleep(8)  # several runs of every job and pass: none may say the outage again, or stop the node
        assert all(node.alive() for node in nodes)
        server.start()
        stopped = False
        for node in nodes:
            wait_for(lambda node=node: log_lines(node.log, RECOVERY_LINE), 60, interval=0.2,
                     message=f"{node.config.parent.name} says the database answers again")
        for endpoint in endpoints:
            assert _journal_check(endpoint)[1]["ok"] is True
        traffic.wait_until_done()
        time.sleep(3)  # anything still in flight would show up as a duplicate now
        traffic.read_svarut()
    finally:
        if stopped:
            server.start()
        try:
            traffic.stop()
            for node in nodes:
                node.stop(check_log=False)
        finally:
            sandbox.stop()
    traffic.check_each_once()
    for node in nodes:
        node.check_log()
    for node in nodes:
        assert len(log_lines(node.log, OUTAGE_LINE)) == 1, node.log
        assert len(log_lines(node.log, RECOVERY_LINE)) == 1, node.log
    print(f"\ndone both ways when PostgreSQL stopped: {at_stop} of {MESSAGES}; {cpu.summary()} (its run before the "
          "restart not counted)")
