"""DPI's receipts written down in the journal (channel_receipts, on both engines) before Corner 2 is told they
are read: handed to the status poller when their letter is asked about, gone when it is asked about again,
handed again after a restart, and dropped after their time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.channels.dpi.kept_receipts import JournalReceipts, MemoryReceipts
from gateway.channels.dpi.receipts import Receipt
from gateway.clock import FakeClock


def receipt(message_id: str, kind: str = "leveringskvittering", minute: int = 0) -> Receipt:
    status = {"leveringskvittering": "LEVERT", "aapningskvittering": "LEST"}[kind]
    return Receipt(kind, message_id, "c-1", datetime(2026, 12, 7, 10, minute, tzinfo=UTC), status,
                   f"{kind}: æøå words", "0192:944444505", {"beskrivelse": "x"})


@pytest.fixture
def journal(journal_place):
    opened = journal_place.open(FakeClock())
    yield opened
    opened.close()


def test_kept_receipts_come_back_whole_once_per_round_and_go_when_asked_again(journal) -> None:
    kept = JournalReceipts(journal)
    first, opened = receipt("m-1"), receipt("m-1", "aapningskvittering", 5)
    kept.keep([first, opened, receipt("m-2")], now=100.0)
    kept.keep([first], now=101.0)  # taken twice from Corner 2: kept once
    assert kept.take(["m-1"]) == [first, opened]
    assert kept.take(["m-1"]) == []  # asked again: the earlier round applied them, and they are gone
    assert journal.query("SELECT message_id FROM channel_receipts") == [("m-2",)]


def test_what_was_handed_before_a_crash_is_handed_again_after_the_restart(journal) -> None:
    kept = JournalReceipts(journal)
    kept.keep([receipt("m-1")], now=100.0)
    assert len(kept.take(["m-1"])) == 1
    restarted = JournalReceipts(journal)  # the process died before the round's statuses were written
    assert restarted.take(["m-1"]) == [receipt("m-1")]


def test_receipts_whose_letter_is_never_asked_about_expire(journal) -> None:
    kept = JournalReceipts(journal)
    kept.keep([receipt("old")], now=100.0)
    kept.keep([receipt("new")], now=200.0)
    assert kept.expire(150.0) == 1
    assert [r.message_id for r in kept.take(["old", "new"])] == ["new"]


def test_in_memory_without_a_journal() -> None:
    kept = MemoryReceipts()
    kept.keep([receipt("m-1"), receipt("m-2")], now=100.0)
    assert kept.take(["m-1"]) == [receipt("m-1")] and kept.take(["m-1"]) == []
    assert kept.expire(150.0) == 1 and kept.take(["m-2"]) == []
