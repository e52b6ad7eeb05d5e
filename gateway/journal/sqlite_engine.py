"""The embedded engine: one SQLite file in WAL with synchronous=FULL, a reader connection per thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from pathlib import Path

from gateway.fsio import PRIVATE_FILE_MODE
from gateway.journal.migrations import migrate

WAL_SIZE_LIMIT = 4 << 20


class SqliteEngine:
    name = "sqlite"
    failed_statement_aborts_transaction = False
    locks_rows = False

    def __init__(self, path: Path) -> None:
        self.path = path
        # Reads use a connection per thread: with WAL they never wait for a writer's fsync.
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def writer(self) -> sqlite3.Connection:
        _keep_private(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # After each checkpoint the write-ahead log is cut back to this size: without it, the log keeps
        # its largest size for good, and on a small file system holds the space an operator freed.
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def reader(self) -> sqlite3.Connection:
        connection = getattr(self._readers, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            connection.execute("PRAGMA query_only=ON")
            self._readers.connection = connection
            with self._readers_lock:
                self._reader_connections.append(connection)
        return connection

    def migrate(self, writer: sqlite3.Connection) -> int:  # type: ignore[override]
        return migrate(writer)

    def schema_version(self, connection: sqlite3.Connection) -> int:  # type: ignore[override]
        return int(connection.execute("PRAGMA user_version").fetchone()[0])

    def checkpoint(self, writer: sqlite3.Connection) -> None:  # type: ignore[override]
        """Copy the write-ahead log into the database and cut it to nothing, so the space it held is free again.

        Readers that hold an old snapshot keep part of it; the next checkpoint takes the rest.
        """
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        with self._readers_lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()


def _keep_private(path: Path) -> None:
    """The journal (who sends what to whom) is readable by the gateway alone, whatever its umask: made 0600
    before SQLite opens it, and SQLite gives its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):  # another owner's: SQLite says the rest
            if stat.S_IMODE(companion.stat().st_mode) != PRIVATE_FILE_MODE:
                os.chmod(companion, PRIVATE_FILE_MODE)
