"""Group commit: steps of several threads share one COMMIT, a failing step is undone alone, and a
thread returns only when its step is on disk (a fresh connection sees it). On both engines."""

from __future__ import annotations

import sqlite3
import threading
import uuid

import pytest

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.journal import commit
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from tests.journal_places import JournalPlace


def _create(journal: Journal, message_id: str):
    return journal.create(direction="out", message_id=message_id, status_name=f"t.{message_id}.xml",
                          phase=Phase.ACCEPTED, drop_name="t")


def _committed_ids(place: JournalPlace) -> set[str]:
    """What another process would see: a separate connection reads only committed data."""
    return {row[0] for row in place.rows("SELECT message_id FROM messages")}


@pytest.fixture
def journal(journal_place: JournalPlace, monkeypatch: pytest.MonkeyPatch):
    # Long enough that every waiting step joins, however slow the machine: the test is about who
    # shares a COMMIT, not about timing.
    monkeypatch.setattr(commit, "GROUP_COMMIT_WAIT_SECONDS", 5.0)
    opened = journal_place.open(FakeClock())
    commits: list[float] = []
    opened.on_commit = commits.append  # told of each COMMIT that succeeded
    opened.commits = commits
    yield opened
    opened.close()


def _start_steps_while_one_is_open(journal: Journal, steps: list, first_step) -> list[BaseException]:
    """Run `first_step` in a transaction and hold it open until every one of `steps` waits for the
    journal; then let them all go. Returns the errors the threads raised."""
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(step, hold: bool) -> None:
        try:
            with journal.transaction():
                if hold:
                    inside.set()
                    release.wait(10)
                step()
        except BaseException as exc:
            errors.append(exc)

    holder = threading.Thread(target=run, args=(first_step, True))
    holder.start()
    inside.wait(10)
    others = [threading.Thread(target=run, args=(step, False)) for step in steps]
    for thread in others:
        thread.start()
    while journal._steps_coming < 1 + len(steps):  # all of them are waiting for the lock
        threading.Event().wait(0.01)
    release.set()
    for thread in [holder, *others]:
        thread.join(10)
    return errors


def test_steps_of_waiting_threads_share_one_commit_and_each_is_on_disk_when_it_returns(journal, journal_place):
    ids = [str(uuid.uuid4()) for _ in range(6)]
    errors = _start_steps_while_one_is_open(
        journal, [lambda m=m: _create(journal, m) for m in ids[1:]], lambda: _create(journal, ids[0])
    )
    assert errors == []
    assert _committed_ids(journal_place) == set(ids)
    assert len(journal.commits) == 1, f"six steps, {len(journal.commits)} commits"


def test_a_failing_step_is_undone_alone_and_the_others_in_its_group_are_committed(journal, journal_place):
    kept, undone = str(uuid.uuid4()), str(uuid.uuid4())

    def failing_step() -> None:
        record = _create(journal, undone)
        journal.add_event(record.row, Status.ANNET, description="half a step")
        raise RuntimeError("the step fails after writing")

    errors = _start_steps_while_one_is_open(journal, [lambda: _create(journal, kept)], failing_step)
    assert [str(error) for error in errors] == ["the step fails after writing"]
    assert _committed_ids(journal_place) == {kept}
    assert journal.find_live("out", undone) is None


def test_a_nested_transaction_is_part_of_its_threads_step(journal, journal_place):
    message_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), journal.transaction():
        with journal.transaction():
            _create(journal, message_id)
        raise RuntimeError("the outer step fails")
    assert _committed_ids(journal_place) == set()
    assert journal.find_live("out", message_id) is None


def test_a_failed_commit_is_an_error_for_the_step_and_the_journal_goes_on(journal, journal_place):
    lost, later = str(uuid.uuid4()), str(uuid.uuid4())

    with journal_place.commits_refused(journal), pytest.raises(sqlite3.OperationalError, match="could not commit"), \
            journal.transaction():
        _create(journal, lost)
    with journal.transaction():
        _create(journal, later)
    assert _committed_ids(journal_place) == {later}


def test_a_transaction_lost_inside_a_step_is_reported_not_taken_for_done(journal, journal_place):
    """If SQLite gives up the transaction under a step (a full disk) and the step's code carries on,
    the step must not return as if it were on disk."""
    lost, later = str(uuid.uuid4()), str(uuid.uuid4())
    with pytest.raises(sqlite3.OperationalError), journal.transaction():
        _create(journal, lost)
        journal._db.execute("ROLLBACK")  # what SQLite does by itself on some errors
    with journal.transaction():
        _create(journal, later)
    assert _committed_ids(journal_place) == {later}


def test_closing_the_journal_commits_a_step_waiting_for_its_group(journal, journal_place):
    message_id = str(uuid.uuid4())
    with journal._counter_lock:
        journal._steps_coming += 1  # a step "on its way" keeps the finished one waiting to commit
    errors: list[BaseException] = []

    def step() -> None:
        try:
            with journal.transaction():
                _create(journal, message_id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=step)
    thread.start()
    while not (journal._group is not None and journal._transaction_owner is None):
        threading.Event().wait(0.01)
    journal.close()
    thread.join(10)
    assert errors == []
    assert _committed_ids(journal_place) == {message_id}
