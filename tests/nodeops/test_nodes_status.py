"""`efm-gateway status --nodes` on either engine: every node that shares the journal with its host, pid, last
heartbeat and age, and whether it is live, lapsed (no heartbeat within the lease, never stopped) or stopped."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

from gateway.clock import FakeClock
from gateway.journal.nodes import LEASE_SECONDS, NodeRegistry
from tests.nodeops.support import config_on
from tests.ops_cli.support import cli


def _registered(journal_place) -> None:
    now = datetime.now(UTC)
    # node-a beat its heart a little ahead of this clock, so it stays live however slow the command starts
    for name, at, leaves in (("node-a", now + timedelta(seconds=20), False),
                             ("node-b", now - timedelta(seconds=LEASE_SECONDS + 570), False),
                             ("node-c", now - timedelta(hours=3), True)):
        journal = journal_place.open(FakeClock(at))
        registry = NodeRegistry(journal, name, journal.clock)
        registry.join()
        registry.beat()
        if leaves:
            registry.leave()
        journal.close()


def test_status_nodes_text_and_json(journal_place, tmp_path):
    config = config_on(journal_place, tmp_path)
    _registered(journal_place)

    shown = cli(config, "status", "--nodes")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["node", "host", "pid", "last", "heartbeat", "(UTC)", "age", "state"]
    by_name = {line.split()[0]: line.split() for line in lines[1:4]}
    assert by_name["node-a"][-1] == "live" and by_name["node-b"][-1] == "lapsed"
    assert by_name["node-c"][-1] == "stopped"
    assert by_name["node-b"][1] == socket.gethostname()
    assert by_name["node-b"][-3:-1] == ["10", "min"]  # 600 s without a heartbeat
    assert lines[-1].startswith("1 of 3 node(s) live")

    as_json = cli(config, "status", "--nodes", "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["live"] == 1
    nodes = {node["name"]: node for node in document["nodes"]}
    assert [nodes[name]["state"] for name in ("node-a", "node-b", "node-c")] == ["live", "lapsed", "stopped"]
    assert 600 <= nodes["node-b"]["heartbeat_age_seconds"] < 3600
    assert nodes["node-c"]["stopped_at"] is not None and nodes["node-a"]["stopped_at"] is None
    assert all(isinstance(node["pid"], int) and node["host"] for node in nodes.values())
    assert nodes["node-b"]["last_heartbeat"].endswith("Z") and nodes["node-a"]["started_at"].endswith("Z")


def test_status_nodes_without_a_journal(journal_place, tmp_path):
    config = config_on(journal_place, tmp_path)
    shown = cli(config, "status", "--nodes")
    assert shown.returncode == 3 and "no journal yet" in shown.stderr
