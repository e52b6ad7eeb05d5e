"""The journal gives back the space its write-ahead log held, and a failed pick-up check does not skip the
owed status messages in the same round."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from types import SimpleNamespace

import pytest

from gateway.clock import FakeClock
from gateway.daemon import Daemon
from gateway.jobs.guard import FullDiskGuard
from gateway.journal.phases import Phase
from gateway.journal.store import WAL_SIZE_LIMIT, Journal

PAD = "x" * 20_000


def _big_step(journal: Journal, count: int) -> None:
    with journal.transaction():
        for _ in range(count):
            message_id = str(uuid.uuid4())
            journal.create(direction="in", message_id=message_id, status_name=f"in.{message_id}.xml",
                           phase=Phase.RECEIVED, detail={"pad": PAD})


@pytest.mark.sqlite_only
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
    daemon.held = None  # one node: the pick-up job also sends the owed status messages
    # As the daemon schedules it: a full disk is said once by the job's guard, however often the check runs.
    pick_up = FullDiskGuard("pick-up", daemon._after_delivery, tmp_path, [])
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            pick_up()
    assert status_sender.rounds == 3
    [record] = caplog.records
    assert record.getMessage().startswith(f"job pick-up: the file system of {tmp_path} (mounted at ")
    assert "(database or disk is full); it runs again at its interval" in record.getMessage()
    assert record.exc_info is None, "an expected error: no traceback"


def test_a_job_on_a_full_disk_says_so_once_and_again_when_it_works(tmp_path, caplog):
    outcomes = [sqlite3.OperationalError("the journal could not commit: database or disk is full")] * 3 + [None]

    def job() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    guarded = FullDiskGuard("status-poll-DPV", job, tmp_path / "state", [tmp_path / "status"])
    with caplog.at_level(logging.INFO, logger="gateway.jobs.guard"):
        for _ in range(4):
            guarded()
    [full, again] = caplog.records
    assert full.levelname == "ERROR" and full.exc_info is None
    assert full.getMessage().startswith(f"job status-poll-DPV: the file system of {tmp_path / 'state'} (mounted at ")
    assert "goes on by itself once there is room" in full.getMessage()
    assert again.levelname == "INFO"
    assert again.getMessage() == f"job status-poll-DPV works again: {tmp_path / 'state'} has room"

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: messages")

    with pytest.raises(sqlite3.OperationalError):  # not a full disk: a bug, with its traceback
        FullDiskGuard("expiry", broken, tmp_path / "state", [])()
