"""The journal's section of config.yaml: SQLite by default, PostgreSQL by URL with its password from a file
(or systemd's LoadCredential=), never from the URL; and the node's name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.journal.engines import engine_for
from gateway.journal.sqlite_engine import SqliteEngine
from tests.foundation.drops import write_config

SECRET = "s3cret-Passw0rd"


def _config_with(tmp_path: Path, extra: str) -> Path:
    config = write_config(tmp_path)
    config.write_text(config.read_text() + extra)
    return config


def test_without_a_journal_section_the_journal_is_the_sqlite_file_in_the_state_folder(tmp_path):
    config = load_config(write_config(tmp_path))
    assert config.journal.url is None
    engine = engine_for(config.journal, config.folders.journal_path)
    assert isinstance(engine, SqliteEngine)
    assert engine.path == config.folders.journal_path == tmp_path / "var" / "state" / "journal.sqlite"
    assert config.node.resolved_name == socket.gethostname()


@pytest.mark.parametrize("url", [
    f"postgresql://efm:{SECRET}@db.example.no/efm",
    f"postgresql://efm@db.example.no/efm?password={SECRET}",
    f"postgres://efm@db.example.no/efm?sslmode=require&PassWord={SECRET}",
])
def test_a_password_in_the_url_is_refused_in_one_line_that_does_not_repeat_it(tmp_path, url):
    config = _config_with(tmp_path, f"journal:\n  url: \"{url}\"\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert "journal.url holds a password" in message
    assert "journal.password_file" in message and "LoadCredential" in message
    assert SECRET not in message
    assert len(message.splitlines()) == 1


def test_a_url_of_another_database_is_refused(tmp_path):
    config = _config_with(tmp_path, "journal:\n  url: mysql://efm@db.example.no/efm\n")
    with pytest.raises(ConfigError, match=r"journal\.url must be a postgresql://"):
        load_config(config)


def test_a_password_file_without_a_url_is_refused(tmp_path):
    config = _config_with(tmp_path, "journal:\n  password_file: /etc/efm-gateway/journal-password\n")
    with pytest.raises(ConfigError, match=r"journal\.password_file is set without journal\.url"):
        load_config(config)


def test_the_password_comes_from_the_credentials_folder_systemd_hands_the_service(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "journal-password").write_text(f"{SECRET}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(_config_with(
        tmp_path,
        "journal:\n  url: postgresql://efm@db.example.no/efm\n"
        "  password_file: ${CREDENTIALS_DIRECTORY}/journal-password\nnode:\n  name: node-a\n",
    ))
    assert config.journal.password_file == credentials / "journal-password"
    assert config.journal.password() == SECRET  # its first line, without the newline
    assert config.node.resolved_name == "node-a"


def test_a_password_file_that_cannot_be_read_is_named(tmp_path):
    config = load_config(_config_with(
        tmp_path, "journal:\n  url: postgresql://efm@db.example.no/efm\n  password_file: missing-password\n"
    ))
    with pytest.raises(ConfigError, match=r"journal.password_file .*missing-password: cannot read it"):
        config.journal.password()
