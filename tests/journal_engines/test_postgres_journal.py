"""The journal on PostgreSQL beyond what the shared journal tests check: opened from config.yaml with the password
from a file, two nodes on one database, migrations by nodes that start together, a lost connection, and the
journal's SQL as PostgreSQL gets it."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.errors import JournalError
from gateway.journal import commit, postgres_engine
from gateway.journal.engines import engine_for
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.outage import outage_caused
from gateway.journal.phases import Phase
from gateway.journal.postgres_engine import PostgresEngine, postgresql_sql
from gateway.journal.store import Journal
from tests.foundation.drops import write_config

pytestmark = pytest.mark.postgres


def _create(journal: Journal, message_id: str | None = None):
    message_id = message_id or str(uuid.uuid4())
    return journal.create(direction="out", message_id=message_id, status_name=f"{uuid.uuid4()}.xml",
                          phase=Phase.ACCEPTED, drop_name="d")


def _node(postgres_database) -> Journal:
    return Journal(PostgresEngine(postgres_database.url, postgres_database.password), FakeClock())


def test_the_journal_opens_on_postgresql_from_config_with_the_password_from_a_file(tmp_path, postgres_database):
    password_file = tmp_path / "journal-password"
    password_file.write_text(postgres_database.password + "\n")
    config_path = write_config(tmp_path)
    config_path.write_text(config_path.read_text() + (
        f'journal:\n  url: "{postgres_database.url}"\n  password_file: {password_file}\n'
    ))
    config = load_config(config_path)
    journal = Journal(engine_for(config.journal, config.folders.journal_path), FakeClock())
    try:
        record = _create(journal)
        assert postgres_database.connect().execute(
            "SELECT phase FROM messages WHERE message_id = %s", (record.message_id,)
        ).fetchall() == [("accepted",)]
    finally:
        journal.close()
    assert not config.folders.journal_path.exists(), "no SQLite file beside a PostgreSQL journal"


def test_a_wrong_password_is_one_line_that_does_not_repeat_it(postgres_database):
    with pytest.raises(JournalError) as caught:
        Journal(PostgresEngine(postgres_database.url, "not-the-password"), FakeClock())
    message = str(caught.value)
    assert "cannot open the journal's PostgreSQL database" in message
    assert "password authentication failed" in message
    assert "not-the-password" not in message and postgres_database.password not in message
    assert len(message.splitlines()) == 1


def test_two_nodes_on_one_database_see_each_others_commits_and_share_the_unique_keys(postgres_database):
    first, second = _node(postgres_database), _node(postgres_database)
    try:
        made = _create(first)
        assert second.find_live("out", made.message_id) == made
        with second.transaction():
            # The same live message on the other node is refused, and the refusal spoils nothing else of the
            # step (PostgreSQL aborts a transaction at its first error: the insert ran in a savepoint).
            with pytest.raises(JournalError, match=made.message_id):
                _create(second, made.message_id)
            other = _create(second)
        assert first.find_live("out", other.message_id) == other
        assert first.counts() == {"accepted": 2}
    finally:
        first.close()
        second.close()


def test_nodes_that_start_together_migrate_one_after_the_other(postgres_database):
    opened: list[Journal] = []
    errors: list[BaseException] = []
    go = threading.Barrier(3)

    def start() -> None:
        try:
            go.wait(10)
            opened.append(_node(postgres_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert [journal.schema_version for journal in opened] == [len(MIGRATIONS)] * 3
        with postgres_database.connect() as connection:
            assert connection.execute("SELECT version FROM journal_schema").fetchall() == [(len(MIGRATIONS),)]
    finally:
        for journal in opened:
            journal.close()


def test_a_lost_connection_fails_the_step_it_was_in_and_the_journal_goes_on(postgres_database):
    journal = _node(postgres_database)
    try:
        before = _create(journal)
        with postgres_database.connect() as connection:  # the server ends every session of the journal
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(sqlite3.OperationalError, match="PostgreSQL"):
            _create(journal)
        after = _create(journal)  # a new connection, at the next step
        assert [record.row for record in journal.listing()] == [after.row, before.row]
    finally:
        journal.close()


def test_the_journals_sql_as_postgresql_gets_it():
    assert postgresql_sql("SELECT id FROM messages WHERE phase = ? AND drop_name LIKE '%x'") == \
        "SELECT id FROM messages WHERE phase = %s AND drop_name LIKE '%%x'"
    assert postgresql_sql("SELECT COALESCE(json_extract(detail, '$.inbox_folder'), message_id) FROM messages") == \
        "SELECT COALESCE((detail::jsonb ->> 'inbox_folder'), message_id) FROM messages"
    assert postgresql_sql("BEGIN IMMEDIATE") == "BEGIN"


def test_the_readers_cannot_write(postgres_database):
    journal = _node(postgres_database)
    try:
        made = _create(journal)
        with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
            journal.query("UPDATE messages SET phase = 'failed' WHERE id = ?", (made.row,))
        assert journal.get(made.row).phase == Phase.ACCEPTED
    finally:
        journal.close()


class _Steps:
    """Steps of one message each, on threads of their own, and what each met; while `holding_commits`, a group's
    COMMIT waits (as for another step on its way) for up to GROUP_COMMIT_WAIT_SECONDS."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.outcomes: dict[str, BaseException | None] = {}
        self.threads: list[threading.Thread] = []

    def start(self) -> str:
        message_id = str(uuid.uuid4())
        thread = threading.Thread(target=self._step, args=(message_id,))
        self.threads.append(thread)
        thread.start()
        return message_id

    def _step(self, message_id: str) -> None:
        try:
            _create(self.journal, message_id)
            self.outcomes[message_id] = None
        except BaseException as exc:
            self.outcomes[message_id] = exc

    @contextlib.contextmanager
    def holding_commits(self) -> Iterator[None]:
        self.journal._steps_coming += 1
        try:
            yield
        finally:
            self.journal._steps_coming -= 1

    def joined(self) -> dict[str, BaseException | None]:
        for thread in self.threads:
            thread.join(30)
        return self.outcomes


def test_a_session_the_server_ended_under_a_waiting_commit_is_an_outage_to_every_step_in_it(postgres_database,
                                                                                              monkeypatch):
    """A node paused (SIGSTOP, a frozen VM) between a step and its group's COMMIT: the server ends the idle session.
    When the node wakes, the step that meets the ended session, and the step whose COMMIT was waiting, each fail as
    a journal outage (the daemon's one outage line says it for both: neither is a traceback in the log), and the
    next step goes on over a new connection."""
    monkeypatch.setattr(postgres_engine, "IDLE_IN_TRANSACTION_SECONDS", 2.0)
    monkeypatch.setattr(commit, "GROUP_COMMIT_WAIT_SECONDS", 8.0)
    journal = _node(postgres_database)
    try:
        steps = _Steps(journal)
        with steps.holding_commits():
            steps.start()
            time.sleep(4)  # idle in its transaction past the limit: the server ends the session
            steps.start()  # the woken node's next step meets the ended session
            time.sleep(0.3)
            after = steps.start()  # and one more comes before the waiting COMMIT is decided
            time.sleep(0.5)
        outcomes = steps.joined()
        failed = {name: exc for name, exc in outcomes.items() if exc is not None}
        assert set(failed) == set(outcomes) - {after}, "the waiting step and the woken one fail, the next goes on"
        for exc in failed.values():
            assert isinstance(exc, sqlite3.OperationalError) and outage_caused(exc), repr(exc)
        assert [record.message_id for record in journal.listing()] == [after]
        assert not journal.outage.down, "the next step's COMMIT ended the outage"
    finally:
        journal.close()


def test_the_steps_of_a_group_that_one_steps_lost_connection_ended_fail_as_the_outage_it_was(postgres_database,
                                                                                               monkeypatch):
    """A step whose statement meets a lost connection takes its group's transaction with it: the steps waiting for
    that group's COMMIT fail for the same error (an outage the daemon says in one line), not a bare rollback."""
    monkeypatch.setattr(commit, "GROUP_COMMIT_WAIT_SECONDS", 8.0)
    journal = _node(postgres_database)
    try:
        steps = _Steps(journal)
        with steps.holding_commits():
            waiting = steps.start()
            time.sleep(0.5)
            writer_pid = journal._db._connection._connection.info.backend_pid
            with pytest.raises(sqlite3.OperationalError) as met, journal.transaction():
                with postgres_database.connect() as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))
                _create(journal)
        outcomes = steps.joined()
        assert outage_caused(met.value)
        assert isinstance(outcomes[waiting], sqlite3.OperationalError) and outage_caused(outcomes[waiting])
        assert journal.listing() == []
        made = _create(journal)  # and the journal goes on over a new connection
        assert [record.row for record in journal.listing()] == [made.row]
    finally:
        journal.close()
