"""/metrics while the journal cannot be read (a PostgreSQL that does not answer, a journal file not there): the
journal's figures are left out, efm_gateway_journal_readable says 0, the scrape itself succeeds, and the log has
one line for the outage however many scrapes it lasts, and one when the journal can be read again."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import FakeClock
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from gateway.ops.metrics import EventFeed, JournalMetrics
from tests.postgres import ADMIN


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


@pytest.mark.sqlite_only  # the file is moved away; a PostgreSQL that does not answer is the test below
def test_a_journal_that_cannot_be_read_leaves_its_figures_out(tmp_path, caplog):
    path = tmp_path / "journal.sqlite"
    Journal(path, FakeClock()).close()
    metrics = JournalMetrics(path)
    registry = CollectorRegistry()
    registry.register(metrics)
    feed = EventFeed(metrics, registry)
    assert _scrape(registry)["efm_gateway_journal_readable"] == 1
    metrics.close()
    path.rename(tmp_path / "elsewhere.sqlite")  # the file is gone: the connection cannot be opened again
    caplog.set_level(logging.INFO, logger="gateway.ops.metrics")
    for _ in range(3):
        feed.feed()
        samples = _scrape(registry)
        assert samples["efm_gateway_journal_readable"] == 0
        assert "efm_gateway_oldest_unsent_age_seconds" not in samples and "efm_gateway_nodes_live" not in samples
    down = [r for r in caplog.records if "the journal cannot be read" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING
    (tmp_path / "elsewhere.sqlite").rename(path)
    samples = _scrape(registry)
    assert samples["efm_gateway_journal_readable"] == 1 and samples["efm_gateway_nodes_live"] == 0
    assert [r.getMessage() for r in caplog.records if "can be read again" in r.getMessage()] == [
        "metrics: the journal can be read again"]
    metrics.close()


@pytest.mark.postgres
def test_a_postgresql_that_does_not_answer(postgres_database):
    nowhere = Path(tempfile.mkdtemp(prefix="efm-no-postgres-"))
    url = f"postgresql://{ADMIN}@/{postgres_database.name}?host={quote(str(nowhere), safe='')}"
    metrics = JournalMetrics(PostgresEngine(url, postgres_database.password))
    registry = CollectorRegistry()
    registry.register(metrics)
    try:
        assert _scrape(registry)["efm_gateway_journal_readable"] == 0
    finally:
        metrics.close()
        nowhere.rmdir()
