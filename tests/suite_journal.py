"""EFM_TEST_JOURNAL=postgresql: the whole suite's journals on PostgreSQL instead of the SQLite file.

Unset (or `sqlite`), nothing here does anything. Set, each pytest worker starts one PostgreSQL server of the tests'
(tests/postgres.py) and:
- every Python the tests start (daemons, `status`, `check-config`, reloads) loads each config.yaml that names no
  journal.url as if it named a database of that server (suite_engine/sitecustomize.py, on PYTHONPATH);
- every Journal, JournalReader, OperatorJournal, JournalView and JournalMetrics a test opens on a path opens
  that path's database.
A journal's database is named from its SQLite file's path (suite_engine/efm_suite_journal.py), so all of them meet
in one journal, and a restarted gateway finds its own again. A test that looks at the SQLite file itself is marked
`sqlite_only` and skipped under the switch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer
from tests.suite_engine import efm_suite_journal
from tests.suite_engine.efm_suite_journal import PREFIX, on_postgres

SHIM = Path(__file__).resolve().parent / "suite_engine"
SQLITE_ONLY_REASON = ("this test (or this case of it) is about the SQLite journal file; EFM_TEST_JOURNAL=postgresql "
                      "keeps the journals on PostgreSQL")


def skip_sqlite_only(items: list[pytest.Item]) -> None:
    """Under the switch, the tests marked sqlite_only are skipped, saying why."""
    if not on_postgres():
        return
    for item in items:
        if item.get_closest_marker("sqlite_only") is not None:
            item.add_marker(pytest.mark.skip(reason=SQLITE_ONLY_REASON))


def password_file_of(server: PostgresServer, folder: Path) -> Path:
    """The server's password in a file of root's in `folder` (0600), for journal.password_file."""
    path = folder / "password"
    path.write_text(server.password + "\n")
    path.chmod(0o600)
    return path


def children_environment(server: PostgresServer, password_file: Path) -> dict[str, str]:
    """What the processes the tests start need in their environment to keep their journals on `server`."""
    return {
        efm_suite_journal.SWITCH: "postgresql",
        efm_suite_journal.HOST: str(server.folder),
        efm_suite_journal.PASSWORD_FILE: str(password_file),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")])),
    }


def journals_on_server(monkeypatch: pytest.MonkeyPatch) -> list:
    """From now on (until monkeypatch undoes it), a Journal, JournalReader, OperatorJournal, JournalView or
    JournalMetrics opened on a path opens that path's database on the server the environment names; returns the
    engines opened so (to close)."""
    from gateway.journal.operator import OperatorJournal
    from gateway.journal.overview import JournalView
    from gateway.journal.postgres_engine import PostgresEngine
    from gateway.journal.reader import JournalReader
    from gateway.journal.store import Journal
    from gateway.ops.metrics import JournalMetrics

    engines: list[PostgresEngine] = []

    def on_server(kind: type) -> None:
        opened = kind.__init__

        def init(self: object, where: object, *args: object, **kwargs: object) -> None:
            if isinstance(where, Path):
                journal_url, _ = efm_suite_journal.journal_for(where)
                where = PostgresEngine(journal_url, efm_suite_journal.password())
                engines.append(where)
            opened(self, where, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", init)

    for kind in (Journal, JournalReader, OperatorJournal, JournalView, JournalMetrics):
        on_server(kind)
    return engines


@pytest.fixture(scope="session", autouse=True)
def suite_journal_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer | None]:
    """Under the switch: this worker's server, named to the processes the tests start (their environment)."""
    if not on_postgres():
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    # Daemons started without root's capability to override file permissions (without_dac) reach the socket too.
    os.chmod(server.folder, stat.S_IMODE(server.folder.stat().st_mode) | 0o111)  # noqa: S103 - search only
    secrets = Path(tempfile.mkdtemp(prefix="efm-suite-journal-"))
    environment = children_environment(server, password_file_of(server, secrets))
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(secrets, ignore_errors=True)


@pytest.fixture(autouse=True)
def suite_journal(suite_journal_server: PostgresServer | None) -> Iterator[None]:
    """Under the switch: a journal a test opens on a path is that path's database; after the test, the databases
    nobody uses any more are dropped (a module's daemon that still runs keeps its own)."""
    if suite_journal_server is None:
        yield
        return
    # A MonkeyPatch of its own: a test's monkeypatch.undo() must not put its journals back on SQLite.
    with pytest.MonkeyPatch.context() as patches:
        engines = journals_on_server(patches)
        yield
    for engine in engines:
        engine.close()
    _drop_unused(suite_journal_server)


def _drop_unused(server: PostgresServer) -> None:
    import psycopg

    with server.admin() as admin:
        names = [name for (name,) in admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (PREFIX,))]
        for name in names:
            try:
                admin.execute(f'DROP DATABASE "{name}"')
            except psycopg.errors.ObjectInUse:
                continue  # still open: a daemon of the module's, or a journal the test left open


def journal_rows(sqlite_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """What a connection of the test's own reads of the journal whose SQLite file is (or would be) `sqlite_path`,
    on the engine the suite runs on: only what was committed. `?` placeholders on both engines."""
    if not on_postgres():
        with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
            return connection.execute(sql, params).fetchall()
    import psycopg

    database = efm_suite_journal.database_name(sqlite_path)
    with psycopg.connect(efm_suite_journal.url(database), password=efm_suite_journal.password(),
                         autocommit=True) as connection:
        return connection.execute(sql.replace("?", "%s"), params).fetchall()


def set_schema_version(sqlite_path: Path, version: int) -> None:
    """Mark the journal at `sqlite_path` as made by an efm-gateway of schema `version`, on the suite's engine."""
    if not on_postgres():
        with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA user_version = {int(version)}")
        return
    import psycopg

    database = efm_suite_journal.database_name(sqlite_path)
    with psycopg.connect(efm_suite_journal.url(database), password=efm_suite_journal.password(),
                         autocommit=True) as connection:
        connection.execute("UPDATE journal_schema SET version = %s", (int(version),))


def journal_exists(sqlite_path: Path) -> bool:
    """Whether a gateway (or a test) has made the journal whose SQLite file is (or would be) `sqlite_path`."""
    if not on_postgres():
        return sqlite_path.exists()
    import psycopg

    database = efm_suite_journal.database_name(sqlite_path)
    try:
        with psycopg.connect(efm_suite_journal.url(database), password=efm_suite_journal.password(),
                             autocommit=True) as connection:
            return connection.execute("SELECT to_regclass('journal_schema')").fetchone()[0] is not None
    except psycopg.OperationalError:  # no such database yet
        return False
