"""Where a test's journal lives: the SQLite file, or a fresh database on the tests' PostgreSQL (tests/postgres.py).

`journal_place` is parametrized over both engines, so a journal test written against it runs on each; the
PostgreSQL case is marked `postgres`. A place also reads and writes its database beside the journal, on a
connection of its own, as another process would: what it sees was committed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.clock import Clock
from gateway.journal.engine import Engine
from gateway.journal.migrations import postgresql_script
from gateway.journal.store import Journal
from tests.postgres import PostgresDatabase

# Under EFM_TEST_JOURNAL=postgresql the gateways a test starts keep their journals on PostgreSQL whatever their
# config.yaml says: the SQLite case would not meet them, and its PostgreSQL twin runs.
ENGINES = [pytest.param("sqlite", marks=pytest.mark.sqlite_only),
           pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class JournalPlace:
    engine_name: str
    sqlite_path: Path
    database: PostgresDatabase | None = None

    @property
    def postgres(self) -> bool:
        return self.engine_name == "postgresql"

    def engine(self) -> Engine:
        if self.database is not None:
            from gateway.journal.postgres_engine import PostgresEngine

            return PostgresEngine(self.database.url, self.database.password)
        from gateway.journal.sqlite_engine import SqliteEngine

        return SqliteEngine(self.sqlite_path)

    def open(self, clock: Clock) -> Journal:
        return Journal(self.engine(), clock)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """What a separate connection reads (only committed data); `?` placeholders on both engines."""
        if self.database is not None:
            with self.database.connect() as connection:
                return connection.execute(sql.replace("?", "%s"), params).fetchall()
        with contextlib.closing(sqlite3.connect(self.sqlite_path)) as connection:
            return connection.execute(sql, params).fetchall()

    def run(self, *statements: str) -> None:
        """Statements on a separate connection, committed."""
        if self.database is not None:
            with self.database.connect() as connection:
                for statement in statements:
                    connection.execute(statement)
            return
        with contextlib.closing(sqlite3.connect(self.sqlite_path, isolation_level=None)) as connection:
            for statement in statements:
                connection.execute(statement)

    def schema_version(self) -> int:
        if self.postgres:
            [(version,)] = self.rows("SELECT version FROM journal_schema")
            return version
        [(version,)] = self.rows("PRAGMA user_version")
        return version

    def set_schema_version(self, version: int) -> None:
        if self.postgres:
            self.run(f"UPDATE journal_schema SET version = {int(version)}")  # noqa: S608 - an int
        else:
            self.run(f"PRAGMA user_version = {int(version)}")

    def create_old_schema(self, script: str, version: int) -> None:
        """A journal made by an older efm-gateway: `script` (a migration) run by hand, at `version`."""
        if self.postgres:
            self.run(
                "CREATE TABLE journal_schema (version INTEGER NOT NULL)",
                f"INSERT INTO journal_schema (version) VALUES ({int(version)})",  # noqa: S608 - an int
                *postgresql_script(script),
            )
        else:
            self.run(*[statement for statement in script.split(";") if statement.strip()],
                     f"PRAGMA user_version = {int(version)}")

    @contextlib.contextmanager
    def commits_refused(self, journal: Journal) -> Iterator[None]:
        """While inside, the database refuses every COMMIT that adds a message, as a failing disk would."""
        if not self.postgres:
            def refuse(action: int, arg1: str | None, *_rest: object) -> int:
                refused = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
                return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

            journal._db.set_authorizer(refuse)  # type: ignore[attr-defined]
            try:
                yield
            finally:
                journal._db.set_authorizer(None)  # type: ignore[attr-defined]
            return
        # A deferred constraint trigger runs at COMMIT: raising there fails the COMMIT itself.
        self.run(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the test refuses this commit'; END $$",
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON messages DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION refuse_commit()",
        )
        try:
            yield
        finally:
            self.run("DROP TRIGGER refuse_commit ON messages", "DROP FUNCTION refuse_commit()")


@pytest.fixture(params=ENGINES)
def journal_place(request: pytest.FixtureRequest, tmp_path: Path) -> JournalPlace:
    """The journal's place on each engine in turn (a fresh SQLite file, or a fresh PostgreSQL database)."""
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres_database")
        return JournalPlace("postgresql", tmp_path / "journal.sqlite", database)
    return JournalPlace("sqlite", tmp_path / "journal.sqlite")
