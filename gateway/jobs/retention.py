"""Retention: purge sent originals and finished journal rows (with their status files) when they are old."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.clock import Clock
from gateway.journal import originals, transfer_failures
from gateway.journal.store import Journal

log = logging.getLogger(__name__)


def purge_sent(journal: Journal, sent: Path, clock: Clock, keep_days: float) -> int:
    """Remove the originals in sent/ of messages sent more than `keep_days` ago (by the journal's sent time,
    never by an mtime the drop may have brought along); returns how many entries."""
    return originals.purge_sent(journal, sent, clock.now().timestamp(), keep_days * 86400)


def purge_journal(journal: Journal, status_folder: Path, clock: Clock, keep_days: float) -> int:
    """Delete finished messages older than `keep_days` from the journal, and their status files."""
    cutoff = clock.now().timestamp() - keep_days * 86400
    transfer_failures.purge_older(journal, cutoff)  # counts of transfers the channel no longer offers
    removed = 0
    while True:
        purged = journal.purge_finished(cutoff)
        for record in purged:
            (status_folder / record.status_name).unlink(missing_ok=True)
        removed += len(purged)
        if len(purged) < 1000:
            return removed


def run_retention(
    journal: Journal, sent: Path, status_folder: Path, clock: Clock, sent_days: float, journal_days: float
) -> None:
    sent_removed = purge_sent(journal, sent, clock, sent_days)
    rows_removed = purge_journal(journal, status_folder, clock, journal_days)
    if sent_removed or rows_removed:
        log.info("retention: removed %d sent drops and %d finished journal rows", sent_removed, rows_removed)
