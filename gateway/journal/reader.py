"""Read the journal beside a running daemon, never writing to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.journal.engine import Connection, Engine
from gateway.journal.records import COLUMNS, MessageRecord, record_of


class JournalReader:
    """Read-only look-ups beside a running daemon (for `efm-gateway validate`): opens the journal
    read-only and never writes to it or beside it."""

    def __init__(self, path: Path | Engine) -> None:
        """`path`: the SQLite file, or the engine of the configuration (engine.engine_for)."""
        self._engine: Engine | None = None
        self._db: sqlite3.Connection | Connection
        if not isinstance(path, Path):
            self._engine = path
            self._db = path.reader()
            return
        # Without a WAL file no daemon has the journal open: read it as immutable, or SQLite would
        # create the -wal and -shm files beside it even for a read-only connection.
        running = path.with_name(path.name + "-wal").exists()
        options = "mode=ro" if running else "mode=ro&immutable=1"
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?{options}", uri=True, timeout=30)
        self._db.execute("PRAGMA query_only=ON")

    def find_live(self, direction: str, message_id: str) -> MessageRecord | None:
        """As Journal.find_live."""
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE direction = ? AND message_id = ? AND phase != 'rejected' LIMIT 1",  # noqa: S608
            (direction, message_id),
        ).fetchone()
        return record_of(row) if row else None

    def close(self) -> None:
        self._db.close()
        if self._engine is not None:
            self._engine.close()
