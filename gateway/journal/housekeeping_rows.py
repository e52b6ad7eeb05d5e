"""The journal's part in the periodic jobs: expiry (open messages past their deadline), retention (finished
messages purged), the cursors of jobs that walk the journal in batches, and the inbox pick-up check's and the
operator release's look-ups."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord


class HousekeepingRows:
    """Mixed into Journal, whose connection, lock and row readers it uses."""

    if TYPE_CHECKING:  # Journal's
        _db: sqlite3.Connection

        def _reading(self) -> tuple[sqlite3.Connection, threading.RLock | nullcontext]: ...
        def _many(self, where: str, params: tuple) -> list[MessageRecord]: ...
        def _now(self) -> float: ...
        def get(self, row: int) -> MessageRecord: ...
        def transaction(self) -> AbstractContextManager[None]: ...

    def inbox_folders(self) -> list[tuple[int, str]]:
        """(row, inbox folder name) of every message waiting in the inbox: a cheap query for pick-up checks."""
        connection, lock = self._reading()
        with lock:
            return connection.execute(
                "SELECT id, COALESCE(json_extract(detail, '$.inbox_folder'), message_id) FROM messages "
                "WHERE phase = 'in_inbox'"
            ).fetchall()

    def open_past_deadline(self, now: float, phases: tuple[Phase, ...], limit: int = 1000) -> list[MessageRecord]:
        """Undelivered messages in `phases` past their deadline (a delivered one, with LEVERT, never expires)."""
        marks = ", ".join("?" for _ in phases)
        return self._many(
            f"finished_at IS NULL AND deadline_epoch IS NOT NULL AND deadline_epoch < ? AND phase IN ({marks}) "  # noqa: S608 - placeholders only
            "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message = messages.id AND e.status = 'LEVERT') "
            "ORDER BY deadline_epoch LIMIT ?",
            (now, *[phase.value for phase in phases], limit),
        )

    def cursor(self, name: str) -> int:
        connection, lock = self._reading()
        with lock:
            found = connection.execute("SELECT position FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(found[0]) if found else 0

    def set_cursor(self, name: str, position: int) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO cursors (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, position),
            )

    def purge_finished(self, finished_before: float, limit: int = 1000) -> list[MessageRecord]:
        """Delete finished messages older than `finished_before`; returns what was deleted."""
        doomed = self._many(
            "finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at LIMIT ?", (finished_before, limit)
        )
        if doomed:
            now = self._now()
            with self.transaction():
                self._db.executemany("DELETE FROM messages WHERE id = ?", [(record.row,) for record in doomed])
                # Their claims (a send's, a poll's, an owed status's) that no node holds go too: else a row per claim
                # for ever. One a node holds still (a late write under way) stays, to be refused by its token.
                self._db.executemany(
                    "DELETE FROM claims WHERE (work = ? OR work = ? OR work LIKE ?) "
                    "AND (node IS NULL OR expires_at <= ?)",
                    [(f"send:{record.row}", f"poll:{record.row}", f"status-send:{record.row}:%", now)
                     for record in doomed])
        return doomed

    # ---- operators' commands (efm-gateway release) ----------------------------------------------------
    def released(self, channel: str, limit: int = 50) -> list[MessageRecord]:
        """Quarantined incoming messages an operator released on `channel`, for its receiver to open again."""
        return self._many(
            "direction = 'in' AND phase = 'received' AND channel = ? "
            "AND json_extract(detail, '$.released') IS NOT NULL ORDER BY id LIMIT ?",
            (channel, limit),
        )
