"""The journal the configuration names, as the operator's commands and the operations endpoint open it: the
SQLite file in folders.state (read where it lies, never created by a reader), or the PostgreSQL database that
journal.url names and every node shares."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.config import Config
from gateway.errors import JournalError
from gateway.journal.engine import Connection, Engine
from gateway.journal.engines import engine_for
from gateway.journal.overview import JournalView

SHARED = "the database journal.url names"


class NoJournal(JournalError):
    """No daemon has run with this configuration yet: there is no journal to read."""


def journal_source(config: Config) -> Path | Engine:
    """What JournalView, OperatorJournal and JournalReader open: the SQLite file, or the PostgreSQL engine."""
    if config.journal.url is None:
        return config.folders.journal_path
    return engine_for(config.journal, config.folders.journal_path)


def where(config: Config) -> str:
    """The journal's place in a message (never the URL: it names the database's host and user)."""
    return str(config.folders.journal_path) if config.journal.url is None else SHARED


def open_source(config: Config) -> Path | Engine:
    """journal_source, checked: NoJournal when no daemon has made the journal yet, JournalError when the database
    cannot be read (one line that says why)."""
    source = journal_source(config)
    if isinstance(source, Path):
        if not source.exists():
            raise NoJournal(f"no journal yet at {source}: the daemon has not run with this configuration")
        return source
    try:
        # A connection of its own first: a database that does not answer is one line at once, where the readers'
        # pool would keep trying (and warning) for its whole timeout.
        probe = source.writer()
    except JournalError:
        source.close()
        raise
    try:
        version = source.schema_version(probe)
    except sqlite3.Error as exc:
        source.close()
        raise JournalError(f"cannot read the journal in {SHARED}: {exc}") from None
    finally:
        probe.close()
    if version == 0:
        source.close()
        raise NoJournal(f"no journal yet in {SHARED}: no efm-gateway node has run with this configuration")
    return source


def open_view(config: Config) -> JournalView:
    """The operators' read-only view of the configured journal (NoJournal, JournalError as open_source)."""
    source = open_source(config)
    try:
        return JournalView(source)
    except sqlite3.Error as exc:
        if not isinstance(source, Path):
            source.close()
        raise JournalError(f"cannot read the journal in {where(config)}: {exc}") from None


def read_connection(source: Path | Engine, live: bool | None = None) -> sqlite3.Connection | Connection:
    """One read-only connection beside the daemon: the engine's reader, or the SQLite file opened read-only
    (`live`: a daemon has it open; None: tell from its WAL file; without one it is read as immutable, so no
    -wal or -shm file is made beside it). A SQLite connection may be shared between threads under a lock."""
    if not isinstance(source, Path):
        return source.reader()
    running = source.with_name(source.name + "-wal").exists() if live is None else live
    options = "mode=ro" if running else "mode=ro&immutable=1"
    connection = sqlite3.connect(f"{source.resolve().as_uri()}?{options}", uri=True, check_same_thread=False,
                                 timeout=5, isolation_level=None)
    connection.execute("PRAGMA query_only=ON")
    return connection
