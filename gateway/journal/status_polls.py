"""The journal's part in status polling: which sent messages are due for a poll, and when each is next.

`next_poll_at` (epoch seconds) says when a message's status is next asked for; NULL means never again
(finished, past the watch period, or deleted at the provider). A message is due from the moment it is
sent; the poller moves it on after each answer. Due messages come in the order they became due, so a
round that cannot ask for all of them takes the ones that waited longest, and each query is a range of
one index however large the journal.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.journal.records import MessageRecord

_CHUNK = 500  # rows per IN (...) list: well below SQLite's limit on bound values


class StatusPollRows:
    """Mixed into Journal, whose connection, lock and row readers it uses."""

    if TYPE_CHECKING:  # Journal's
        _db: sqlite3.Connection

        def _reading(self) -> tuple[sqlite3.Connection, threading.RLock | nullcontext]: ...
        def _many(self, where: str, params: tuple) -> list[MessageRecord]: ...
        def transaction(self) -> AbstractContextManager[None]: ...

    def due_for_poll(self, channel: str, phases: Sequence[str], now: float, limit: int) -> list[MessageRecord]:
        """Up to `limit` outgoing messages on `channel` in `phases` whose next poll is due at `now`, those due
        longest first."""
        if limit <= 0 or not phases:
            return []
        one = ("SELECT id FROM (SELECT id FROM messages WHERE channel = ? AND phase = ? AND next_poll_at <= ? "
               "AND direction = 'out' ORDER BY next_poll_at, id LIMIT ?) AS due")
        union = " UNION ALL ".join(one for _ in phases)
        params = tuple(value for phase in phases for value in (channel, phase, now, limit))
        return self._many(f"id IN ({union}) ORDER BY next_poll_at, id LIMIT ?", (*params, limit))

    def polls_of(self, rows: Sequence[int]) -> list[MessageRecord]:
        """The messages of `rows` (claimed for a status poll), those due longest first."""
        if not rows:
            return []
        marks = ", ".join("?" for _ in rows)
        return self._many(f"id IN ({marks}) ORDER BY next_poll_at, id", tuple(rows))

    def set_next_polls(self, next_polls: Mapping[int, float | None]) -> None:
        """When each row's status is next asked for (None: never again), in one commit. A row whose polling
        ended meanwhile (it finished) stays ended. Bookkeeping only: the status files are not touched."""
        if not next_polls:
            return
        with self.transaction():
            self._db.executemany("UPDATE messages SET next_poll_at = ? WHERE id = ? AND next_poll_at IS NOT NULL",
                                 [(when, row) for row, when in next_polls.items()])

    def next_poll_of(self, row: int) -> float | None:
        """When the status of `row` is next asked for; None when never again."""
        connection, lock = self._reading()
        with lock:
            found = connection.execute("SELECT next_poll_at FROM messages WHERE id = ?", (row,)).fetchone()
        return found[0] if found else None

    def last_status_changes(self, rows: Sequence[int]) -> dict[int, float]:
        """When we last learned a new status of each of `rows` (epoch seconds); rows without one are left out."""
        found: dict[int, float] = {}
        connection, lock = self._reading()
        for chunk in _chunks(list(rows)):
            marks = ", ".join("?" for _ in chunk)
            with lock:
                stamps = connection.execute(
                    f"SELECT message, learned_at, at FROM events WHERE message IN ({marks})",  # noqa: S608
                    tuple(chunk),
                ).fetchall()
            for row, learned, at in stamps:
                moment = datetime.fromisoformat(learned or at).timestamp()
                found[row] = max(found.get(row, moment), moment)
        return found


def _chunks(rows: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start:start + _CHUNK]


__all__ = ["StatusPollRows"]
