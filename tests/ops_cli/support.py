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
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.journal.overview import JournalView
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.ops.page import page_routes
from tests.dpo.network import free_port, wait
from tests.foundation.drops import write_config
from tests.suite_journal import journal_exists

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_drops"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
NOW = datetime.now(UTC)


def repository_config(folder: Path) -> Path:
    """The repository's config.yaml (the README's first command) copied into `folder`, so its var/ is there too,
    with the operations endpoint and the operator page on any free port: the README's own daemon may hold 9181
    and 9182 meanwhile."""
    settings = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    settings["ops"]["port"] = 0
    settings["ops"]["operator_port"] = 0
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


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


def journal_message(journal: Journal, drop: str, phase: Phase, *, channel: str | None, receiver: str,
                    hours_ago: float, errors: tuple[str, ...] = ()) -> str:
    """An outgoing message written straight into the journal (its clock a FakeClock), as the daemon leaves one
    in `phase`; its messageId."""
    message_id = str(uuid.uuid4())
    journal.clock._now = NOW - timedelta(hours=hours_ago)  # each message made at its own time
    start = Phase.REJECTED if phase == Phase.REJECTED else Phase.ACCEPTED
    record = journal.create(direction="out", message_id=message_id, status_name=f"{drop}.{message_id}.xml",
                            phase=start, drop_name=drop, receiver=receiver, channel=channel, errors=list(errors),
                            route_reason=f"reason for {channel}" if channel else None)
    journal.add_event(record.row, Status.OPPRETTET, description="the drop was accepted")
    if phase in (Phase.SENT, Phase.DONE, Phase.FAILED):
        journal.move(record.row, Phase.SENDING)
        journal.move(record.row, Phase.SENT)
        journal.add_event(record.row, Status.SENDT)
    if phase == Phase.DONE:
        journal.move(record.row, Phase.DONE)
        journal.add_event(record.row, Status.LEST)
    if phase in (Phase.FAILED, Phase.REJECTED):
        if phase == Phase.FAILED:
            journal.move(record.row, Phase.FAILED)
        journal.add_event(record.row, Status.FEIL, description=errors[0])
    return message_id


def filled_journal(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A config.yaml and a journal of five outgoing messages in different phases; (the config, {drop: messageId})."""
    config = write_config(tmp_path)
    state = tmp_path / "var" / "state"
    state.mkdir(parents=True)
    journal = Journal(state / "journal.sqlite", FakeClock(NOW))
    long_name = "postkasse-melding-med-et-langt-navn-som-ikke-får-plass"
    ids = {
        "brev-til-nav": journal_message(journal, "brev-til-nav", Phase.SENT, channel="DPO", receiver="889640782",
                                        hours_ago=1),
        long_name: journal_message(journal, long_name, Phase.ACCEPTED, channel="DPV", receiver="974760673",
                                   hours_ago=0.5),
        "gammel-sak": journal_message(journal, "gammel-sak", Phase.DONE, channel="DPO", receiver="889640782",
                                      hours_ago=50),
        "avvist": journal_message(journal, "avvist", Phase.REJECTED, channel=None, receiver="910075919", hours_ago=2,
                                  errors=("message.xml line 3, <receiver>: its check digit is wrong",)),
        "feilet-dpv": journal_message(journal, "feilet-dpv", Phase.FAILED, channel="DPV", receiver="921000014",
                                      hours_ago=3, errors=("the correspondence failed",)),
    }
    journal.close()
    return config, ids


def record_of(journal: Path, drop_name: str) -> MessageRecord | None:
    if not journal_exists(journal):
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
