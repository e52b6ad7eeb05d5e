"""Incoming transfers whose documents could not be written, counted across polls and restarts: a message
that fails for what it holds is quarantined after a few tries, never downloaded again at every poll."""

from __future__ import annotations

from gateway.journal.store import Journal


def count(journal: Journal, channel: str, reference: str, error: str, now: float) -> int:
    """One more failure of transfer `reference`; how many there have been."""
    with journal.transaction():
        journal.execute(
            "INSERT INTO transfer_failures (channel, reference, failures, last_error, updated_at) "
            "VALUES (?, ?, 1, ?, ?) ON CONFLICT (channel, reference) DO UPDATE SET "
            # Qualified: PostgreSQL finds a bare `failures` ambiguous beside `excluded.failures`.
            "failures = transfer_failures.failures + 1, last_error = excluded.last_error, "
            "updated_at = excluded.updated_at",
            (channel, reference, error, now),
        )
        [(failures,)] = journal.query(
            "SELECT failures FROM transfer_failures WHERE channel = ? AND reference = ?", (channel, reference)
        )
    return int(failures)


def forget(journal: Journal, channel: str, reference: str) -> None:
    """The transfer is settled (in the inbox, or quarantined): its count goes."""
    journal.execute("DELETE FROM transfer_failures WHERE channel = ? AND reference = ?", (channel, reference))


def purge_older(journal: Journal, before: float) -> int:
    """Counts of transfers not seen since `before` (the channel no longer offers them)."""
    return journal.execute("DELETE FROM transfer_failures WHERE updated_at < ?", (before,))
