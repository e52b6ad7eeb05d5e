"""The shared engine: one PostgreSQL database for every node, through psycopg 3 and a psycopg_pool pool.

Its connections speak the journal's SQL (the subset engine.py describes) and raise the errors of Python's
sqlite3 module, translated here at the edge, so the commit engine and the callers that tell a journal outage
(sqlite3.OperationalError) from a refused row (sqlite3.IntegrityError) work the same on both engines.
The writer is one connection of its own (the commit engine's, behind its lock); reads borrow a pooled one.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gateway.errors import JournalError
from gateway.journal.engine import JournalUnavailable
from gateway.journal.migrations import MIGRATIONS, json_key_for_postgresql, postgresql_script, too_new

try:
    import psycopg
    import psycopg_pool
    from psycopg.pq import TransactionStatus
except ImportError:  # the SQLite engine needs neither
    psycopg = None  # type: ignore[assignment]

POOL_SIZE = 8
CONNECT_TIMEOUT_SECONDS = 10
# A node paused inside a transaction (SIGSTOP, a frozen VM) holds its row locks until the server ends its session:
# after this long idle in a transaction, the server rolls it back and the others go on. The journal's steps never
# wait on the network or a peer inside a transaction, so a live node never comes near it.
IDLE_IN_TRANSACTION_SECONDS = 10.0
# How long a statement waits for another node's row lock before it fails (and its step with it, to be retried).
LOCK_TIMEOUT_SECONDS = 15.0
# One number for every node: the nodes that start together migrate one after the other.
_MIGRATION_LOCK = 0x6566_6D6A  # "efmj"


class JournalRowRefused(sqlite3.IntegrityError):
    """A constraint refused the row (a unique key, a reference)."""


class JournalStatementError(sqlite3.DatabaseError):
    """Any other error of PostgreSQL's: a bug in the statement, a missing grant."""


# SQLSTATE classes and codes that say the session or its transaction is gone, not that the statement is wrong:
# connection exceptions, transaction rollbacks (serialisation, deadlock), insufficient resources, operator
# intervention (a shutdown, a terminated backend), system errors; an idle transaction ended by the server, and
# a lock that was not granted in time.
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
_UNAVAILABLE_CODES = ("25P03", "55P03")
# Of those, the ones where the database gave a transaction up for another's sake and the session goes on: a
# deadlock, a serialisation failure, a lock not granted in time. The rest end the session (or never had one).
_GAVE_WAY_CLASSES = ("40",)
_GAVE_WAY_CODES = ("55P03",)


def _translated(exc: Exception, connection: Any = None) -> sqlite3.Error:
    words = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return JournalRowRefused(words)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    lost = connection is not None and (connection.closed or connection.broken)
    if (lost or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            or sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_CODES):
        unavailable = JournalUnavailable(f"PostgreSQL: {words}")
        # A session the server ended (an idle transaction past its limit: this node was paused) is out of reach
        # too: the transaction is gone with it, and the next BEGIN opens a new connection.
        unavailable.out_of_reach = lost or not (sqlstate[:2] in _GAVE_WAY_CLASSES or sqlstate in _GAVE_WAY_CODES)
        unavailable.sqlstate = sqlstate
        return unavailable
    return JournalStatementError(f"PostgreSQL: {words}")


_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def postgresql_sql(sql: str) -> str:
    """One statement of the journal's SQL as psycopg sends it to PostgreSQL (the journal's SQL has no `?` and
    no `%` inside its literals: values always come as parameters)."""
    sql = json_key_for_postgresql(sql.replace("%", "%%"))
    sql = re.sub(r"^\s*BEGIN IMMEDIATE\s*$", "BEGIN", sql)
    return _PLACEHOLDER.sub("%s", sql)


class _Rows:
    """A statement's rows, read before its connection goes back to the pool."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return self.rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)


def _run(connection: Any, sql: str, params: Sequence[Any]) -> _Rows:
    try:
        cursor = connection.execute(postgresql_sql(sql), tuple(params))
        rows = cursor.fetchall() if cursor.description is not None else []
        return _Rows(rows, cursor.rowcount)
    except psycopg.Error as exc:
        raise _translated(exc, connection) from exc


class PostgresWriter:
    """The commit engine's connection: transactions are begun and ended by its SQL (BEGIN, SAVEPOINT, COMMIT).
    A connection lost between transactions is opened again at the next BEGIN: the node goes on when the database
    answers again, and a transaction lost with it is the error of the steps that were in it."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self._connection = connect()

    @property
    def in_transaction(self) -> bool:
        if self._connection.closed:
            return False
        return self._connection.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        if self._connection.closed and sql.lstrip().upper().startswith("BEGIN"):
            self._reopen()
        return _run(self._connection, sql, params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> _Rows:
        try:
            with self._connection.cursor() as cursor:
                cursor.executemany(postgresql_sql(sql), [tuple(values) for values in params])
                return _Rows([], cursor.rowcount)
        except psycopg.Error as exc:
            raise _translated(exc, self._connection) from exc

    def _reopen(self) -> None:
        try:
            self._connection = self._connect()
        except psycopg.Error as exc:
            raise _translated(exc) from exc

    def close(self) -> None:
        self._connection.close()


class PooledReader:
    """Reads outside the caller's own transaction, each on a connection borrowed from the pool (autocommit:
    every statement sees what was committed before it)."""

    in_transaction = False

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        try:
            try:
                with self._pool.connection() as connection:
                    return _run(connection, sql, params)
            except JournalUnavailable:
                # Pooled connections the server closed meanwhile (a restart): the pool's check drops every one
                # of them at once, and one more try takes a good one, or a new one.
                self._pool.check()
                with self._pool.connection() as connection:
                    return _run(connection, sql, params)
        except psycopg.Error as exc:  # the pool's own (no connection within its timeout)
            raise _translated(exc) from exc

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> _Rows:
        raise JournalError("the journal's readers do not write")

    def close(self) -> None:
        """The pool's connections are closed with the engine."""


class PostgresEngine:
    name = "postgresql"
    failed_statement_aborts_transaction = True
    locks_rows = True

    def __init__(self, url: str, password: str | None, pool_size: int = POOL_SIZE) -> None:
        if psycopg is None:
            raise JournalError(
                "journal.url names PostgreSQL, but psycopg is not installed; install efm-gateway[postgresql] "
                "(psycopg and psycopg_pool)"
            )
        self._url = url
        # The password goes to libpq beside the URL, never into it: it is in no message, log line or process list.
        self._options: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                         "application_name": "efm-gateway"}
        if password is not None:
            self._options["password"] = password
        self._pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = threading.Lock()

    def connect(self) -> Any:
        """A new writer's connection (autocommit: transactions are begun by the journal's SQL)."""
        limits = (f"-c idle_in_transaction_session_timeout={int(IDLE_IN_TRANSACTION_SECONDS * 1000)} "
                  f"-c lock_timeout={int(LOCK_TIMEOUT_SECONDS * 1000)}")
        return psycopg.connect(self._url, **self._options, options=limits)

    def writer(self) -> PostgresWriter:
        try:
            return PostgresWriter(self.connect)
        except psycopg.Error as exc:
            raise JournalError(f"cannot open the journal's PostgreSQL database: {_translated(exc)}") from exc

    def reader(self) -> PooledReader:
        with self._pool_lock:
            if self._pool is None:
                # Read-only sessions: a reader's statement can never change the journal behind the commit engine.
                readers = {**self._options, "options": "-c default_transaction_read_only=on"}
                self._pool = psycopg_pool.ConnectionPool(
                    self._url, kwargs=readers, min_size=1, max_size=self._pool_size, open=True,
                    name="efm-gateway-journal", timeout=CONNECT_TIMEOUT_SECONDS,
                )
            return PooledReader(self._pool)

    def migrate(self, writer: PostgresWriter) -> int:  # type: ignore[override]
        """Bring the schema up to date in one transaction, nodes one at a time; returns the version reached."""
        writer.execute("BEGIN")
        try:
            writer.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            writer.execute("CREATE TABLE IF NOT EXISTS journal_schema (version INTEGER NOT NULL)")
            found = writer.execute("SELECT version FROM journal_schema").fetchone()
            version = found[0] if found else 0
            if found is None:
                writer.execute("INSERT INTO journal_schema (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise too_new(version)
            for script in MIGRATIONS[version:]:
                for statement in postgresql_script(script):
                    writer.execute(statement)
            writer.execute("UPDATE journal_schema SET version = ?", (len(MIGRATIONS),))
            writer.execute("COMMIT")
        except BaseException:
            if writer.in_transaction:
                writer.execute("ROLLBACK")
            raise
        return len(MIGRATIONS)

    def schema_version(self, connection: PostgresWriter | PooledReader) -> int:  # type: ignore[override]
        try:
            found = connection.execute("SELECT version FROM journal_schema").fetchone()
        except JournalStatementError:  # no such table: no efm-gateway has opened this database yet
            return 0
        return int(found[0]) if found else 0

    def checkpoint(self, writer: PostgresWriter) -> None:  # type: ignore[override]
        """PostgreSQL recycles its own write-ahead log."""

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
