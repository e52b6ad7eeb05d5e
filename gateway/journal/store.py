"""The SQLite journal (WAL, synchronous=FULL), shared by the daemon's threads behind one lock."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.clock import Clock, isoformat
from gateway.contract.status import StatusEvent
from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.fsio import PRIVATE_FILE_MODE
from gateway.journal.migrations import migrate
from gateway.journal.phases import FINISHED, Phase, is_allowed
from gateway.journal.records import (
    COLUMNS,
    MessageRecord,
    encode_fields,
    history_of,
    record_of,
    retire_failure_event,
)
from gateway.journal.status_polls import StatusPollRows

WAL_SIZE_LIMIT = 4 << 20
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


GROUP_COMMIT_WAIT_SECONDS = 0.002
_POLLS_START = frozenset({Phase.SENT})
_POLLS_END = frozenset({Phase.DONE, Phase.FAILED})


class _CommitGroup:
    """Steps of several threads in one SQLite transaction, made durable by one COMMIT."""

    __slots__ = ("committed", "error")

    def __init__(self) -> None:
        self.committed = False
        self.error: BaseException | None = None



class Journal(StatusPollRows):
    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        _keep_private(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # After each checkpoint the write-ahead log is cut back to this size: without it, the log keeps
        # its largest size for good, and on a small file system holds the space an operator freed.
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self.schema_version = migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        self._in_transaction = False
        self._transaction_owner: int | None = None
        self._group: _CommitGroup | None = None
        self._counter_lock = threading.Lock()
        self._steps_coming = 0  # threads in transaction() whose step has not finished
        # Reads use a connection per thread: with WAL they never wait for a writer's fsync.
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self.on_commit: Callable[[float], None] | None = None  # told each COMMIT's duration (the metrics)

    def close(self) -> None:
        with self._lock:
            if self._group is not None:
                self._decide(self._group)  # steps waiting to commit are committed, not dropped
            self._db.close()
            for connection in self._reader_connections:
                connection.close()

    def _reading(self) -> tuple[sqlite3.Connection, threading.RLock | contextlib.nullcontext]:
        """The connection to read with: the writer's inside this thread's own transaction, else this thread's own."""
        if self._transaction_owner == threading.get_ident():
            return self._db, self._lock
        connection = getattr(self._readers, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            connection.execute("PRAGMA query_only=ON")
            self._readers.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection, contextlib.nullcontext()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, durable step. Nested use joins the outer transaction.

        Group commit: the steps of several threads share one SQLite transaction and one COMMIT (one
        fsync). Each step is a savepoint of its own, so a failing step is undone alone; a thread
        returns only once a COMMIT covering its step is on disk, and raises sqlite3.OperationalError
        when that COMMIT failed. With one fsync per step, the journal was the bottleneck of a busy
        gateway (its lock held ~80 % of the time).
        """
        if self._transaction_owner == threading.get_ident():
            with self._lock:  # nested in this thread's own step: part of it
                yield
            return
        group: _CommitGroup | None = None
        with self._counter_lock:
            self._steps_coming += 1
        try:
            with self._lock:
                group = self._open_group()
                self._db.execute("SAVEPOINT step_of_a_group")
                self._in_transaction = True
                self._transaction_owner = threading.get_ident()
                try:
                    yield
                except BaseException:
                    self._undo_step(group)
                    raise
                else:
                    self._finish_step(group)
                finally:
                    self._in_transaction = False
                    self._transaction_owner = None
        finally:
            with self._counter_lock:
                self._steps_coming -= 1
            if group is not None:
                self._commit(group)  # also after a failed step: the group may hold other threads' steps
        if group.error is not None:
            raise sqlite3.OperationalError(f"the journal could not commit: {group.error}") from group.error

    def _open_group(self) -> _CommitGroup:
        """The group to add a step to (under the lock): the open one, or a new transaction."""
        if self._group is not None and not self._db.in_transaction:
            # SQLite ended the transaction under a step (an error it rolled back all by itself).
            self._fail_group(self._group, sqlite3.OperationalError("SQLite rolled the transaction back"))
        if self._group is None:
            if self._db.in_transaction:
                # Left open by a commit that failed and could not roll back: nothing in it is promised.
                self._db.execute("ROLLBACK")
            self._db.execute("BEGIN IMMEDIATE")
            self._group = _CommitGroup()
        return self._group

    def _finish_step(self, group: _CommitGroup) -> None:
        if group.committed or not self._db.in_transaction:
            # The transaction was lost during the step (its caller caught the error): fail the group.
            self._fail_group(group, sqlite3.OperationalError("SQLite rolled the transaction back during a step"))
            return
        try:
            self._db.execute("RELEASE step_of_a_group")
        except BaseException as exc:
            self._fail_group(group, exc)
            raise

    def _undo_step(self, group: _CommitGroup) -> None:
        if self._db.in_transaction and not group.committed:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK TO step_of_a_group")
                self._db.execute("RELEASE step_of_a_group")
                return
        self._fail_group(group, sqlite3.OperationalError("SQLite rolled the transaction back during a step"))

    def _fail_group(self, group: _CommitGroup, error: BaseException) -> None:
        """Under the lock: the group's steps are lost; every thread in it is told so."""
        if group.committed:
            return
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        group.error = error
        group.committed = True
        if self._group is group:
            self._group = None

    def _commit(self, group: _CommitGroup) -> None:
        try:
            # Steps of other threads on their way (waiting for the lock) join this group first, for
            # a short while at most: one fsync then covers them all.
            deadline = time.monotonic() + GROUP_COMMIT_WAIT_SECONDS
            time.sleep(0)
            while self._steps_coming and not group.committed and time.monotonic() < deadline:
                time.sleep(0.0001)
        finally:  # even when interrupted: the group is decided before this thread leaves
            with self._lock:
                self._decide(group)

    def _decide(self, group: _CommitGroup) -> None:
        """Under the lock: COMMIT the group unless another thread has decided it already."""
        if group.committed:
            return
        if self._group is group:
            self._group = None
        try:
            started = time.perf_counter()
            self._db.execute("COMMIT")
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
        except BaseException as exc:
            group.error = exc
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if not isinstance(exc, sqlite3.Error):
                raise
        finally:
            group.committed = True

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: a step that is undone alone when it fails, leaving the rest of the transaction."""
        with self._lock:
            if not self._in_transaction:
                raise JournalError("a savepoint needs an open transaction")
            if not self._db.in_transaction:
                raise sqlite3.OperationalError("the journal's transaction was rolled back by an earlier error")
            self._db.execute("SAVEPOINT step")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO step")
                self._db.execute("RELEASE step")
                raise
            else:
                self._db.execute("RELEASE step")

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

    def in_phase(self, phase: Phase, limit: int = 1000, due_before: float | None = None) -> list[MessageRecord]:
        if due_before is None:
            return self._many("phase = ? ORDER BY id LIMIT ?", (phase.value, limit))
        return self._many(
            "phase = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY next_attempt_at, id LIMIT ?",
            (phase.value, due_before, limit),
        )

    def due_rows(
        self,
        phases: tuple[Phase, ...],
        due_before: float,
        limit: int,
        exclude: set[int],
        exclude_channels: set[str] | frozenset[str] = frozenset(),
    ) -> list[int]:
        """Rows in `phases` whose next attempt is due, oldest first, leaving out `exclude` and rows routed to
        `exclude_channels` (ids only: cheap)."""
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
        connection, lock = self._reading()
        with lock:
            rows = connection.execute(
                f"SELECT id FROM messages WHERE phase IN ({phase_marks}) "  # noqa: S608 - only placeholders
                f"AND (next_attempt_at IS NULL OR next_attempt_at <= ?) {not_excluded}{not_paused}"
                "ORDER BY next_attempt_at, id LIMIT ?",
                (*[phase.value for phase in phases], due_before, *excluded, *paused, limit),
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
                f"{not_excluded}ORDER BY next_attempt_at, id LIMIT 1",
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

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and cut it to nothing, so the space it held is free again.

        Readers that hold an old snapshot keep part of it; the next checkpoint takes the rest.
        """
        with self._lock:
            if self._group is not None:
                self._decide(self._group)  # steps waiting to commit go first
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

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
                cursor = self._db.execute(
                    f"INSERT INTO messages ({columns}) VALUES ({marks})",  # noqa: S608
                    tuple(values.values()),
                )
            except sqlite3.IntegrityError as exc:
                raise JournalError(f"journal refused message {message_id}: {exc}") from exc
            row = cursor.lastrowid
        assert row is not None
        return self.get(row)

    def update(self, row: int, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise JournalError(f"unknown journal fields {sorted(unknown)}")
        values = encode_fields(fields)
        values["updated_at"] = self._now()
        assignments = ", ".join(f"{name} = ?" for name in values) + ", status_dirty = status_dirty + 1"
        with self.transaction():
            self._db.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*values.values(), row))  # noqa: S608

    def move(self, row: int, new_phase: Phase, **fields: Any) -> MessageRecord:
        """Change phase (checked against the allowed transitions) and other fields in one step."""
        with self.transaction():
            current = self.get(row)
            if current.phase == new_phase:
                if fields:
                    self.update(row, **fields)
                return self.get(row)
            if not is_allowed(current.phase, new_phase):
                raise JournalError(f"message {current.message_id} cannot go from {current.phase} to {new_phase}")
            finished = self._now() if new_phase in FINISHED else None
            self._db.execute(
                "UPDATE messages SET phase = ?, finished_at = ?, status_dirty = status_dirty + 1 WHERE id = ?",
                (new_phase.value, finished, row),
            )
            if new_phase in _POLLS_START or new_phase in _POLLS_END:
                # Sent: its status is asked for from now on. Done or failed: no status can change it any more.
                next_poll = self._now() if new_phase in _POLLS_START else None
                self._db.execute("UPDATE messages SET next_poll_at = ? WHERE id = ?", (next_poll, row))
            self.update(row, **fields)
        return self.get(row)

    def add_event(self, row: int, status: Status, at: datetime | None = None, description: str | None = None) -> bool:
        """Record a status once; a duplicate is ignored (returns False). Marks the status file for rewriting.

        `at` is when the status happened as its reporter stamped it; the time we learned it is kept beside.
        """
        learned = self.clock.now()
        with self.transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (message, status, at, description, learned_at) VALUES (?, ?, ?, ?, ?)",
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

    def mark_clean(self, written: list[MessageRecord]) -> None:
        """The status files of `written` are on disk; changes made since they were read stay dirty."""
        if not written:
            return
        with self.transaction():
            self._db.executemany(
                "UPDATE messages SET status_dirty = status_dirty - ? WHERE id = ?",
                [(record.status_dirty, record.row) for record in written],
            )

    # ---- status messages owed to the senders of received messages ------------------------------
    def queue_status_send(self, row: int, status: Status) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO status_sends (message, status, due_at) VALUES (?, ?, ?)",
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
        with self.transaction():
            self._db.execute("DELETE FROM status_sends WHERE message = ? AND status = ?", (row, status.value))

    def status_send_later(self, row: int, status: Status, due_at: float) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE status_sends SET due_at = ?, attempts = attempts + 1 WHERE message = ? AND status = ?",
                (due_at, row, status.value),
            )

    # ---- batches for jobs that walk the journal -----------------------------------------------------
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
            with self.transaction():
                self._db.executemany("DELETE FROM messages WHERE id = ?", [(record.row,) for record in doomed])
        return doomed

    # ---- statements of the journal's smaller tables (journal/originals.py) ------------------------------
    def execute(self, sql: str, params: tuple = ()) -> int:
        """One write statement, a step of its own (or of this thread's transaction); the rows it changed."""
        with self.transaction():
            return self._db.execute(sql, params).rowcount

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one read statement."""
        connection, lock = self._reading()
        with lock:
            return connection.execute(sql, params).fetchall()

    # ---- operators' commands (efm-gateway release) ----------------------------------------------------
    def released(self, channel: str, limit: int = 50) -> list[MessageRecord]:
        """Quarantined incoming messages an operator released on `channel`, for its receiver to open again."""
        return self._many(
            "direction = 'in' AND phase = 'received' AND channel = ? "
            "AND json_extract(detail, '$.released') IS NOT NULL ORDER BY id LIMIT ?",
            (channel, limit),
        )


def _keep_private(path: Path) -> None:
    """The journal (who sends what to whom) is readable by the gateway alone, whatever its umask: made 0600
    before SQLite opens it, and SQLite gives its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):  # another owner's: SQLite says the rest
            if stat.S_IMODE(companion.stat().st_mode) != PRIVATE_FILE_MODE:
                os.chmod(companion, PRIVATE_FILE_MODE)
