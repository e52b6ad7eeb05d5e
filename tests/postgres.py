"""A real PostgreSQL for the tests: Debian's package, started by the tests themselves in a temporary folder.

PostgreSQL refuses to run as root, and the tests run as root: the server runs as an unprivileged user (Debian's
`postgres`, else `nobody`) through runuser, listens on a Unix socket in its own folder only (no port to
collide with), and asks for a password (scram-sha-256), so the journal's password handling is tested too. One
server serves the whole session; each test gets a database of its own, dropped after it.
In CI (CI=true) a missing PostgreSQL or psycopg fails the test; elsewhere it is a skip naming what to install.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.tools import in_ci

ADMIN = "efm_test"
START_TIMEOUT_SECONDS = 120


def _missing(what: str) -> None:
    message = f"{what} (Debian's postgresql and pip's psycopg; .ci/run installs both)"
    if in_ci():
        pytest.fail(f"CI must have every tool the tests use: {message}")
    pytest.skip(message)


def _server_bin() -> Path | None:
    """The folder of initdb and pg_ctl: $EFM_TEST_POSTGRES_BIN when set (another build), else the newest of Debian's."""
    chosen = os.environ.get("EFM_TEST_POSTGRES_BIN")
    if chosen:
        return Path(chosen) if (Path(chosen) / "initdb").is_file() else None
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _server_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres or nobody) to run PostgreSQL as")


@dataclass
class PostgresServer:
    folder: Path
    password: str
    bin_folder: Path | None = None
    options: str = ""

    def stop(self) -> None:
        """Stop the server at once (as a crash or a fail-over would): every session is cut."""
        assert self.bin_folder is not None
        stopped = _as_server_user(_server_user(), str(self.bin_folder / "pg_ctl"), "-D", str(self.folder / "data"),
                                  "-m", "immediate", "-w", "stop")
        assert stopped.returncode == 0, f"pg_ctl stop failed: {stopped.stderr}"

    def start(self) -> None:
        """Start it again after stop()."""
        assert self.bin_folder is not None
        started = _as_server_user(
            _server_user(), str(self.bin_folder / "pg_ctl"), "-D", str(self.folder / "data"), "-l",
            str(self.folder / "server.log"), "-o", self.options, "-w", "-t", str(START_TIMEOUT_SECONDS), "start",
        )
        assert started.returncode == 0, f"pg_ctl start failed: {started.stderr}\n{_log(self.folder)}"

    def url(self, database: str, user: str = ADMIN) -> str:
        """A URL without the password (as journal.url must be): the password goes beside it."""
        return f"postgresql://{user}@/{database}?host={quote(str(self.folder), safe='')}"

    def admin(self):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(self.url("postgres"), password=self.password, autocommit=True)


def _as_server_user(user: pwd.struct_passwd, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("runuser") or "runuser", "-u", user.pw_name, "--", *command], capture_output=True, text=True,
        timeout=START_TIMEOUT_SECONDS, check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the tests' own, for the whole session."""
    bin_folder = _server_bin()
    if bin_folder is None:
        _missing("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or $EFM_TEST_POSTGRES_BIN)")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _missing("psycopg (with psycopg_pool) is not installed")
    assert bin_folder is not None
    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL fixture runs the server as another user through runuser, which needs root")
    user = _server_user()
    # Not under pytest's tmp_path: its folders are root's alone (0700), and the server's user must reach its own.
    folder = Path(tempfile.mkdtemp(prefix="efm-postgres-"))
    data = folder / "data"
    password = secrets.token_urlsafe(16)
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    os.chown(folder, user.pw_uid, user.pw_gid)
    os.chown(password_file, user.pw_uid, user.pw_gid)
    os.chmod(password_file, 0o600)
    initdb = _as_server_user(
        user, str(bin_folder / "initdb"), "-D", str(data), "-U", ADMIN, "--auth=scram-sha-256",
        f"--pwfile={password_file}", "-E", "UTF8", "--locale=C.UTF-8",
    )
    assert initdb.returncode == 0, f"initdb failed: {initdb.stderr}"
    # fsync=off: surviving a power cut is PostgreSQL's own promise, not what these tests check (a killed node or
    # a restarted server keeps what was committed without it), and a database per test costs a checkpoint's
    # fsyncs with it: about a second each on a busy disk.
    options = (f"-c listen_addresses='' -c unix_socket_directories='{folder}' -c max_connections=200 "
               "-c fsync=off")
    started = _as_server_user(
        user, str(bin_folder / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options,
        "-w", "-t", str(START_TIMEOUT_SECONDS), "start",
    )
    assert started.returncode == 0, f"pg_ctl start failed: {started.stderr}\n{_log(folder)}"
    try:
        yield PostgresServer(folder, password, bin_folder, options)
    finally:
        _as_server_user(user, str(bin_folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _log(folder: Path) -> str:
    log = folder / "server.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


@dataclass
class PostgresDatabase:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def password(self) -> str:
        return self.server.password

    def connect(self):  # -> psycopg.Connection
        """A connection of the test's own (autocommit): it sees only what was committed."""
        import psycopg

        return psycopg.connect(self.url, password=self.password, autocommit=True)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database on the session's server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with postgres_server.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        with postgres_server.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
