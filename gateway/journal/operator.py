"""The journal's writes that operators make (`efm-gateway retry`, `cancel`, `release`), beside a running daemon.

Each change is one short write transaction (on SQLite BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_SECONDS
for the daemon's own commit to finish; on PostgreSQL the rows read are locked until the commit), decided
inside the transaction from the row as it is then:
a phase the daemon committed a moment before always wins over what the operator saw. Every change
marks the message's status file for rewriting; the daemon rewrites it within seconds.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.clock import Clock, isoformat
from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.journal.engine import Connection, Engine, row_lock
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.overview import find_messages
from gateway.journal.phases import FINISHED, Phase, operator_may
from gateway.journal.records import COLUMNS, MessageRecord, record_of, retire_failure_event

BUSY_TIMEOUT_SECONDS = 10.0


class OperatorJournal:
    def __init__(self, path: Path | Engine, clock: Clock) -> None:
        """`path`: the SQLite file, or the engine of the configuration (engine.engine_for)."""
        self.clock = clock
        self._lock_rows = ""
        self._db: sqlite3.Connection | Connection
        if isinstance(path, Path):
            if not path.exists():
                raise JournalError(f"no journal at {path}: the daemon has not run with this configuration")
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        else:
            self._db = path.writer()
            self._lock_rows = row_lock(path)
            version = path.schema_version(self._db)
            if version == 0:
                self._db.close()
                raise JournalError("no journal in the database journal.url names: the daemon has not run with "
                                   "this configuration")
        if version != len(MIGRATIONS):
            self._db.close()
            where = path if isinstance(path, Path) else "that journal.url names"
            # Never migrate under a running daemon: a newer command line than the daemon must not
            # change the schema the daemon is using.
            raise JournalError(
                f"the journal {where} has schema version {version}, but this efm-gateway expects "
                f"{len(MIGRATIONS)}: run the efm-gateway command of the same version as the daemon"
            )

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One short, durable write transaction."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise JournalError(
                f"the journal stayed busy for {BUSY_TIMEOUT_SECONDS:.0f} s ({exc}); nothing was changed, try again"
            ) from exc
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- reading inside a step ------------------------------------------------------------------
    def live(self, direction: str, message_id: str) -> MessageRecord | None:
        found = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE direction = ? AND message_id = ? AND phase != 'rejected'"  # noqa: S608
            f"{self._lock_rows}",
            (direction, message_id),
        ).fetchone()
        return record_of(found) if found else None

    def find(self, key: str) -> list[MessageRecord]:
        return find_messages(self._db, key, self._lock_rows)

    def statuses(self, row: int) -> set[Status]:
        return {Status(status) for (status,) in self._db.execute("SELECT status FROM events WHERE message = ?", (row,))}

    # ---- writing inside a step --------------------------------------------------------------------
    def change(
        self, record: MessageRecord, new_phase: Phase | None = None, **fields: Any
    ) -> None:
        """Set fields of `record` (and its phase, when the operator may move it there)."""
        now = self.clock.now().timestamp()
        values: dict[str, Any] = {}
        if new_phase is not None and new_phase != record.phase:
            if not operator_may(record.phase, new_phase):
                raise JournalError(f"message {record.message_id} cannot go from {record.phase} to {new_phase}")
            values["phase"] = new_phase.value
            values["finished_at"] = now if new_phase in FINISHED else None
        for name, value in fields.items():
            if name not in ("attempts", "next_attempt_at", "errors", "detail"):
                raise JournalError(f"an operator cannot set {name}")
            values[name] = json.dumps(list(value) if name == "errors" else value, ensure_ascii=False) \
                if name in ("errors", "detail") else value
        values["updated_at"] = now
        assignments = ", ".join(f"{name} = ?" for name in values) + ", status_dirty = status_dirty + 1"
        self._db.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*values.values(), record.row))  # noqa: S608

    def add_event(self, row: int, status: Status, description: str, at: datetime | None = None) -> None:
        now = self.clock.now()
        self._db.execute(
            "INSERT INTO events (message, status, at, description, learned_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (row, status.value, isoformat(at or now), description, isoformat(now)),
        )

    def retire_failure(self, row: int, note: str) -> None:
        """The message's FEIL becomes history (an ANNET event with FEIL's time and words, and `note`):
        FEIL ends a message, so one that is sent or opened again must not carry it. A message has one
        event per status; a second retry adds its words to the ANNET already there."""
        retire_failure_event(self._db, row, note)
