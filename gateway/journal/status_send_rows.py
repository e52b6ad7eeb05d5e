"""The journal's part in sending statuses back: the MOTTATT and LEVERT owed to the senders of received
messages, kept until they are sent."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from gateway.contract.statuses import Status
from gateway.journal.engine import Engine
from gateway.journal.records import MessageRecord


class StatusSendRows:
    """Mixed into Journal, whose connection, lock and row readers it uses."""

    if TYPE_CHECKING:  # Journal's
        _db: sqlite3.Connection

        def _reading(self) -> tuple[sqlite3.Connection, threading.RLock | nullcontext]: ...
        def _many(self, where: str, params: tuple) -> list[MessageRecord]: ...
        def _now(self) -> float: ...
        def get(self, row: int) -> MessageRecord: ...
        def transaction(self) -> AbstractContextManager[None]: ...

        engine: Engine

    def queue_status_send(self, row: int, status: Status) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO status_sends (message, status, due_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (row, status.value, self._now()),
            )

    def due_status_sends(self, limit: int = 200) -> list[tuple[MessageRecord, Status, int]]:
        connection, lock = self._reading()
        with lock:
            due = connection.execute(
                "SELECT message, status, attempts FROM status_sends WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (self._now(), limit),
            ).fetchall()
        return [(self.get(row), Status(status), attempts) for row, status, attempts in due]

    def status_send_done(self, row: int, status: Status) -> None:
        """Sent, or given up. Where nodes share the sends, the caller's claim on it goes in the same step
        (ItemClaims.status_send_done)."""
        with self.transaction():
            self._db.execute("DELETE FROM status_sends WHERE message = ? AND status = ?", (row, status.value))

    def status_send_later(self, row: int, status: Status, due_at: float) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE status_sends SET due_at = ?, attempts = attempts + 1 WHERE message = ? AND status = ?",
                (due_at, row, status.value),
            )
