"""The journal: allowed phase moves, status events as a set, schema migrations, the single-instance
lock, and status files that are never left behind the journal. The journal's tests run on both engines
(SQLite, and PostgreSQL: `journal_place`, tests/journal_places.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from gateway.clock import FakeClock
from gateway.contract.status import NAMESPACE as STATUS_NS
from gateway.contract.status import schema as status_schema
from gateway.contract.statuses import Status, current_status
from gateway.errors import GatewayError, JournalError
from gateway.journal.lock import InstanceLock
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.phases import FINISHED, Phase
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter
from tests.suite_journal import set_schema_version

from .drops import write_config

NS = {"s": STATUS_NS}

# How to reach each phase through allowed moves only.
PATHS: dict[Phase, tuple[str, list[Phase]]] = {
    Phase.ACCEPTED: ("out", [Phase.ACCEPTED]),
    Phase.SENDING: ("out", [Phase.ACCEPTED, Phase.SENDING]),
    Phase.SENT: ("out", [Phase.ACCEPTED, Phase.SENDING, Phase.SENT]),
    Phase.DELIVERED: ("out", [Phase.ACCEPTED, Phase.SENDING, Phase.SENT, Phase.DELIVERED]),
    Phase.DONE: ("out", [Phase.ACCEPTED, Phase.SENDING, Phase.SENT, Phase.DONE]),
    Phase.FAILED: ("out", [Phase.ACCEPTED, Phase.SENDING, Phase.FAILED]),
    Phase.EXPIRED: ("out", [Phase.ACCEPTED, Phase.EXPIRED]),
    Phase.REJECTED: ("out", [Phase.REJECTED]),
    Phase.RECEIVED: ("in", [Phase.RECEIVED]),
    Phase.IN_INBOX: ("in", [Phase.RECEIVED, Phase.IN_INBOX]),
    Phase.TAKEN: ("in", [Phase.RECEIVED, Phase.IN_INBOX, Phase.TAKEN]),
    Phase.QUARANTINED: ("in", [Phase.RECEIVED, Phase.QUARANTINED]),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(journal_place, clock: FakeClock):
    opened = journal_place.open(clock)
    yield opened
    opened.close()


def _message(journal: Journal, phase: Phase, **fields):
    direction, path = PATHS[phase]
    message_id = str(uuid.uuid4())
    record = journal.create(
        direction=direction,
        message_id=message_id,
        status_name=f"test.{message_id}.xml",
        phase=path[0],
        drop_name="test" if direction == "out" else None,
        deadline=journal.clock.now() + timedelta(days=1),
        **fields,
    )
    for step in path[1:]:
        record = journal.move(record.row, step)
    assert record.phase == phase
    return record


# ---- phases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(PATHS))
def test_every_phase_is_reachable_through_allowed_moves(journal, phase):
    record = _message(journal, phase)
    assert (record.finished_at is not None) == (phase in FINISHED)


def test_a_retry_goes_back_from_sending_to_accepted(journal):
    record = _message(journal, Phase.SENDING)
    record = journal.move(record.row, Phase.ACCEPTED, attempts=1)
    assert record.phase == Phase.ACCEPTED and record.attempts == 1
    assert record.finished_at is None


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Phase.REJECTED, Phase.ACCEPTED),
        (Phase.DONE, Phase.SENT),
        (Phase.SENT, Phase.ACCEPTED),
        (Phase.SENT, Phase.SENDING),
        (Phase.EXPIRED, Phase.SENT),
        (Phase.FAILED, Phase.SENDING),
        (Phase.ACCEPTED, Phase.DONE),
        (Phase.ACCEPTED, Phase.IN_INBOX),
        (Phase.RECEIVED, Phase.SENT),
        (Phase.IN_INBOX, Phase.RECEIVED),
        (Phase.TAKEN, Phase.IN_INBOX),
        (Phase.QUARANTINED, Phase.IN_INBOX),
    ],
)
def test_a_refused_move_names_both_phases_and_changes_nothing(journal, start, target):
    record = _message(journal, start)
    with pytest.raises(JournalError) as caught:
        journal.move(record.row, target, errors=["should not be stored"])
    message = str(caught.value)
    assert record.message_id in message
    assert f"from {start.value} to {target.value}" in message
    after = journal.get(record.row)
    assert after.phase == start
    assert after.errors == ()
    assert after.status_dirty == record.status_dirty


# A finished message moves again only as a late status says: LEVERT or LEST after an expiry, LEST after
# LEVERT, and the receiver's or the channel's FEIL after any of them; and a quarantined one when a new
# copy of it arrives.
LATE_DELIVERY = {
    Phase.EXPIRED: {Phase.DELIVERED, Phase.DONE, Phase.FAILED},
    Phase.DELIVERED: {Phase.DONE, Phase.FAILED},
    Phase.DONE: {Phase.FAILED},
    Phase.QUARANTINED: {Phase.RECEIVED},  # not a late status: a new copy of the message, sent again
}


@pytest.mark.parametrize("phase", sorted(FINISHED))
def test_a_finished_message_never_moves_again_but_for_a_late_delivery(journal, phase):
    record = _message(journal, phase)
    for target in Phase:
        if target == phase or target in LATE_DELIVERY.get(phase, set()):
            continue
        with pytest.raises(JournalError):
            journal.move(record.row, target)
    assert journal.get(record.row).phase == phase
    for target in LATE_DELIVERY.get(phase, ()):
        moved = _message(journal, phase)
        assert journal.move(moved.row, target).phase == target


@pytest.mark.parametrize("phase", [Phase.SENDING, Phase.SENT, Phase.DONE, Phase.IN_INBOX, Phase.TAKEN])
def test_a_message_cannot_start_in_the_middle(journal, phase):
    with pytest.raises(JournalError, match=f"cannot start in phase {phase.value}"):
        journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="x.xml", phase=phase)


def test_a_refused_move_inside_a_transaction_rolls_back_the_whole_step(journal):
    record = _message(journal, Phase.REJECTED)
    with pytest.raises(JournalError), journal.transaction():
        journal.add_event(record.row, Status.ANNET, description="part of the failed step")
        journal.move(record.row, Phase.ACCEPTED)
    assert not journal.has_event(record.row, Status.ANNET)


def test_two_live_messages_cannot_share_a_message_id_but_a_rejected_one_can(journal):
    message_id = str(uuid.uuid4())
    journal.create(direction="out", message_id=message_id, status_name="a.xml", phase=Phase.REJECTED)
    journal.create(direction="out", message_id=message_id, status_name="b.xml", phase=Phase.ACCEPTED)
    with pytest.raises(JournalError, match=message_id):
        journal.create(direction="out", message_id=message_id, status_name="c.xml", phase=Phase.ACCEPTED)
    # The same id may come in as a received message: directions are separate.
    journal.create(direction="in", message_id=message_id, status_name="in.xml", phase=Phase.RECEIVED)


# ---- the status history is a set of events ------------------------------------------------------------


def _status_file(folder: Path, record) -> etree._Element:
    tree = etree.parse(str(folder / record.status_name))
    assert status_schema().validate(tree), status_schema().error_log
    return tree.getroot()


def _history(root: etree._Element) -> list[str]:
    return [e.findtext("s:value", namespaces=NS) for e in root.findall("s:history/s:status", NS)]


def test_a_duplicate_status_is_ignored(journal, clock, tmp_path):
    writer = StatusWriter(journal, tmp_path, clock)
    record = _message(journal, Phase.SENT)
    assert journal.add_event(record.row, Status.OPPRETTET)
    assert journal.add_event(record.row, Status.MOTTATT, description="first")
    writer.flush()
    clock.advance(60)
    assert not journal.add_event(record.row, Status.MOTTATT, description="again")
    assert journal.dirty() == [], "an ignored duplicate must not mark the status file for rewriting"
    events = journal.events(record.row)
    assert [e.status for e in events] == [Status.OPPRETTET, Status.MOTTATT]
    assert events[1].description == "first"
    assert _history(_status_file(tmp_path, record)) == ["OPPRETTET", "MOTTATT"]


@pytest.mark.parametrize("late_offset", [-30, +30], ids=["stamped-earlier", "stamped-later"])
def test_a_late_mottatt_does_not_move_current_back_from_levert(journal, clock, tmp_path, late_offset):
    writer = StatusWriter(journal, tmp_path, clock)
    record = _message(journal, Phase.SENT)
    journal.add_event(record.row, Status.OPPRETTET)
    journal.add_event(record.row, Status.SENDT)
    clock.advance(120)
    journal.add_event(record.row, Status.LEVERT)
    writer.flush()
    assert _status_file(tmp_path, record).findtext("s:current", namespaces=NS) == "LEVERT"

    clock.advance(60)
    assert journal.add_event(record.row, Status.MOTTATT, at=clock.now() - timedelta(seconds=60 - late_offset))
    writer.flush()
    statuses = [e.status for e in journal.events(record.row)]
    assert current_status(statuses) == Status.LEVERT
    root = _status_file(tmp_path, record)
    assert root.findtext("s:current", namespaces=NS) == "LEVERT"
    assert sorted(_history(root)) == sorted(["OPPRETTET", "SENDT", "MOTTATT", "LEVERT"])


def test_current_status_rules():
    assert current_status([]) is None
    assert current_status([Status.OPPRETTET, Status.SENDT]) == Status.SENDT
    assert current_status([Status.LEVERT, Status.MOTTATT, Status.OPPRETTET]) == Status.LEVERT
    assert current_status([Status.OPPRETTET, Status.LEST, Status.LEVERT]) == Status.LEST
    # FEIL and LEVETID_UTLOPT end a message whatever came before or after.
    assert current_status([Status.LEVERT, Status.FEIL]) == Status.FEIL
    assert current_status([Status.LEVETID_UTLOPT, Status.MOTTATT]) == Status.LEVETID_UTLOPT
    assert current_status([Status.INNKOMMENDE_LEVERT, Status.INNKOMMENDE_MOTTATT]) == Status.INNKOMMENDE_LEVERT
    assert current_status([Status.ANNET, Status.OPPRETTET]) == Status.OPPRETTET


# ---- migrations ---------------------------------------------------------------------------------------


def test_a_new_journal_gets_every_migration(journal_place, clock):
    journal = journal_place.open(clock)
    try:
        assert journal.schema_version == len(MIGRATIONS)
    finally:
        journal.close()
    assert journal_place.schema_version() == len(MIGRATIONS)
    # Opening again runs nothing and keeps the version.
    journal_place.open(clock).close()
    assert journal_place.schema_version() == len(MIGRATIONS)


def test_an_old_journal_is_upgraded_and_keeps_its_messages(journal_place, clock):
    journal_place.create_old_schema(MIGRATIONS[0], version=1)
    journal_place.run(
        "INSERT INTO messages (direction, message_id, status_name, phase, created_at, updated_at) "
        "VALUES ('out', 'old-message', 'old.xml', 'accepted', 0, 0)"
    )

    journal = journal_place.open(clock)
    try:
        assert journal.schema_version == len(MIGRATIONS)
        [record] = journal.find("old-message")
        assert record.phase == Phase.ACCEPTED
        journal.queue_status_send(record.row, Status.MOTTATT)  # a table from migration 2
        # A message made after the upgrade gets its own id: the old row's is not handed out again.
        later = journal.create(direction="out", message_id="new-message", status_name="new.xml",
                               phase=Phase.ACCEPTED)
        assert later.row != record.row
    finally:
        journal.close()
    assert journal_place.schema_version() == len(MIGRATIONS)


def _newer_journal(path: Path) -> None:
    Journal(path, FakeClock()).close()
    set_schema_version(path, len(MIGRATIONS) + 1)


def test_a_journal_newer_than_the_code_is_refused_with_a_readable_error(journal_place, clock):
    journal_place.open(clock).close()
    journal_place.set_schema_version(len(MIGRATIONS) + 1)
    with pytest.raises(JournalError, match="newer than this efm-gateway knows") as caught:
        journal_place.open(clock)
    assert f"schema version {len(MIGRATIONS) + 1}" in str(caught.value)
    assert "run the newer efm-gateway or restore a backup" in str(caught.value)
    assert journal_place.schema_version() == len(MIGRATIONS) + 1, "the refused journal must be left as it was"


def test_a_journal_newer_than_the_code_is_one_line_on_the_command_line(tmp_path, clock):
    config = write_config(tmp_path)
    state = tmp_path / "var" / "state"
    state.mkdir(parents=True)
    _newer_journal(state / "journal.sqlite")
    with pytest.raises(GatewayError):
        Journal(state / "journal.sqlite", clock)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "newer than this efm-gateway knows" in result.stderr


# ---- the single-instance lock --------------------------------------------------------------------------

_HOLDER = """
import sys
from pathlib import Path
from gateway.journal.lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_instance_is_refused_with_the_holders_pid(tmp_path):
    lock_path = tmp_path / "efm-gateway.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        second = InstanceLock(lock_path)
        with pytest.raises(JournalError) as caught:
            second.acquire()
        message = str(caught.value)
        assert f"pid {holder.pid}" in message
        assert str(tmp_path) in message
        assert "folders.state" in message
        # The refused attempt did not overwrite the holder's pid.
        assert lock_path.read_text().strip() == str(holder.pid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    # A killed holder leaves no lock behind.
    after = InstanceLock(lock_path)
    after.acquire()
    try:
        assert lock_path.read_text() == str(os.getpid())
    finally:
        after.release()


def test_the_lock_is_exclusive_within_one_process_too_and_free_after_release(tmp_path):
    lock_path = tmp_path / "efm-gateway.lock"
    first = InstanceLock(lock_path)
    first.acquire()
    with pytest.raises(JournalError, match=f"pid {os.getpid()}"):
        InstanceLock(lock_path).acquire()
    first.release()
    second = InstanceLock(lock_path)
    second.acquire()
    second.release()


# ---- status files follow the journal -------------------------------------------------------------------


def test_a_lost_status_file_write_is_redone(journal, clock, tmp_path):
    writer = StatusWriter(journal, tmp_path, clock)
    record = _message(journal, Phase.SENT)
    journal.add_event(record.row, Status.OPPRETTET)
    writer.flush()
    assert _history(_status_file(tmp_path, record)) == ["OPPRETTET"]

    clock.advance(5)
    journal.add_event(record.row, Status.MOTTATT)
    (tmp_path / record.status_name).unlink()  # the write of this change is lost
    assert writer.flush() == 1
    assert _history(_status_file(tmp_path, record)) == ["OPPRETTET", "MOTTATT"]


def test_a_change_committed_before_a_crash_is_written_at_the_next_start(journal_place, tmp_path, clock):
    status = tmp_path / "status"
    status.mkdir()
    journal = journal_place.open(clock)
    record = _message(journal, Phase.SENT)
    journal.add_event(record.row, Status.OPPRETTET)
    journal.add_event(record.row, Status.LEVERT)
    journal.close()  # the crash: committed, never written
    assert not (status / record.status_name).exists()

    restarted = journal_place.open(clock)
    try:
        assert StatusWriter(restarted, status, clock).flush() == 1
        root = _status_file(status, record)
        assert root.findtext("s:current", namespaces=NS) == "LEVERT"
        assert restarted.dirty() == []
    finally:
        restarted.close()


def test_a_change_made_while_a_file_is_written_stays_dirty(journal, clock, tmp_path):
    writer = StatusWriter(journal, tmp_path, clock)
    record = _message(journal, Phase.SENT)
    journal.add_event(record.row, Status.OPPRETTET)
    [stale] = journal.dirty()
    writer.write_many([stale])  # the file as of `stale`
    clock.advance(5)
    journal.add_event(record.row, Status.MOTTATT)  # arrives while that file is being written
    journal.mark_clean([stale])

    [still_dirty] = journal.dirty()
    assert still_dirty.row == record.row
    assert still_dirty.status_dirty == 1
    assert writer.flush() == 1
    assert _history(_status_file(tmp_path, record)) == ["OPPRETTET", "MOTTATT"]
    assert journal.dirty() == []


def test_a_phase_change_marks_the_status_file_for_rewriting(journal, clock, tmp_path):
    writer = StatusWriter(journal, tmp_path, clock)
    record = _message(journal, Phase.SENDING)
    journal.add_event(record.row, Status.OPPRETTET)
    writer.flush()
    journal.move(record.row, Phase.SENT, channel="DPO", route_reason="receiver has a DPO record")
    assert [r.row for r in journal.dirty()] == [record.row]
    writer.flush()
    root = _status_file(tmp_path, record)
    assert root.findtext("s:route/s:channel", namespaces=NS) == "DPO"
    assert root.findtext("s:route/s:reason", namespaces=NS) == "receiver has a DPO record"


def test_due_rows_finds_due_messages_with_and_without_exclusions(journal_place, clock):
    journal = journal_place.open(clock)
    try:
        rows = [
            journal.create(direction="out", message_id=f"m{i}", status_name=f"s{i}.xml", phase=Phase.ACCEPTED).row
            for i in range(3)
        ]
        journal.update(rows[2], next_attempt_at=clock.now().timestamp() + 60)  # backing off: not due yet
        now = clock.now().timestamp()
        assert journal.due_rows((Phase.ACCEPTED,), now, 10, exclude=set()) == rows[:2]
        assert journal.due_rows((Phase.ACCEPTED,), now, 10, exclude={rows[0]}) == [rows[1]]
        assert journal.due_rows((Phase.ACCEPTED,), now, 1, exclude=set()) == [rows[0]]
        # Never tried (no next attempt) comes before a retry that is due, on either engine.
        assert journal.due_rows((Phase.ACCEPTED,), now + 61, 10, exclude=set()) == rows
    finally:
        journal.close()


def test_due_for_poll_takes_the_messages_waiting_longest_first_over_every_phase_asked(journal, clock):
    sent = [_message(journal, Phase.SENT, channel="DPF") for _ in range(3)]
    delivered = _message(journal, Phase.DELIVERED, channel="DPF")
    _message(journal, Phase.SENT, channel="DPO")  # another channel's
    now = clock.now().timestamp()
    journal.set_next_polls({sent[0].row: now + 30, sent[1].row: now - 20, sent[2].row: None, delivered.row: now - 40})
    due = journal.due_for_poll("DPF", ["sent", "delivered"], now, limit=10)
    assert [record.row for record in due] == [delivered.row, sent[1].row]
    [first] = journal.due_for_poll("DPF", ["sent", "delivered"], now, limit=1)
    assert first.row == delivered.row
    assert journal.next_poll_of(sent[2].row) is None
