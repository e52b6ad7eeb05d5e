"""The journal's side doors on both engines: the operators' read-only view (status, the operator page), their
writes (retry, cancel, release), and the dry run's look-up, each opened on the engine of the configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.errors import JournalError
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.operator import OperatorJournal
from gateway.journal.overview import JournalView, MessageFilter
from gateway.journal.phases import Phase
from gateway.journal.reader import JournalReader


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(journal_place, clock):
    opened = journal_place.open(clock)
    yield opened
    opened.close()


def _sent(journal, drop_name: str, channel: str, receiver: str):
    message_id = str(uuid.uuid4())
    record = journal.create(direction="out", message_id=message_id, status_name=f"{message_id}.xml",
                            phase=Phase.ACCEPTED, drop_name=drop_name, channel=channel, receiver=receiver)
    journal.add_event(record.row, Status.OPPRETTET)
    journal.move(record.row, Phase.SENDING)
    return journal.move(record.row, Phase.SENT)


def test_the_operators_view(journal_place, journal):
    first = _sent(journal, "sak_100%_ferdig", "DPO", "0192:910075918")
    _sent(journal, "other", "DPF", "910075918")
    view = JournalView(journal_place.engine())
    try:
        assert view.counts() == {"sent": 2}
        assert view.counts_by_channel() == {"DPO": {"sent": 1}, "DPF": {"sent": 1}}
        [line] = view.messages(MessageFilter(drop_name="100%", channel="dpo"))
        assert line.record.row == first.row and line.current == Status.OPPRETTET
        assert len(view.messages(MessageFilter(receiver="910075918", state="open"))) == 2
        assert [record.row for record in view.find(first.message_id[:12].upper())] == [first.row]
        assert [event.status for event in view.events(first.row)] == [Status.OPPRETTET]
    finally:
        view.close()


def test_the_operators_writes(journal_place, journal, clock):
    record = _sent(journal, "d", "DPO", "910075918")
    journal.add_event(record.row, Status.FEIL, description="refused")
    journal.move(record.row, Phase.FAILED)
    operator = OperatorJournal(journal_place.engine(), clock)
    try:
        with operator.step():
            [found] = operator.find(record.message_id)
            operator.change(found, Phase.ACCEPTED, attempts=0, next_attempt_at=None)
            operator.retire_failure(found.row, "sent again by the operator")
            operator.add_event(found.row, Status.ANNET, "again", at=datetime(2026, 12, 7, tzinfo=UTC))
        assert operator.statuses(record.row) == {Status.OPPRETTET, Status.ANNET}
        with pytest.raises(JournalError, match="cannot go from accepted to in_inbox"), operator.step():
            operator.change(operator.live("out", record.message_id), Phase.IN_INBOX)
    finally:
        operator.close()
    after = journal.get(record.row)
    assert after.phase == Phase.ACCEPTED and after.finished_at is None
    assert after.status_dirty > record.status_dirty


def test_the_dry_runs_look_up(journal_place, journal):
    record = _sent(journal, "d", "DPO", "910075918")
    reader = JournalReader(journal_place.engine())
    try:
        assert reader.find_live("out", record.message_id) == journal.get(record.row)
        assert reader.find_live("in", record.message_id) is None
    finally:
        reader.close()


def test_a_journal_of_another_version_is_refused_by_the_side_doors(journal_place, journal, clock):
    journal_place.set_schema_version(len(MIGRATIONS) + 1)
    with pytest.raises(JournalError, match="newer than this efm-gateway knows"):
        JournalView(journal_place.engine())
    with pytest.raises(JournalError, match="run the efm-gateway command of the same version as the daemon"):
        OperatorJournal(journal_place.engine(), clock)
