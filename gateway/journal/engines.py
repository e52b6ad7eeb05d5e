"""Which journal engine a configuration names: the SQLite file, or PostgreSQL (loaded only when named: psycopg is
an optional extra, and a one-machine gateway never pays for it)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import JournalConfig
from gateway.journal.engine import Engine


def engine_for(journal: JournalConfig, sqlite_path: Path) -> Engine:
    """The engine `journal` names: the SQLite file at `sqlite_path` when it names no URL."""
    if journal.url is None:
        from gateway.journal.sqlite_engine import SqliteEngine

        return SqliteEngine(sqlite_path)
    from gateway.journal.postgres_engine import PostgresEngine

    return PostgresEngine(journal.url, journal.password())
