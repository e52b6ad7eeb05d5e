"""The journal: every message's state, committed before its side effect. Journal holds the message rows'
reads and writes; the queries of each consumer are mixed in from their own modules, and the connections and
group commit come from commit.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.clock import Clock, isoformat
from gateway.contract.status import StatusEvent
from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.journal.commit import GroupCommitJournal
from gateway.journal.engine import Engine
from gateway.journal.housekeeping_rows import HousekeepingRows
from gateway.journal.phases import FINISHED, Phase, is_allowed
from gateway.journal.records import (
    COLUMNS,
    MessageRecord,
    encode_fields,
    history_of,
    record_of,
    retire_failure_event,
)
from gateway.journal.send_rows import SendRows
from gateway.journal.sqlite_engine import WAL_SIZE_LIMIT, SqliteEngine
from gateway.journal.status_polls import StatusPollRows
from gateway.journal.status_send_rows import StatusSendRows

_UPDATABLE = {
    "conversation_id",
    "sender",
    "receiver",
    "message_type",
    "process",
    "client_reference",
    "channel",
    "route_reason",
    "attempts",
    "next_attempt_at",
    "errors",
    "detail",
}
_POLLS_START = frozenset({Phase.SENT})
_POLLS_END = frozenset({Phase.DONE, Phase.FAILED})


class Journal(GroupCommitJournal, SendRows, StatusSendRows, StatusPollRows, HousekeepingRows):
    def __init__(self, where: Path | Engine, clock: Clock) -> None:
        """`where`: the SQLite file, or the engine of the configuration (engine.engine_for)."""
        super().__init__(SqliteEngine(where) if isinstance(where, Path) else where)
        self.clock = clock

    def _now(self) -> float:
        return self.clock.now().timestamp()

    # ---- reading -------------------------------------------------------------------------
    def get(self, row: int) -> MessageRecord:
        connection, lock = self._reading()
        with lock:
            found = connection.execute(f"SELECT {COLUMNS} FROM messages WHERE id = ?", (row,)).fetchone()  # noqa: S608
        if found is None:
            raise JournalError(f"no journal row {row}")
        return record_of(found)

    def find_by_claim(self, claim_id: str) -> MessageRecord | None:
        return self._one("claim_id = ?", (claim_id,))

    def find_live(self, direction: str, message_id: str) -> MessageRecord | None:
        """The accepted (not rejected) message with this id in this direction."""
        return self._one("direction = ? AND message_id = ? AND phase != 'rejected'", (direction, message_id))

    def find(self, message_id: str) -> list[MessageRecord]:
        return self._many("message_id = ? ORDER BY id", (message_id,))

    def status_name_taken(self, status_name: str) -> bool:
        return self._one("status_name = ?", (status_name,)) is not None

    def listing(self, open_only: bool = False, failed_only: bool = False, limit: int = 100) -> list[MessageRecord]:
        if failed_only:
            return self._many("phase IN ('failed', 'rejected', 'quarantined') ORDER BY id DESC LIMIT ?", (limit,))
        if open_only:
            return self._many("finished_at IS NULL ORDER BY id DESC LIMIT ?", (limit,))
        return self._many("1 = 1 ORDER BY id DESC LIMIT ?", (limit,))

    def counts(self) -> dict[str, int]:
        connection, lock = self._reading()
        with lock:
            rows = connection.execute("SELECT phase, count(*) FROM messages GROUP BY phase").fetchall()
        return dict(rows)

    def events(self, row: int) -> list[StatusEvent]:
        connection, lock = self._reading()
        with lock:
            rows = connection.execute(
                "SELECT status, at, description, learned_at FROM events WHERE message = ? ORDER BY id", (row,)
            ).fetchall()
        return history_of(rows)

    def events_of(self, rows: list[int]) -> dict[int, list[StatusEvent]]:
        """The status histories of `rows` in one query: row -> its events in order (a batch of status files)."""
        if not rows:
            return {}
        marks = ", ".join("?" for _ in rows)
        connection, lock = self._reading()
        with lock:
            found = connection.execute(
                f"SELECT message, status, at, description, learned_at FROM events WHERE message IN ({marks}) "  # noqa: S608
                "ORDER BY message, id", tuple(rows)).fetchall()
        by_row: dict[int, list[tuple]] = {row: [] for row in rows}
        for message, *event in found:
            by_row[message].append(tuple(event))
        return {row: history_of(events) for row, events in by_row.items()}

    def dirty(self, limit: int = 500) -> list[MessageRecord]:
        return self._many("status_dirty > 0 ORDER BY id LIMIT ?", (limit,))

    def _one(self, where: str, params: tuple) -> MessageRecord | None:
        found = self._many(where + " LIMIT 1", params) if "LIMIT" not in where else self._many(where, params)
        return found[0] if found else None

    def _many(self, where: str, params: tuple) -> list[MessageRecord]:
        connection, lock = self._reading()
        with lock:
            rows = connection.execute(f"SELECT {COLUMNS} FROM messages WHERE {where}", params).fetchall()  # noqa: S608
        return [record_of(row) for row in rows]

    # ---- writing -------------------------------------------------------------------------
    def create(
        self,
        *,
        direction: str,
        message_id: str,
        status_name: str,
        phase: Phase,
        claim_id: str | None = None,
        deadline: datetime | None = None,
        **fields: Any,
    ) -> MessageRecord:
        if not is_allowed(None, phase):
            raise JournalError(f"a message cannot start in phase {phase}")
        unknown = set(fields) - _UPDATABLE - {"drop_name"}
        if unknown:
            raise JournalError(f"unknown journal fields {sorted(unknown)}")
        now = self._now()
        values = {
            "direction": direction,
            "message_id": message_id,
            "status_name": status_name,
            "phase": phase.value,
            "claim_id": claim_id,
            "deadline": isoformat(deadline) if deadline else None,
            "deadline_epoch": deadline.timestamp() if deadline else None,
            "created_at": now,
            "updated_at": now,
            "finished_at": now if phase in FINISHED else None,
        }
        values.update(encode_fields(fields))
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.transaction():
            try:
                with self.guarded_statement():
                    [found] = self._db.execute(
                        f"INSERT INTO messages ({columns}) VALUES ({marks}) RETURNING {COLUMNS}",  # noqa: S608
                        tuple(values.values()),
                    ).fetchall()
            except sqlite3.IntegrityError as exc:
                raise JournalError(f"journal refused message {message_id}: {exc}") from exc
        return record_of(found)

    @staticmethod
    def _checked(fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` as their columns hold them; JournalError for a field the journal does not let change."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise JournalError(f"unknown journal fields {sorted(unknown)}")
        return encode_fields(fields)

    @staticmethod
    def _assignments(values: dict[str, Any]) -> str:
        """The SET list for `values`; every change marks the status file for rewriting."""
        return ", ".join(f"{name} = ?" for name in values) + ", status_dirty = status_dirty + 1"

    def update(self, row: int, **fields: Any) -> None:
        values = self._checked(fields)
        values["updated_at"] = self._now()
        assignments = self._assignments(values)
        with self.transaction():
            self._db.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*values.values(), row))  # noqa: S608

    def move(self, row: int, new_phase: Phase, **fields: Any) -> MessageRecord:
        """Change phase (checked against the allowed transitions) and other fields in one step."""
        changes = self._checked(fields)
        with self.transaction():
            current = self.get(row)
            if current.phase == new_phase and not fields:
                return current
            if current.phase != new_phase and not is_allowed(current.phase, new_phase):
                raise JournalError(f"message {current.message_id} cannot go from {current.phase} to {new_phase}")
            now = self._now()
            values: dict[str, Any] = {}
            if current.phase != new_phase:
                values["phase"] = new_phase.value
                values["finished_at"] = now if new_phase in FINISHED else None
                if new_phase in _POLLS_START or new_phase in _POLLS_END:
                    # Sent: its status is asked for from now on. Done or failed: no status can change it any more.
                    values["next_poll_at"] = now if new_phase in _POLLS_START else None
            values.update(changes)
            values["updated_at"] = now
            # One statement that changes and reads back (RETURNING): the record as the step left it.
            [found] = self._db.execute(
                f"UPDATE messages SET {self._assignments(values)} WHERE id = ? RETURNING {COLUMNS}",  # noqa: S608
                (*values.values(), row),
            ).fetchall()
        return record_of(found)

    def add_event(self, row: int, status: Status, at: datetime | None = None, description: str | None = None) -> bool:
        """Record a status once; a duplicate is ignored (returns False). Marks the status file for rewriting.

        `at` is when the status happened as its reporter stamped it; the time we learned it is kept beside.
        """
        learned = self.clock.now()
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO events (message, status, at, description, learned_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (row, status.value, isoformat(at or learned), description, isoformat(learned)),
            )
            added = cursor.rowcount == 1
            if added:
                self._db.execute(
                    "UPDATE messages SET status_dirty = status_dirty + 1, updated_at = ? WHERE id = ?",
                    (self._now(), row),
                )
        return added

    def retire_failure(self, row: int, note: str) -> None:
        """The message's FEIL becomes history (an ANNET event with FEIL's time and words, and `note`), so the
        next copy of a quarantined message has its own FEIL or delivery: a message has one event per status."""
        with self.transaction():
            retire_failure_event(self._db, row, note)
            self._db.execute("UPDATE messages SET status_dirty = status_dirty + 1 WHERE id = ?", (row,))

    def has_event(self, row: int, status: Status) -> bool:
        connection, lock = self._reading()
        with lock:
            found = connection.execute(
                "SELECT 1 FROM events WHERE message = ? AND status = ?", (row, status.value)
            ).fetchone()
        return found is not None

    def mark_clean(self, written: list[MessageRecord], still_ours: Callable[[], bool] | None = None) -> None:
        """The status files of `written` are on disk; changes made since they were read stay dirty. Unless
        `still_ours()` says, in the same step, that the writer still holds the right to write them (nodes sharing
        the status folder): else another node may have written newer files meanwhile, which these may have
        replaced, and they are marked to be written again."""
        if not written:
            return
        with self.transaction():
            if self.engine.locks_rows:
                # Rows another node has locked (its step about the message is under way) are passed by, not waited
                # for while this transaction holds others (a deadlock's half): they stay dirty, written again later.
                marks = ", ".join("?" for _ in written)
                free = {row for (row,) in self._db.execute(
                    f"SELECT id FROM messages WHERE id IN ({marks}) ORDER BY id FOR UPDATE SKIP LOCKED",  # noqa: S608
                    tuple(record.row for record in written)).fetchall()}
                written = [record for record in written if record.row in free]
            if not written:
                return
            if still_ours is not None and not still_ours():
                self._db.executemany("UPDATE messages SET status_dirty = status_dirty + 1 WHERE id = ?",
                                     [(record.row,) for record in sorted(written, key=lambda record: record.row)])
                return
            # One statement for the batch: each row less the changes its file was written from.
            ordered = sorted(written, key=lambda record: record.row)
            pairs = ", ".join("(CAST(? AS INTEGER), CAST(? AS INTEGER))" for _ in ordered)
            self._db.execute(
                "UPDATE messages SET status_dirty = status_dirty - written.column2 "  # noqa: S608
                f"FROM (VALUES {pairs}) AS written WHERE messages.id = written.column1",
                tuple(value for record in ordered for value in (record.row, record.status_dirty)),
            )


__all__ = ["WAL_SIZE_LIMIT", "Journal"]
