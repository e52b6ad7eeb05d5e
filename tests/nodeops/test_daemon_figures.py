"""A running daemon's metrics and operator page read the journal of its configuration, on either engine: the
messages it journaled, and the nodes on the journal (this node live, its heartbeat age; a lapsed one beside it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from gateway.clock import FakeClock
from gateway.journal.nodes import LEASE_SECONDS, NodeRegistry
from tests.foundation.drops import make_folder_drop
from tests.foundation.process import current_status, status_files, wait_for
from tests.nodeops.support import config_on
from tests.ops.support import OpsDaemon
from tests.ops.test_metrics import scrape, value

PAGE = re.compile(r"operator page on (http://\S+)/")
EXTRA = "ops:\n  enabled: true\n  port: 0\n  operator_page: true\n  operator_port: 0\nnode:\n  name: node-x\n"


def _lapsed_node(journal_place) -> None:
    """A node that stopped beating its heart ten minutes ago without saying it stopped (killed, cut off)."""
    journal = journal_place.open(FakeClock(datetime.now(UTC) - timedelta(seconds=LEASE_SECONDS + 600)))
    NodeRegistry(journal, "node-gone", journal.clock).join()
    journal.close()


def test_metrics_and_page_read_the_configured_journal(journal_place, tmp_path):
    config = config_on(journal_place, tmp_path, EXTRA, mode="polling", scan_interval_seconds=0.3)
    daemon = OpsDaemon(config, tmp_path / "daemon.log").start()
    try:
        base = daemon.endpoint()
        make_folder_drop(tmp_path / "var" / "outbox", "til-metrics")
        status = tmp_path / "var" / "status"
        wait_for(lambda: len(status_files(status)) == 1, 60, message="a status file")
        assert current_status(status_files(status)[0]) == "OPPRETTET"
        _lapsed_node(journal_place)
        [(phase,)] = journal_place.rows("SELECT phase FROM messages WHERE drop_name = 'til-metrics'")

        samples = scrape(base)
        assert value(samples, "efm_gateway_messages", direction="out", channel="", phase=phase) == 1
        assert value(samples, "efm_gateway_queue_depth", phase=phase) == 1
        assert value(samples, "efm_gateway_statuses_total", direction="out", channel="", status="OPPRETTET") == 1
        assert value(samples, "efm_gateway_nodes_live") == 1
        assert 0 <= value(samples, "efm_gateway_node_heartbeat_age_seconds", node="node-x") < LEASE_SECONDS
        assert value(samples, "efm_gateway_node_heartbeat_age_seconds", node="node-gone") >= LEASE_SECONDS + 600

        [page] = PAGE.findall(daemon.text())
        html = httpx.get(f"{page}/", timeout=10).text
        assert 'data-node="node-x" data-state="live"' in html
        assert 'data-node="node-gone" data-state="lapsed"' in html
        assert "1 of 2 live" in html
        assert "til-metrics" in html
    finally:
        daemon.stop()
