"""The operator page's node table in a real browser (headless Chromium): each node's name, host, pid, last
heartbeat, age and state as rendered, a lapsed node marked, and a node name that holds markup shown as text."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import uvicorn
from starlette.applications import Starlette

from gateway.clock import FakeClock
from gateway.journal.nodes import LEASE_SECONDS, NodeRegistry
from gateway.journal.overview import JournalView
from gateway.journal.store import Journal
from gateway.ops.metrics import JournalMetrics
from gateway.ops.page import page_routes
from tests.dpo.network import free_port, wait
from tests.ops_cli.support import browser

ODD_NAME = "<b>gw-c</b>&amp;"


@contextlib.contextmanager
def _page(journal_path) -> Iterator[str]:
    """The page's routes as the daemon's ops endpoint mounts them: the nodes read by the metrics' reader."""
    view = JournalView(journal_path, live=True)
    metrics = JournalMetrics(journal_path)
    app = Starlette(routes=page_routes(view, nodes=lambda: metrics.nodes(time.time())))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait(lambda: server.started, 20, message="the page server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        view.close()
        metrics.close()


def test_the_page_shows_the_nodes(tmp_path):
    path = tmp_path / "journal.sqlite"
    now = datetime.now(UTC)
    for name, at in (("gw-a", now + timedelta(seconds=20)), ("gw-b", now - timedelta(seconds=LEASE_SECONDS + 3570)),
                     (ODD_NAME, now + timedelta(seconds=20))):
        journal = Journal(path, FakeClock(at))
        NodeRegistry(journal, name, journal.clock).join()
        journal.close()
    with _page(path) as base, browser() as chromium:
        page = chromium.new_page()
        page.goto(f"{base}/")
        caption = page.inner_text("#nodes caption")
        rows = page.eval_on_selector_all(
            "#nodes tr[data-node]", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
        markup = page.eval_on_selector_all("#nodes b", "found => found.length")
        lapsed_colour = page.eval_on_selector(
            "#nodes tr[data-state=lapsed] td:last-child", "cell => getComputedStyle(cell).color")
    assert caption == "Nodes on this journal: 2 of 3 live"
    by_name = {row[0]: row for row in rows}
    assert sorted(by_name) == sorted(["gw-a", "gw-b", ODD_NAME])  # the markup is text, not an element
    assert markup == 0
    assert by_name["gw-a"][5] == "live" and by_name["gw-b"][5] == "lapsed" and by_name[ODD_NAME][5] == "live"
    assert by_name["gw-b"][4] in ("60 min", "61 min") and by_name["gw-a"][4] == "0 s"
    assert by_name["gw-b"][2].isdigit() and by_name["gw-b"][1]
    assert lapsed_colour == "rgb(170, 0, 0)"  # marked as the page marks failures
