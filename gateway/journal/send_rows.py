"""The journal's part in sending: which outgoing messages are due for a try, and making a channel's due at once
when it answers again."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord


class SendRows:
    """Mixed into Journal, whose connection, lock and row readers it uses."""

    if TYPE_CHECKING:  # Journal's
        _db: sqlite3.Connection

        def _reading(self) -> tuple[sqlite3.Connection, threading.RLock | nullcontext]: ...
        def _many(self, where: str, params: tuple) -> list[MessageRecord]: ...
        def _now(self) -> float: ...
        def get(self, row: int) -> MessageRecord: ...
        def transaction(self) -> AbstractContextManager[None]: ...

    def in_phase(self, phase: Phase, limit: int = 1000, due_before: float | None = None) -> list[MessageRecord]:
        if due_before is None:
            return self._many("phase = ? ORDER BY id LIMIT ?", (phase.value, limit))
        return self._many(
            "phase = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY next_attempt_at NULLS FIRST, id "
            "LIMIT ?",
            (phase.value, due_before, limit),
        )

    def due_rows(
        self,
        phases: tuple[Phase, ...],
        due_before: float,
        limit: int,
        exclude: set[int],
        exclude_channels: set[str] | frozenset[str] = frozenset(),
        unclaimed_at: float | None = None,
    ) -> list[int]:
        """Rows in `phases` whose next attempt is due, oldest first, leaving out `exclude`, rows routed to
        `exclude_channels` and, given `unclaimed_at` (nodes sharing the journal), rows a node's claim holds at that
        time (ids only: cheap)."""
        if limit <= 0:
            return []
        phase_marks = ", ".join("?" for _ in phases)
        excluded = sorted(exclude)
        paused = sorted(exclude_channels)
        # Never "NOT IN (NULL)": that is unknown for every row, and would select nothing.
        not_excluded = f"AND id NOT IN ({', '.join('?' for _ in excluded)}) " if excluded else ""
        not_paused = (
            f"AND (channel IS NULL OR channel NOT IN ({', '.join('?' for _ in paused)})) " if paused else ""
        )
        unclaimed = ("AND NOT EXISTS (SELECT 1 FROM claims WHERE claims.work = 'send:' || messages.id "
                     "AND claims.node IS NOT NULL AND claims.expires_at > ?) " if unclaimed_at is not None else "")
        claimed_at = () if unclaimed_at is None else (unclaimed_at,)
        connection, lock = self._reading()
        with lock:
            rows = connection.execute(
                f"SELECT id FROM messages WHERE phase IN ({phase_marks}) "  # noqa: S608 - only placeholders
                f"AND (next_attempt_at IS NULL OR next_attempt_at <= ?) {not_excluded}{not_paused}{unclaimed}"
                "ORDER BY next_attempt_at NULLS FIRST, id LIMIT ?",
                (*[phase.value for phase in phases], due_before, *excluded, *paused, *claimed_at, limit),
            ).fetchall()
        return [row for (row,) in rows]

    def next_waiting_row(self, phases: tuple[Phase, ...], channel: str, exclude: set[int]) -> int | None:
        """The row routed to `channel` in `phases` whose next attempt comes first, due or not (a probe's message)."""
        phase_marks = ", ".join("?" for _ in phases)
        excluded = sorted(exclude)
        not_excluded = f"AND id NOT IN ({', '.join('?' for _ in excluded)}) " if excluded else ""
        connection, lock = self._reading()
        with lock:
            found = connection.execute(
                f"SELECT id FROM messages WHERE phase IN ({phase_marks}) AND channel = ? "  # noqa: S608
                f"{not_excluded}ORDER BY next_attempt_at NULLS FIRST, id LIMIT 1",
                (*[phase.value for phase in phases], channel, *excluded),
            ).fetchone()
        return int(found[0]) if found else None

    def make_due(self, phases: tuple[Phase, ...], channel: str) -> int:
        """Every row routed to `channel` in `phases` is due now (the channel answers again); returns how many."""
        now = self._now()
        phase_marks = ", ".join("?" for _ in phases)
        with self.transaction():
            changed = self._db.execute(
                f"UPDATE messages SET next_attempt_at = ? WHERE phase IN ({phase_marks}) "  # noqa: S608
                "AND channel = ? AND next_attempt_at > ?",
                (now, *[phase.value for phase in phases], channel, now),
            ).rowcount
            self._db.execute(
                "UPDATE status_sends SET due_at = ? WHERE due_at > ? "
                "AND message IN (SELECT id FROM messages WHERE channel = ?)",
                (now, now, channel),
            )
        return changed
