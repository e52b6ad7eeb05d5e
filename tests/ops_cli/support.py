"""Helpers for the operator tests: drops, the command line, the operator page on loopback, a real browser."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from gateway.errors import JournalError
from gateway.journal.overview import JournalView
from gateway.journal.records import MessageRecord
from gateway.ops.page import page_routes
from tests.dpo.network import free_port, wait

SAMPLES = Path(__file__).resolve().parents[2] / "sample_drops"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def drop(outbox: Path, name: str, receiver: str = "910075918", staging: Path | None = None) -> None:
    """A folder drop as an archive system makes one: written elsewhere, moved into the outbox in one rename."""
    staging = staging or outbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    folder = staging / name
    shutil.copytree(SAMPLES / "brev-til-sandkasse-peer", folder)
    sidecar = folder / "message.xml"
    sidecar.write_text(sidecar.read_text(encoding="utf-8").replace("910075918", receiver), encoding="utf-8")
    os.rename(folder, outbox / name)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    """`efm-gateway COMMAND --config config ARGS...` as an operator runs it, beside the daemon."""
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", command, "--config", str(config), *rest],
        capture_output=True, text=True, timeout=60, cwd=config.parent,
    )


def record_of(journal: Path, drop_name: str) -> MessageRecord | None:
    if not journal.exists():
        return None
    try:
        view = JournalView(journal)
    except (JournalError, sqlite3.OperationalError):  # the daemon is creating the journal this moment
        return None
    try:
        found = view.find(drop_name)
    except sqlite3.OperationalError:
        return None
    finally:
        view.close()
    return found[-1] if found else None


def wait_phase(
    journal: Path, drop_name: str, *phases: str, backoff: bool = False, timeout: float = 60
) -> MessageRecord:
    """Wait until the drop's message is in one of `phases` (and, with `backoff`, has failed an attempt)."""

    def there() -> bool:
        record = record_of(journal, drop_name)
        return record is not None and record.phase in phases and (not backoff or record.attempts > 0)

    wait(there, timeout, message=f"{drop_name} in phase {' or '.join(phases)}")
    record = record_of(journal, drop_name)
    assert record is not None
    return record


@contextlib.contextmanager
def page_server(journal: Path, refresh_seconds: int = 10) -> Iterator[str]:
    """The operator page's routes in a Starlette app on uvicorn, on loopback, as the ops server mounts them."""
    view = JournalView(journal, live=True)
    app = Starlette(routes=page_routes(view, refresh_seconds=refresh_seconds))
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


def chromium_path() -> str:
    """The system's Chromium (CI installs Debian's); the browser tests are skipped, with the reason, without it."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium; apt-get install -y chromium)")


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium driven by Playwright: a real browser that renders the page and follows its refresh."""
    from playwright.sync_api import sync_playwright  # a test dependency: missing, it is an error, not a skip

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


def table_rows(page, selector: str) -> dict[str, list[str]]:
    """{messageId: the cells' texts} of the rendered message table(s) `selector` points at."""
    rows = page.eval_on_selector_all(
        f"{selector} tr[data-message-id]",
        "rows => rows.map(r => [r.dataset.messageId, Array.from(r.cells).map(c => c.innerText.trim())])",
    )
    return dict(rows)


def eventually(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
