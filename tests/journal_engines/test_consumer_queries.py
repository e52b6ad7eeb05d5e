"""Every consumer's queries of the journal, on both engines: the sender's due rows, the status sender's owed
statuses, the jobs' expiry, retention and cursors, the inbox pick-up look-up, the operator's released messages,
the originals of sent messages and the counted transfer failures. The same answers from SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.journal import originals, transfer_failures
from gateway.journal.claims import Claims, HeldClaims
from gateway.journal.phases import Phase


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(journal_place, clock):
    opened = journal_place.open(clock)
    yield opened
    opened.close()


def _out(journal, **fields):
    message_id = str(uuid.uuid4())
    return journal.create(direction="out", message_id=message_id, status_name=f"{message_id}.xml",
                          phase=Phase.ACCEPTED, drop_name="d", **fields)


def _in(journal, **fields):
    message_id = str(uuid.uuid4())
    return journal.create(direction="in", message_id=message_id, status_name=f"{message_id}.xml",
                          phase=Phase.RECEIVED, **fields)


def test_the_senders_rows(journal, clock):
    now = clock.now().timestamp()
    fresh, later, elsewhere = _out(journal, channel="DPO"), _out(journal, channel="DPO"), _out(journal, channel="DPF")
    journal.update(later.row, next_attempt_at=now + 300)
    assert journal.in_phase(Phase.ACCEPTED, due_before=now) == [journal.get(fresh.row), journal.get(elsewhere.row)]
    assert journal.due_rows((Phase.ACCEPTED,), now, 10, exclude=set(), exclude_channels={"DPF"}) == [fresh.row]
    assert journal.next_waiting_row((Phase.ACCEPTED,), "DPO", exclude={fresh.row}) == later.row
    assert journal.make_due((Phase.ACCEPTED,), "DPO") == 1
    assert journal.get(later.row).next_attempt_at == now


def test_the_status_senders_owed_statuses(journal, clock):
    received = _in(journal)
    journal.queue_status_send(received.row, Status.MOTTATT)
    journal.queue_status_send(received.row, Status.MOTTATT)  # owed once
    [(record, status, attempts)] = journal.due_status_sends()
    assert (record.row, status, attempts) == (received.row, Status.MOTTATT, 0)
    journal.status_send_later(received.row, Status.MOTTATT, clock.now().timestamp() + 60)
    assert journal.due_status_sends() == []
    clock.advance(61)
    [(_, _, attempts)] = journal.due_status_sends()
    assert attempts == 1
    journal.status_send_done(received.row, Status.MOTTATT)
    assert journal.due_status_sends() == []


def test_the_jobs_expiry_retention_and_cursors(journal, clock):
    overdue = _out(journal, )
    journal.update(overdue.row)
    past = journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="past.xml",
                          phase=Phase.ACCEPTED, deadline=clock.now() - timedelta(hours=1))
    delivered = journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="delivered.xml",
                               phase=Phase.ACCEPTED, deadline=clock.now() - timedelta(hours=1))
    journal.add_event(delivered.row, Status.LEVERT)
    now = clock.now().timestamp()
    assert [r.row for r in journal.open_past_deadline(now, (Phase.ACCEPTED,))] == [past.row]

    finished = journal.move(past.row, Phase.EXPIRED)
    journal.queue_status_send(finished.row, Status.LEVETID_UTLOPT)
    clock.advance(3600)
    assert [r.row for r in journal.purge_finished(clock.now().timestamp())] == [past.row]
    assert journal.find(past.message_id) == []
    assert journal.due_status_sends() == [], "a purged message's owed statuses go with it"

    assert journal.cursor("status-poll-DPF") == 0
    journal.set_cursor("status-poll-DPF", 41)
    journal.set_cursor("status-poll-DPF", 42)
    assert journal.cursor("status-poll-DPF") == 42


def test_retention_takes_a_purged_messages_claims_but_not_a_live_one(journal, clock):
    held = HeldClaims(Claims(journal, "node-1", clock))
    gone = journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="gone.xml", phase=Phase.ACCEPTED)
    kept = journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="kept.xml", phase=Phase.ACCEPTED)
    for work in (f"send:{gone.row}", f"poll:{gone.row}", f"status-send:{gone.row}:LEVERT", f"send:{kept.row}"):
        held.let_go(held.take(work))
    late = held.take(f"poll:{gone.row}2")  # another message's claim whose work starts with the same digits
    still_held = held.take(f"status-send:{gone.row}:LEST")  # a node is writing about it right now
    journal.move(gone.row, Phase.FAILED)
    clock.advance(3600)
    held.renew()  # its lease kept up, as the node's job does
    assert [r.row for r in journal.purge_finished(clock.now().timestamp())] == [gone.row]
    left = sorted(work for (work,) in journal.query("SELECT work FROM claims"))
    assert left == sorted([f"send:{kept.row}", f"poll:{gone.row}2", f"status-send:{gone.row}:LEST"])
    assert late is not None and still_held is not None


def test_the_inbox_pick_up_and_the_operators_released_messages(journal):
    waiting = _in(journal, channel="DPO", detail={"inbox_folder": "kept-name"})
    journal.move(waiting.row, Phase.IN_INBOX)
    plain = _in(journal, channel="DPO")
    journal.move(plain.row, Phase.IN_INBOX)
    assert sorted(journal.inbox_folders()) == sorted([(waiting.row, "kept-name"), (plain.row, plain.message_id)])
    released = _in(journal, channel="DPO", detail={"released": "2026-12-07T10:00:00+00:00"})
    _in(journal, channel="DPO", detail={"released": None})
    assert [r.row for r in journal.released("DPO")] == [released.row]


def test_a_retired_failure_and_the_last_status_change(journal, clock):
    record = _out(journal)
    journal.add_event(record.row, Status.FEIL, description="the receiver refused it")
    journal.retire_failure(record.row, "sent again by the operator")
    [event] = journal.events(record.row)
    assert event.status == Status.ANNET
    assert event.description == "FEIL: the receiver refused it; sent again by the operator"
    assert journal.last_status_changes([record.row]) == {record.row: clock.now().timestamp()}


def test_the_originals_of_sent_messages_and_counted_transfer_failures(journal, clock, tmp_path):
    work, sent = tmp_path / "work", tmp_path / "sent"
    (work / "claim-1").mkdir(parents=True)
    (work / "claim-1" / "message.xml").write_text("<m/>")
    sent.mkdir()
    now = clock.now().timestamp()
    with journal.transaction():
        originals.note_sent(journal, "claim-1", "message-1", "drop one", now)
        originals.note_sent(journal, "claim-1", "message-1", "drop one", now)  # noted once
    assert [o.claim_id for o in originals.waiting(journal)] == ["claim-1"]
    assert originals.file_away(journal, "claim-1", work, sent, now)
    assert (sent / "drop one" / "message.xml").exists()
    assert originals.waiting(journal) == []
    (sent / "by hand").write_text("put there by hand")
    assert originals.purge_sent(journal, sent, now + 10, keep_seconds=5) == 1  # the sent message's, not the other
    assert sorted(p.name for p in sent.iterdir()) == ["by hand"]

    assert transfer_failures.count(journal, "DPO", "ref-1", "disk said no", now) == 1
    assert transfer_failures.count(journal, "DPO", "ref-1", "disk said no again", now) == 2
    transfer_failures.forget(journal, "DPO", "ref-1")
    assert transfer_failures.count(journal, "DPO", "ref-1", "once more", now) == 1
    assert transfer_failures.purge_older(journal, now + 1) == 1


def test_originals_another_node_moved_a_moment_ago_are_not_an_error(journal, clock, tmp_path, monkeypatch):
    """Two nodes sharing the folders may both reach for the same originals: the one whose rename finds them gone
    lets the other's move stand (no OSError, no ERROR line); a folder still there that cannot be moved still fails."""
    work, sent = tmp_path / "work", tmp_path / "sent"
    (work / "claim-1").mkdir(parents=True)
    (work / "claim-1" / "message.xml").write_text("<x/>")
    sent.mkdir()
    now = clock.now().timestamp()
    with journal.transaction():
        originals.note_sent(journal, "claim-1", "message-1", "drop one", now)
    real_rename = originals.durable_rename

    def other_node_first(source, target):
        real_rename(source, sent / "moved by node-2")  # the other node's move, just before ours
        real_rename(source, target)

    monkeypatch.setattr(originals, "durable_rename", other_node_first)
    assert originals.file_away(journal, "claim-1", work, sent, now) is False
    assert (sent / "moved by node-2" / "message.xml").exists() and not (work / "claim-1").exists()

    (work / "claim-2").mkdir()
    with journal.transaction():
        originals.note_sent(journal, "claim-2", "message-2", "drop two", now)

    def missing_target_folder(source, target):
        raise FileNotFoundError(2, "No such file or directory", str(target))

    monkeypatch.setattr(originals, "durable_rename", missing_target_folder)
    with pytest.raises(FileNotFoundError):
        originals.file_away(journal, "claim-2", work, sent, now)
