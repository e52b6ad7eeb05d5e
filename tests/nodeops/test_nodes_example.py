"""Running several nodes as docs/production.md says: examples/config.nodes.yaml passes check-config offline, and
the database, role and grants its section 12 gives as SQL are enough for a node (check-config --online, the
journal's migrations, the node registry) and no more than that (the role creates nothing outside its schema)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from urllib.parse import quote

import pytest
import yaml

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.nodes import NodeRegistry
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from tests.foundation.drops import write_config
from tests.foundation.test_examples import EXAMPLES, PRODUCTION_DOC, _runnable_copy, refusing_proxy  # noqa: F401
from tests.ops_cli.support import cli


def test_the_nodes_example_passes_check_config_offline(tmp_path, refusing_proxy):  # noqa: F811
    copy = _runnable_copy(EXAMPLES / "config.nodes.yaml", tmp_path)
    config = load_config(copy)
    assert config.journal.password_file is not None and config.journal.password_file.is_relative_to(tmp_path)
    config.journal.password_file.parent.mkdir(parents=True, exist_ok=True)
    config.journal.password_file.write_text("the role's password\n")
    config.journal.password_file.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(HTTPS_PROXY=refusing_proxy.url, HTTP_PROXY=refusing_proxy.url)
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(copy)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert ("journal: PostgreSQL, database efm_gateway on db.kommune.no as efm_gateway; the password file is "
            "readable") in result.stdout.splitlines()
    assert not [line for line in result.stdout.splitlines()
                if line.startswith("warning:") and "journal" in line]
    # A node of several: its own name, polling on the share, claims on the outbox's share, nothing else changed
    assert config.node.name == "gw-a" and config.intake.mode == "polling"
    assert config.folders.work_area.parent == config.folders.outbox.parent
    production = yaml.safe_load((EXAMPLES / "config.production.yaml").read_text())
    nodes = yaml.safe_load((EXAMPLES / "config.nodes.yaml").read_text())
    assert {key: value for key, value in nodes.items() if key not in ("journal", "node")} == production


def _documented_sql() -> list[str]:
    """The statements of the ```sql block in docs/production.md's section on several nodes."""
    text = PRODUCTION_DOC.read_text()
    section = text[text.index("## 12. Several nodes"):]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert block, "no SQL block in section 12"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.postgres
def test_the_documented_grants_are_enough_for_a_node_and_no_more(postgres_server, tmp_path):
    import psycopg

    name = f"efm_gw_{uuid.uuid4().hex[:10]}"  # role, database and schema, as the doc's efm_gateway
    password = uuid.uuid4().hex
    admin = postgres_server.admin()
    connection = admin
    try:
        for line in _documented_sql():
            line = line.replace("efm_gateway", name).replace("CHANGE-the-password", password)
            if line.startswith("\\connect "):
                connection = psycopg.connect(postgres_server.url(line.split()[1]), password=postgres_server.password,
                                             autocommit=True)
                continue
            connection.execute(line)
        if connection is not admin:
            connection.close()

        url = f"postgresql://{name}@/{name}?host={quote(str(postgres_server.folder), safe='')}"
        config = write_config(tmp_path)
        password_file = tmp_path / "journal.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        config.write_text(config.read_text() + f'journal:\n  url: "{url}"\n  password_file: {password_file}\n')
        fresh = cli(config, "check-config", "--online")
        assert fresh.returncode == 0, fresh.stderr
        assert "journal.url: PostgreSQL answers; no journal yet: the first node makes it" in fresh.stdout

        journal = Journal(PostgresEngine(url, password), FakeClock())  # the first node: the migrations run
        NodeRegistry(journal, "gw-a", journal.clock).join()
        journal.close()
        made = cli(config, "check-config", "--online")
        assert made.returncode == 0, made.stderr
        assert (f"journal.url: PostgreSQL answers; the journal has schema version {len(MIGRATIONS)} "
                "(this efm-gateway's)") in made.stdout
        assert "gw-a" in cli(config, "status", "--nodes").stdout

        with psycopg.connect(url, password=password, autocommit=True) as role:
            [(schema,)] = role.execute("SELECT table_schema FROM information_schema.tables "
                                       "WHERE table_name = 'messages'").fetchall()
            assert schema == name
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                role.execute("CREATE TABLE public.elsewhere (id integer)")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.close()
