"""A long run that keeps moving is not a hung one: a status round over many requests (a tax authority's evening of
letters on a slow machine) beats with each answer, so the watchdog, which stops systemd's watchdog for a worker
that has not beaten for its interval and a grace, does not take it for hung. A run that stands still still is."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.channels.dpv.channel import DPV_CAPABILITIES
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.contract.statuses import Status
from gateway.folders import prepare_folders
from gateway.inbound.inbox import Inbox
from gateway.inbound.status_sender import StatusSender
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.ops.health import Heartbeats
from gateway.outbound.status_poller import StatusPoller
from gateway.progress import progress
from gateway.receipts import writer as writer_module
from gateway.receipts.writer import StatusWriter
from tests.foundation.drops import write_config

GRACE = 30.0
INTERVAL = 1.0


class Beats:
    """Heartbeats on a clock the test moves."""

    def __init__(self, worker: str = "status-poll") -> None:
        self.now = 0.0
        self.worker = worker
        self.heartbeats = Heartbeats(GRACE, monotonic=lambda: self.now)
        self.heartbeats.register(worker, INTERVAL)

    def late(self) -> bool:
        return any(worker.name == self.worker for worker in self.heartbeats.late())


class FiveSecondsACall:
    """A channel whose every call takes 5 s of the heartbeats' clock, noting whether the job was late at each."""

    def __init__(self, beats: Beats) -> None:
        self.beats = beats
        self.late_while_running: list[bool] = []

    def _took_five_seconds(self) -> None:
        self.late_while_running.append(self.beats.late())
        self.beats.now += 5.0


class SlowChannel(FiveSecondsACall):
    """Answers one message per request."""

    name = "DPV"
    capabilities = dataclasses.replace(DPV_CAPABILITIES, statuses_per_request=1)

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        self._took_five_seconds()
        return [StatusUpdate(message.message_id, "LEVERT", datetime.now(UTC), "published") for message in sent]


@pytest.fixture
def poller_and_beats(tmp_path):
    clock = FakeClock()
    journal = Journal(tmp_path / "journal.db", clock)
    statuses = StatusWriter(journal, tmp_path, clock)
    for index in range(20):
        message_id = f"00000000-0000-4000-8000-{index:012d}"
        record = journal.create(direction="out", message_id=message_id, status_name=f"m.{message_id}.xml",
                                phase=Phase.ACCEPTED, drop_name="m")
        journal.move(record.row, Phase.SENDING, channel="DPV", detail={"reference": f"r-{index}"})
        journal.move(record.row, Phase.SENT)
    beats = Beats()
    channel = SlowChannel(beats)
    # One request at a time: the round takes 20 x 5 s = 100 s, far past the interval and its grace.
    poller = StatusPoller(journal, statuses, clock, channel, batch=100, in_flight=1)
    clock.advance(60)
    yield poller, beats, channel
    statuses.close()
    journal.close()


def test_a_long_status_round_that_moves_is_never_late(poller_and_beats):
    poller, beats, channel = poller_and_beats
    beats.heartbeats.beating("status-poll", poller.poll)()
    assert beats.now >= 100.0, "the round was meant to outlast the grace"
    assert channel.late_while_running and not any(channel.late_while_running)
    assert not beats.late()


def test_a_run_that_says_nothing_while_it_stands_still_is_late():
    beats = Beats()

    def stuck() -> None:
        beats.now += 100.0  # a request that hangs: no progress() call
        assert beats.late()

    beats.heartbeats.beating("status-poll", stuck)()
    assert not beats.late()  # it beat when the run ended


class SlowStatusChannel(FiveSecondsACall):
    """Takes each status message in one call."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def send_status(self, sbd) -> None:
        self._took_five_seconds()


def test_owed_status_messages_sent_for_longer_than_the_grace_are_never_late(tmp_path):
    """The archive took a day's post at once: the job that sends the LEVERTs owed runs for minutes, and moves."""
    clock = FakeClock()
    journal = Journal(tmp_path / "journal.db", clock)
    for index in range(12):
        record = journal.create(
            direction="in", message_id=f"00000000-0000-4000-8000-{index:012d}", status_name=f"in.{index}.xml",
            phase=Phase.RECEIVED, sender="910075918", receiver="991825827",
            conversation_id=f"10000000-0000-4000-8000-{index:012d}",
            process="urn:no:difi:profile:arkivmelding:administrasjon:ver1.0", channel="DPO",
            deadline=clock.now() + timedelta(hours=1),
        )
        journal.queue_status_send(record.row, Status.LEVERT)
    beats = Beats("pick-up")
    channel = SlowStatusChannel(beats)
    sender = StatusSender(journal, clock, {"DPO": channel}, "991825827", workers=1)
    try:
        beats.heartbeats.beating("pick-up", sender.send_due)()
    finally:
        sender.close()
        journal.close()
    assert beats.now >= 60.0, "the job was meant to outlast the grace"
    assert len(channel.late_while_running) == 12
    assert not any(channel.late_while_running), "a job that moves is not taken for hung"


def test_messages_taken_from_the_inbox_for_longer_than_the_grace_are_never_late(tmp_path):
    """The archive took a day's post at once on a slow disk: each pick-up noted is a step of the journal's, and the
    job noting them moves, however long they take all together."""
    config = load_config(write_config(tmp_path))
    prepare_folders(config)
    clock = FakeClock()
    journal = Journal(config.folders.journal_path, clock)
    for index in range(12):
        record = journal.create(direction="in", message_id=f"00000000-0000-4000-8000-{index:012d}",
                                status_name=f"in.{index}.xml", phase=Phase.RECEIVED, channel="DPO",
                                detail={"inbox_folder": f"brev-{index}"})
        journal.move(record.row, Phase.IN_INBOX)  # and the archive system has taken its folder already
    beats = Beats("pick-up")
    late_at_each_step: list[bool] = []
    step = journal.transaction

    depth = [0]

    @contextlib.contextmanager
    def five_seconds_a_step():
        if depth[0] == 0:  # a step's own statements are steps nested in it
            late_at_each_step.append(beats.late())
            beats.now += 5.0
        depth[0] += 1
        try:
            with step():
                yield
        finally:
            depth[0] -= 1

    journal.transaction = five_seconds_a_step
    statuses = StatusWriter(journal, config.folders.status, clock)
    inbox = Inbox(config, journal, statuses)
    try:
        check = beats.heartbeats.beating("pick-up", inbox.check_picked_up)
        check()  # gone once: it could be the share's hiccup
        check()  # gone twice in a row: taken
        taken = journal.in_phase(Phase.TAKEN)
    finally:
        journal.transaction = step
        statuses.close()
        journal.close()
    assert beats.now >= 60.0, "the job was meant to outlast the grace"
    assert len(taken) == 12, "every message the archive took is noted"
    assert len(late_at_each_step) >= 12 and not any(late_at_each_step), "a job that moves is not taken for hung"


def test_progress_outside_a_job_does_nothing():
    progress()  # no job runs on this thread: no error, no beat anywhere


class SlowDisk:
    """Status files that take `seconds` each to write; `stand_still` makes every write wait until it is cleared."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
        self.seconds = seconds
        self.moving = threading.Event()
        self.moving.set()
        self.started = threading.Event()
        real = writer_module._write_synced

        def slow(path: str, content: bytes, group: int | None = None) -> BaseException | None:
            self.started.set()
            self.moving.wait()
            time.sleep(self.seconds)
            return real(path, content, group)

        monkeypatch.setattr(writer_module, "_write_synced", slow)
        monkeypatch.setattr(writer_module, "WAIT_LOOK_SECONDS", 0.1)


@pytest.fixture
def many_dirty(tmp_path):
    journal = Journal(tmp_path / "journal.db", FakeClock())
    for index in range(240):
        message_id = f"00000000-0000-4000-8000-{index:012d}"
        journal.create(direction="out", message_id=message_id, status_name=f"m.{message_id}.xml",
                       phase=Phase.ACCEPTED, drop_name="m")
    statuses = StatusWriter(journal, tmp_path, FakeClock())
    yield statuses
    statuses.close()
    journal.close()


def _late_while_waiting(statuses: StatusWriter, disk: SlowDisk) -> list[bool]:
    """Another thread flushes the 240 files; meanwhile the job status-flush (grace 1 s) asks for a flush of its
    own and waits. How the job looked at every 50 ms of its wait."""
    heartbeats = Heartbeats(1.0)
    heartbeats.register("status-flush", 0.1)
    holder = threading.Thread(target=statuses.flush)
    holder.start()
    assert disk.started.wait(10)
    waiter = threading.Thread(target=heartbeats.beating("status-flush", statuses.flush))
    waiter.start()
    looks = []
    while waiter.is_alive() and len(looks) < 200:
        looks.append(any(worker.name == "status-flush" for worker in heartbeats.late()))
        time.sleep(0.05)
        if len(looks) == 60:
            disk.moving.set()  # a flush that stood still for 3 s moves again
    holder.join(30)
    waiter.join(30)
    return looks


def test_a_job_waiting_for_a_flush_that_writes_is_never_late(many_dirty, monkeypatch):
    disk = SlowDisk(monkeypatch, seconds=0.1)  # 240 files on 8 threads: about 3 s, three times the grace
    looks = _late_while_waiting(many_dirty, disk)
    assert len(looks) >= 40, "the wait was meant to outlast the grace"
    assert not any(looks)
    assert len(list(many_dirty.folder.glob("m.*.xml"))) == 240


def test_a_job_waiting_for_a_flush_that_stands_still_is_late(many_dirty, monkeypatch):
    disk = SlowDisk(monkeypatch, seconds=0.0)
    disk.moving.clear()  # the first writes hang (an NFS server gone)
    looks = _late_while_waiting(many_dirty, disk)
    assert any(looks[:60]), "a wait on a flush that writes nothing must show as late"
    assert len(list(many_dirty.folder.glob("m.*.xml"))) == 240  # and once it moves, everything is written


def _failing_job(error: BaseException):  # type: ignore[no-untyped-def]
    from gateway.daemon import Daemon

    daemon = Daemon.__new__(Daemon)  # only its job wrapper is under test
    daemon.journal = None

    def run() -> None:
        raise error

    return daemon._unless_journal_down("status-poll-DPV", run)


def test_a_job_whose_step_the_database_gave_up_says_so_in_one_line(caplog):
    """A node woken from a long stall finds its session ended by the server: the step's commit fails. That is an
    expected condition (the next run tries again), one line, no traceback."""
    from gateway.journal.commit import CommitFailed

    caplog.set_level(logging.INFO)
    _failing_job(CommitFailed("the journal could not commit: the database rolled the transaction back"))()
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "job status-poll-DPV: the journal did not take this run's step" in record.getMessage()


def test_a_job_whose_commit_found_the_disk_full_is_left_to_the_full_disk_guard():
    from gateway.journal.commit import CommitFailed

    with pytest.raises(CommitFailed):
        _failing_job(CommitFailed("the journal could not commit: database or disk is full"))()


@pytest.mark.parametrize(("error", "level"), [
    ("the journal could not commit: the database rolled the transaction back", "WARNING"),
    ("the journal could not commit: database or disk is full", "ERROR"),
])
def test_status_files_the_journal_could_not_note_are_one_line_by_their_cause(many_dirty, monkeypatch, caplog,
                                                                            error, level):
    """The files are written, the journal's note of it fails: they are written again at the next flush. A woken
    node's commit the database gave up mends itself (a warning); a full disk under the journal is an error."""
    from gateway.journal.commit import CommitFailed

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise CommitFailed(error)

    monkeypatch.setattr(many_dirty.journal, "mark_clean", refused)
    caplog.set_level(logging.INFO)
    many_dirty.flush()
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelname == level and record.exc_info is None
    assert "the journal could not note it" in record.getMessage()
    assert len(list(many_dirty.folder.glob("m.*.xml"))) == 240
    assert len(many_dirty.journal.dirty(1000)) == 240  # still owed: the next flush writes them again
