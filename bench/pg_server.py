"""A PostgreSQL server of the bench's own, as tests/postgres.py starts the tests' one (Debian's package, an unprivileged
user through runuser, a Unix socket in a temporary folder only, scram-sha-256), with two differences: it keeps
PostgreSQL's defaults for durability (fsync on, as the SQLite engine's synchronous=FULL: the engines are compared
as they run in production), and it loads pg_stat_statements, so a run can say which statements it made."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.postgres import (
    ADMIN,
    START_TIMEOUT_SECONDS,
    PostgresDatabase,
    PostgresServer,
    _as_server_user,
    _server_bin,
    _server_user,
)


@contextmanager
def bench_server() -> Iterator[PostgresServer]:
    bin_folder = _server_bin()
    if bin_folder is None:
        raise SystemExit("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin)")
    if os.geteuid() != 0:
        raise SystemExit("the bench runs PostgreSQL as another user through runuser, which needs root")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="efm-bench-postgres-"))
    password = secrets.token_urlsafe(16)
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    os.chown(folder, user.pw_uid, user.pw_gid)
    os.chown(password_file, user.pw_uid, user.pw_gid)
    os.chmod(password_file, 0o600)
    initdb = _as_server_user(user, str(bin_folder / "initdb"), "-D", str(folder / "data"), "-U", ADMIN,
                             "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--locale=C.UTF-8")
    if initdb.returncode != 0:
        raise SystemExit(f"initdb failed: {initdb.stderr}")
    options = (f"-c listen_addresses='' -c unix_socket_directories='{folder}' -c max_connections=100 "
               "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top "
               "-c pg_stat_statements.max=5000")
    server = PostgresServer(folder, password, bin_folder, options)
    try:
        server.start()
        yield server
    finally:
        _as_server_user(user, str(bin_folder / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w",
                        "-t", str(START_TIMEOUT_SECONDS), "stop")
        shutil.rmtree(folder, ignore_errors=True)


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.folder / "data" / "postmaster.pid").read_text().split()[0])


def new_database(server: PostgresServer, name: str) -> PostgresDatabase:
    with server.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database = PostgresDatabase(server, name)
    with database.connect() as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return database


def reset_statistics(database: PostgresDatabase) -> None:
    """Zero the database's counters (pg_stat_database) and the server's statement statistics."""
    with database.connect() as connection:
        connection.execute("SELECT pg_stat_reset()")
        connection.execute("SELECT pg_stat_statements_reset()")


# The bench's own statements (these, the resets) are left out; every other statement on the database is a node's.
_THE_NODES = ("dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
              "AND query NOT ILIKE '%pg_stat%'")


def statistics(database: PostgresDatabase, top: int = 12) -> dict:
    """What the server counted since reset_statistics(): statements (calls) in all, the transactions, the rows
    written, deadlocks, and the statements that were called most and took the most time."""
    with database.connect() as connection:
        calls, exec_ms = connection.execute(
            f"SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements "  # noqa: S608
            f"WHERE {_THE_NODES}").fetchone()
        row = connection.execute(
            "SELECT xact_commit, xact_rollback, deadlocks, tup_inserted + tup_updated + tup_deleted, "
            "tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()").fetchone()
        by_calls, by_time = (connection.execute(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "  # noqa: S608
            f"WHERE {_THE_NODES} ORDER BY {order} DESC LIMIT {int(top)}").fetchall()
            for order in ("calls", "total_exec_time"))
    commits, rollbacks, deadlocks, written, read = row
    return {"calls": int(calls), "exec_ms": float(exec_ms), "commits": commits, "rollbacks": rollbacks,
            "deadlocks": deadlocks, "rows_written": written, "rows_read": read, "by_calls": by_calls,
            "by_time": by_time}
