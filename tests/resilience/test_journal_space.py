"""The journal gives back the space its write-ahead log held, and a failed pick-up check does not skip the
owed status messages in the same round."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from types import SimpleNamespace

from gateway.clock import FakeClock
from gateway.daemon import Daemon
from gateway.journal.phases import Phase
from gateway.journal.store import WAL_SIZE_LIMIT, Journal

PAD = "x" * 20_000


def _big_step(journal: Journal, count: int) -> None:
    with journal.transaction():
        for _ in range(count):
            message_id = str(uuid.uuid4())
            journal.create(direction="in", message_id=message_id, status_name=f"in.{message_id}.xml",
                           phase=Phase.RECEIVED, detail={"pad": PAD})


def test_the_write_ahead_log_shrinks_after_a_checkpoint(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite", FakeClock())
    wal = tmp_path / "journal.sqlite-wal"
    try:
        _big_step(journal, 1000)  # one step of ~20 MB: the log grows past it
        assert wal.stat().st_size > 4 * WAL_SIZE_LIMIT
        _big_step(journal, 1)  # the next commit checkpoints by itself, and the log is cut back
        assert wal.stat().st_size <= WAL_SIZE_LIMIT, "the space the big step took is free again"
        journal.checkpoint()
        assert wal.stat().st_size == 0
        assert len(journal.in_phase(Phase.RECEIVED, limit=2000)) == 1001, "nothing lost on the way"
    finally:
        journal.close()


class _PickUpFails:
    def check_picked_up(self) -> int:
        raise sqlite3.OperationalError("database or disk is full")


class _StatusSender:
    rounds = 0

    def send_due(self) -> int:
        self.rounds += 1
        return 0


def test_a_failed_pick_up_check_still_sends_the_owed_status_messages(tmp_path, caplog):
    daemon = Daemon.__new__(Daemon)
    status_sender = _StatusSender()
    daemon.network = SimpleNamespace(inbox=_PickUpFails(), status_sender=status_sender)
    with caplog.at_level(logging.ERROR, logger="gateway.daemon"):
        daemon._after_delivery()
    assert status_sender.rounds == 1
    [record] = caplog.records
    assert "picked-up messages failed: database or disk is full; the next check tries again" in record.getMessage()
    assert record.exc_info is None, "an expected error: no traceback"
