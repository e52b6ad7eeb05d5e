"""The real daemon on a PostgreSQL journal: drops are journaled in the database (no SQLite file), and a second
node with the same node.name on that database refuses to start, in one line, while the first runs on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.foundation.drops import make_folder_drop, write_config
from tests.foundation.process import DaemonProcess, current_status, status_files, wait_for

pytestmark = pytest.mark.postgres


def _node_config(folder: Path, postgres_database, node_name: str) -> Path:
    folder.mkdir()
    password_file = folder / "journal-password"
    password_file.write_text(postgres_database.password + "\n")
    password_file.chmod(0o600)
    config = write_config(folder, mode="polling", scan_interval_seconds=0.3)
    config.write_text(config.read_text() + (
        f'journal:\n  url: "{postgres_database.url}"\n  password_file: {password_file}\n'
        f"node:\n  name: {node_name}\n"
    ))
    return config


def _live_nodes(postgres_database) -> list[tuple]:
    import psycopg

    with postgres_database.connect() as connection:
        try:
            return connection.execute("SELECT name FROM nodes WHERE stopped_at IS NULL").fetchall()
        except psycopg.errors.UndefinedTable:  # the daemon has not made its tables yet
            return []


def test_a_daemon_journals_in_postgresql_and_a_second_node_of_its_name_is_refused(tmp_path, postgres_database):
    first = DaemonProcess(_node_config(tmp_path / "a", postgres_database, "node-a"), tmp_path / "a.log").start()
    try:
        wait_for(lambda: _live_nodes(postgres_database) == [("node-a",)], 30, message="node-a in the registry")
        second = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "run", "--config",
             str(_node_config(tmp_path / "b", postgres_database, "node-a"))],
            capture_output=True, text=True, timeout=60, cwd=tmp_path / "b",
        )
        assert second.returncode == 2
        refusal = [line for line in second.stderr.splitlines() if "node-a" in line]
        assert len(refusal) == 1 and "another efm-gateway node named 'node-a' is running" in refusal[0]
        assert "Traceback" not in second.stderr

        make_folder_drop(tmp_path / "a" / "var" / "outbox", "to-postgres")
        status = tmp_path / "a" / "var" / "status"
        wait_for(lambda: len(status_files(status)) == 1, 30, message="a status file")
        assert current_status(status_files(status)[0]) == "OPPRETTET"
        with postgres_database.connect() as connection:
            assert connection.execute("SELECT drop_name, phase FROM messages").fetchall() == [
                ("to-postgres", "accepted")
            ]
        assert not (tmp_path / "a" / "var" / "state" / "journal.sqlite").exists()
    finally:
        assert first.stop() == 0
    with postgres_database.connect() as connection:  # a clean stop gives the name back
        assert connection.execute("SELECT stopped_at IS NOT NULL FROM nodes WHERE name = 'node-a'").fetchall() == [
            (True,)
        ]
