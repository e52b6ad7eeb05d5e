"""The journal of the suite's gateways on the tests' PostgreSQL (EFM_TEST_JOURNAL=postgresql; tests/suite_journal.py).

Imported two ways: by the tests (tests.suite_engine.efm_suite_journal) and, through this folder's sitecustomize.py,
by every Python the tests start (efm_suite_journal), where it makes a config.yaml without journal.url name a database
of the tests' server instead of the SQLite file. So it stands alone: the standard library and psycopg only.

A journal's database is named from its SQLite file's path: the same state folder is the same database, so a gateway
that is restarted, a `status` command beside it and a Journal the test opens on that path all meet in one journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from urllib.parse import quote

SWITCH = "EFM_TEST_JOURNAL"
# Set by the tests for the processes they start: the server's socket folder, and a file with its password.
HOST = "EFM_TEST_JOURNAL_HOST"
PASSWORD_FILE = "EFM_TEST_JOURNAL_PASSWORD_FILE"
USER = "efm_test"  # tests/postgres.py's ADMIN
PREFIX = "j_"  # every such database starts so; tests/postgres.py's per-test ones start with t_


def on_postgres() -> bool:
    """Whether the suite runs its gateways' journals on PostgreSQL; unset or `sqlite` is the SQLite file."""
    chosen = os.environ.get(SWITCH, "sqlite").strip().lower()
    if chosen not in ("sqlite", "postgresql"):
        raise RuntimeError(f"{SWITCH}={chosen!r}: say sqlite (the default) or postgresql")
    return chosen == "postgresql"


def database_name(sqlite_path: Path) -> str:
    """The database of the journal whose SQLite file would be at `sqlite_path` (absolute, links resolved)."""
    return PREFIX + hashlib.sha256(str(Path(sqlite_path).resolve()).encode()).hexdigest()[:24]


def url(database: str) -> str:
    """journal.url of `database` (no password: that is in the file PASSWORD_FILE names)."""
    return f"postgresql://{USER}@/{database}?host={quote(os.environ[HOST], safe='')}"


def password() -> str:
    return Path(os.environ[PASSWORD_FILE]).read_text().splitlines()[0]


def ensure_database(database: str) -> None:
    """Create `database` unless it is there (two processes may race to it: either way it is there after)."""
    import psycopg

    with psycopg.connect(url("postgres"), password=password(), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            admin.execute(f'CREATE DATABASE "{database}"')


def journal_for(sqlite_path: Path) -> tuple[str, Path]:
    """journal.url and journal.password_file for the journal that would be the SQLite file at `sqlite_path`;
    its database is created when missing."""
    database = database_name(sqlite_path)
    ensure_database(database)
    return url(database), Path(os.environ[PASSWORD_FILE])


def install_in_child() -> None:
    """In a process the tests started: every configuration loaded without journal.url (and without
    journal.password_file) names its database on the tests' server, as if config.yaml said so."""
    import dataclasses

    import gateway.config as config_module

    load = config_module.load_config

    def load_config(path: Path) -> config_module.Config:
        config = load(path)
        if config.journal.url is not None or config.journal.password_file is not None:
            return config
        journal_url, password_file = journal_for(config.folders.journal_path)
        journal = config_module.JournalConfig(url=journal_url, password_file=password_file)
        return dataclasses.replace(config, journal=journal)

    load_config.__doc__ = load.__doc__
    config_module.load_config = load_config
