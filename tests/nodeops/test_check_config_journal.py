"""`efm-gateway check-config` with a PostgreSQL journal (journal.url): offline, the password file read as the daemon
reads it; with --online, the real test server connected to and the journal's schema version read. One line per
finding, never the password, never a traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from gateway.clock import FakeClock
from gateway.journal.migrations import MIGRATIONS
from tests.foundation.drops import write_config
from tests.journal_places import JournalPlace
from tests.nodeops.support import config_on
from tests.ops_cli.support import cli
from tests.postgres import ADMIN

pytestmark = pytest.mark.postgres


def _journal_config(folder: Path, url: str, password_file: Path) -> Path:
    config = write_config(folder)
    config.write_text(config.read_text() + f'journal:\n  url: "{url}"\n  password_file: {password_file}\n')
    return config


def _clean(result, password: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert password not in result.stderr + result.stdout


def test_offline_the_password_file_is_read(postgres_database, tmp_path):
    missing = tmp_path / "no-such-password"
    config = _journal_config(tmp_path, postgres_database.url, missing)
    result = cli(config, "check-config")
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if "journal.password_file" in line]
    assert str(missing) in line and "cannot read it" in line

    shared = tmp_path / "shared-password"
    shared.write_text(postgres_database.password + "\n")
    shared.chmod(0o644)
    result = cli(_journal_config(tmp_path, postgres_database.url, shared), "check-config")
    assert result.returncode == 0, result.stderr
    assert f"warning: journal.password_file {shared} can be read by others than its owner; chmod 600 it" \
        in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("journal: PostgreSQL")]
    assert f"database {postgres_database.name}" in line and f"as {ADMIN}" in line
    _clean(result, postgres_database.password)


def test_online_connects_and_reads_the_schema_version(postgres_database, tmp_path):
    journal_place = JournalPlace("postgresql", tmp_path / "unused.sqlite", postgres_database)
    config = config_on(journal_place, tmp_path)
    fresh = cli(config, "check-config", "--online")
    assert fresh.returncode == 0, fresh.stderr
    assert "journal.url: PostgreSQL answers; no journal yet: the first node makes it" in fresh.stdout.splitlines()

    journal_place.open(FakeClock()).close()  # a node made the journal
    made = cli(config, "check-config", "--online", "--json")
    assert made.returncode == 0, made.stderr
    [result] = [r for r in json.loads(made.stdout)["results"] if r["key"] == "journal.url"]
    assert result == {"level": "ok", "key": "journal.url", "online": True,
                      "text": f"journal.url: PostgreSQL answers; the journal has schema version {len(MIGRATIONS)} "
                              "(this efm-gateway's)"}
    _clean(made, journal_place.database.password)


def test_online_a_wrong_password_is_one_line(postgres_database, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    result = cli(_journal_config(tmp_path, postgres_database.url, wrong), "check-config", "--online")
    assert result.returncode == 6
    [line] = [line for line in result.stderr.splitlines() if "journal.url" in line]
    assert "password authentication failed" in line and "journal.password_file" in line
    _clean(result, "not-the-password")


def test_online_a_server_that_is_down_is_one_line(postgres_database, tmp_path):
    nowhere = Path(tempfile.mkdtemp(prefix="efm-no-postgres-"))  # a socket folder with no server in it
    url = f"postgresql://{ADMIN}@/{postgres_database.name}?host={quote(str(nowhere), safe='')}"
    password_file = tmp_path / "password"
    password_file.write_text(postgres_database.password + "\n")
    password_file.chmod(0o600)
    result = cli(_journal_config(tmp_path, url, password_file), "check-config", "--online")
    assert result.returncode == 6
    [line] = [line for line in result.stderr.splitlines() if "journal.url" in line]
    assert "cannot open the journal's PostgreSQL database" in line and "No such file or directory" in line
    assert len(result.stderr.splitlines()) == 1
    _clean(result, postgres_database.password)
    nowhere.rmdir()
