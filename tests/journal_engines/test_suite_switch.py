"""EFM_TEST_JOURNAL=postgresql (tests/suite_journal.py): a journal a test opens on a path, and the gateway commands
run on a config.yaml that names no journal.url, meet in one database of the tests' PostgreSQL, and no SQLite file is
made. Runs whether or not the switch is on: it sets the switch up itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ops_cli.support import cli, filled_journal
from tests.postgres import PostgresServer
from tests.suite_engine.efm_suite_journal import database_name
from tests.suite_journal import children_environment, journals_on_server, password_file_of

pytestmark = pytest.mark.postgres


def test_a_tests_journal_and_the_status_command_meet_in_one_postgresql_database(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in children_environment(postgres_server, password_file_of(postgres_server, secrets)).items():
        monkeypatch.setenv(name, value)
    engines = journals_on_server(monkeypatch)
    sqlite_file = tmp_path / "var" / "state" / "journal.sqlite"
    database = database_name(sqlite_file)
    try:
        config, ids = filled_journal(tmp_path)
        for engine in engines:
            engine.close()

        assert not sqlite_file.exists()
        with postgres_server.admin() as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        listed = cli(config, "status", "--json")
        assert listed.returncode == 0, listed.stderr
        assert sorted(message["drop"] for message in json.loads(listed.stdout)["messages"]) == sorted(ids)
        assert not sqlite_file.exists()
    finally:
        with postgres_server.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
