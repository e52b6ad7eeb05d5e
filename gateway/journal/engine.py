"""What the journal needs of a database engine, and the engine a configuration names.

The journal's SQL is written once, in the subset SQLite and PostgreSQL share (placeholders `?`, `ON CONFLICT`,
`RETURNING`, `NULLS FIRST` where NULLs are ordered, `json_extract(column, '$.key')` for a key of a JSON text
column); an engine's connections run that SQL as their database needs it and raise the DB-API errors of
Python's sqlite3 module (PEP 249's names), so the commit engine and every caller handle one error tree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class JournalUnavailable(sqlite3.OperationalError):
    """The database could not be reached, or gave up the transaction (a lost connection, a restart, a deadlock)."""

    # Whether the database itself is out of reach (no connection, a shutdown), as opposed to one transaction given
    # up (a deadlock, a lock not granted in time, a session ended while it idled): only the first is an outage.
    out_of_reach = True
    sqlstate = ""  # PostgreSQL's code for it (40P01: a deadlock; 40001: a serialisation failure), where known


class Result(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of sqlite3.Connection the journal uses; a PostgreSQL connection offers the same."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Result: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Result: ...
    def close(self) -> None: ...


class Engine(Protocol):
    """One database behind the journal: a writer connection for the commit engine, readers for the others."""

    name: str  # "sqlite" or "postgresql", for messages and metrics
    # Whether a failed statement spoils its whole transaction until a rollback (PostgreSQL), so that a
    # statement whose failure the caller handles must run in a savepoint of its own.
    failed_statement_aborts_transaction: bool
    # Whether writers can lock rows (SELECT ... FOR UPDATE [SKIP LOCKED]: PostgreSQL); without, the one writer at
    # a time that BEGIN IMMEDIATE takes (SQLite) serialises claims instead.
    locks_rows: bool

    def writer(self) -> Connection: ...
    def reader(self) -> Connection:
        """The connection the calling thread reads with, outside its own transaction."""
    def migrate(self, writer: Connection) -> int: ...
    def schema_version(self, connection: Connection) -> int:
        """How many migrations the journal has had (read on any of the engine's connections)."""
    def checkpoint(self, writer: Connection) -> None: ...
    def close(self) -> None:
        """Close the readers (the commit engine closes its writer itself)."""


def row_lock(engine: Engine, skip_locked: bool = False) -> str:
    """The clause that locks the rows a SELECT reads for this transaction, where `engine` locks rows (PostgreSQL);
    `skip_locked`: rows another transaction has locked are passed by instead of waited for. SQLite's one writer at
    a time needs none: ""."""
    if not engine.locks_rows:
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
