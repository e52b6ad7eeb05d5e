"""A read-only view of the journal for operators (`efm-gateway status`, the operator page).

It opens the SQLite file read-only beside a running daemon (WAL: reads never wait for its writes,
and never block them), or reads a PostgreSQL journal on read-only sessions, and answers the questions
an operator asks: how many messages in each phase and channel, which are open or failed (filtered),
and one message's whole history.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.contract.status import StatusEvent
from gateway.contract.statuses import Status, current_status
from gateway.errors import JournalError
from gateway.journal.engine import Connection, Engine
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.records import COLUMNS, MessageRecord, history_of, record_of

FAILED_PHASES = ("failed", "rejected", "quarantined")
STATES = ("open", "failed", "finished")


@dataclass(frozen=True)
class MessageFilter:
    """What an operator narrows a listing to; every field left empty matches everything."""

    state: str | None = None  # "open" (unfinished), "failed" (failed, rejected, quarantined), "finished"
    channel: str | None = None
    receiver: str | None = None  # organisation number (the 0192: prefix is ignored)
    drop_name: str | None = None  # part of the drop's name
    since: datetime | None = None  # created at or after
    direction: str | None = None  # "out" or "in"
    phase: str | None = None  # one phase (accepted, sent, quarantined...)

    def where(self) -> tuple[str, tuple]:
        clauses: list[str] = []
        params: list[object] = []
        if self.state == "open":
            clauses.append("finished_at IS NULL")
        elif self.state == "failed":
            clauses.append(f"phase IN ({', '.join('?' for _ in FAILED_PHASES)})")
            params.extend(FAILED_PHASES)
        elif self.state == "finished":
            clauses.append("finished_at IS NOT NULL")
        if self.channel:
            clauses.append("upper(channel) = upper(?)")
            params.append(self.channel)
        if self.receiver:
            clauses.append("(receiver = ? OR receiver = ?)")
            bare = self.receiver.removeprefix("0192:")
            params.extend((bare, f"0192:{bare}"))
        if self.drop_name:
            clauses.append("drop_name LIKE ? ESCAPE '\\'")
            escaped = self.drop_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        if self.since is not None:
            clauses.append("created_at >= ?")
            params.append(self.since.timestamp())
        if self.direction:
            clauses.append("direction = ?")
            params.append(self.direction)
        if self.phase:
            clauses.append("phase = ?")
            params.append(self.phase.lower())
        return (" AND ".join(clauses) or "1 = 1"), tuple(params)


@dataclass(frozen=True)
class MessageLine:
    """One row of a listing: the journal's record and its current eFormidling status."""

    record: MessageRecord
    current: Status | None


class JournalView:
    """Read-only queries on the journal file; safe to share between threads (the page's workers)."""

    def __init__(self, path: Path | Engine, live: bool | None = None) -> None:
        """`path`: the SQLite file, or the engine of the configuration (engine.engine_for). `live`: the SQLite
        journal is open in a running daemon (True for the daemon's own page); None: tell from its WAL file."""
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        if not isinstance(path, Path):
            self._engine = path
            self.path = getattr(path, "path", None)
            self._db = path.reader()
            self._check_version(path.schema_version(self._db))
            return
        self.path = path
        # Without a WAL file no daemon has the journal open: read it as immutable, or SQLite would
        # create the -wal and -shm files beside it even for a read-only connection. An immutable
        # view never sees later changes: the daemon's own page says live=True.
        running = path.with_name(path.name + "-wal").exists() if live is None else live
        options = "mode=ro" if running else "mode=ro&immutable=1"
        self._db = sqlite3.connect(
            f"{path.resolve().as_uri()}?{options}", uri=True, timeout=30, check_same_thread=False,
            isolation_level=None,
        )
        self._db.execute("PRAGMA query_only=ON")
        self._check_version(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int) -> None:
        if version != len(MIGRATIONS):
            self.close()
            if version > len(MIGRATIONS):
                raise JournalError(
                    f"the journal has schema version {version}, newer than this efm-gateway knows "
                    f"({len(MIGRATIONS)}); run the newer efm-gateway or restore a backup"
                )
            raise JournalError(
                f"the journal has schema version {version}, older than this efm-gateway's ({len(MIGRATIONS)}); "
                "the daemon of this version brings it up to date when it starts"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._engine is not None:
                self._engine.close()

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _records(self, where: str, params: tuple = ()) -> list[MessageRecord]:
        return [record_of(row) for row in self._rows(f"SELECT {COLUMNS} FROM messages WHERE {where}", params)]  # noqa: S608

    # ---- counts and listings ----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Messages per phase."""
        return dict(self._rows("SELECT phase, count(*) FROM messages GROUP BY phase"))  # type: ignore[arg-type]

    def counts_by_channel(self) -> dict[str, dict[str, int]]:
        """Messages per channel ("-" before routing), then per phase."""
        table: dict[str, dict[str, int]] = defaultdict(dict)
        for channel, phase, count in self._rows(
            "SELECT COALESCE(channel, '-'), phase, count(*) FROM messages GROUP BY 1, 2"
        ):
            table[channel][phase] = count
        return dict(table)

    def messages(self, message_filter: MessageFilter = MessageFilter(), limit: int = 100) -> list[MessageLine]:
        """The newest messages matching the filter, with their current statuses (two queries in all)."""
        where, params = message_filter.where()
        records = self._records(f"{where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return self._with_currents(records)

    def _with_currents(self, records: list[MessageRecord]) -> list[MessageLine]:
        currents = self._currents([record.row for record in records])
        return [MessageLine(record, currents.get(record.row)) for record in records]

    def _currents(self, rows: list[int]) -> dict[int, Status | None]:
        if not rows:
            return {}
        statuses: dict[int, list[Status]] = defaultdict(list)
        marks = ", ".join("?" for _ in rows)
        for row, status in self._rows(f"SELECT message, status FROM events WHERE message IN ({marks})", tuple(rows)):  # noqa: S608 - placeholders only
            statuses[row].append(Status(status))
        return {row: current_status(found) for row, found in statuses.items()}

    # ---- one message -------------------------------------------------------------------------------
    def find(self, key: str) -> list[MessageRecord]:
        """As find_messages."""
        with self._lock:
            return find_messages(self._db, key)

    def events(self, row: int) -> list[StatusEvent]:
        return history_of(self._rows(
            "SELECT status, at, description, learned_at FROM events WHERE message = ? ORDER BY id", (row,)
        ))


def find_messages(db: sqlite3.Connection | Connection, key: str, lock: str = "") -> list[MessageRecord]:
    """The messages `key` names: a messageId (any case), a drop name, or a unique start of a
    messageId (8 characters or more). `lock`: " FOR UPDATE" to hold their rows (PostgreSQL) until the commit."""

    def records(where: str, params: tuple) -> list[MessageRecord]:
        sql = f"SELECT {COLUMNS} FROM messages WHERE {where}{lock}"  # noqa: S608
        return [record_of(row) for row in db.execute(sql, params)]

    key = key.strip()
    lowered = key.lower()
    found = records("message_id = ? ORDER BY id", (lowered,)) or records("drop_name = ? ORDER BY id", (key,))
    if found or len(lowered) < 8 or any(char not in "0123456789abcdef-" for char in lowered):
        return found
    found = records("message_id LIKE ? ORDER BY id LIMIT 20", (f"{lowered}%",))
    return found if len({record.message_id for record in found}) == 1 else []
