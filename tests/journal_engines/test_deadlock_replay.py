"""Two nodes' group transactions that lock the same rows in opposite orders deadlock on PostgreSQL: the database
gives one of them up, and the commit engine runs it again (journal/replay.py), so both nodes' steps commit whole,
with one WARNING line and no error for the steps in it."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from gateway.clock import FakeClock
from gateway.journal.phases import Phase
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal

pytestmark = pytest.mark.postgres


@pytest.mark.timeout(120)
def test_the_victim_of_a_deadlock_between_two_nodes_transactions_is_run_again(postgres_database, caplog):
    clock = FakeClock()
    first, second = (Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
                     for _ in range(2))
    try:
        x, y = (first.create(direction="out", message_id=str(uuid.uuid4()), status_name=f"{uuid.uuid4()}.xml",
                             phase=Phase.ACCEPTED, drop_name="d").row for _ in range(2))
        dirty_before = first.get(x).status_dirty
        both_hold_one = threading.Barrier(2, timeout=30)
        failures: list[BaseException] = []

        def step(journal: Journal, rows: tuple[int, int], **fields: str) -> None:
            try:
                with journal.transaction():
                    journal.update(rows[0], **fields)  # a row lock held until this transaction ends
                    both_hold_one.wait()
                    journal.update(rows[1], **fields)  # waits for the other node's: a deadlock
            except BaseException as exc:
                failures.append(exc)

        caplog.set_level(logging.WARNING)
        threads = [threading.Thread(target=step, args=(first, (x, y)), kwargs={"client_reference": "first"}),
                   threading.Thread(target=step, args=(second, (y, x)), kwargs={"route_reason": "second"})]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert failures == []
        for row in (x, y):
            record = first.get(row)
            assert (record.client_reference, record.route_reason) == ("first", "second")
            assert record.status_dirty == dirty_before + 2
        replayed = [record for record in caplog.records if record.name == "gateway.journal.replay"]
        assert replayed and {record.levelname for record in replayed} == {"WARNING"}  # once, maybe twice in a race
        assert all("deadlock detected" in record.getMessage() and "ran again" in record.getMessage()
                   for record in replayed)
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    finally:
        first.close()
        second.close()
