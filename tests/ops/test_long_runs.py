"""A long run that keeps moving is not a hung one: a status round over many requests (a tax authority's evening of
letters on a slow machine) beats with each answer, so the watchdog, which stops systemd's watchdog for a worker
that has not beaten for its interval and a grace, does not take it for hung. A run that stands still still is."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpv.channel import DPV_CAPABILITIES
from gateway.clock import FakeClock
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.ops.health import Heartbeats
from gateway.outbound.status_poller import StatusPoller
from gateway.progress import progress
from gateway.receipts.writer import StatusWriter

GRACE = 30.0
INTERVAL = 1.0


class Beats:
    """Heartbeats on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.heartbeats = Heartbeats(GRACE, monotonic=lambda: self.now)
        self.heartbeats.register("status-poll", INTERVAL)

    def late(self) -> bool:
        return any(worker.name == "status-poll" for worker in self.heartbeats.late())


class SlowChannel:
    """Answers one message per request, each request taking 5 s of the heartbeats' clock."""

    name = "DPV"
    capabilities = dataclasses.replace(DPV_CAPABILITIES, statuses_per_request=1)

    def __init__(self, beats: Beats) -> None:
        self.beats = beats
        self.late_while_running: list[bool] = []

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        self.late_while_running.append(self.beats.late())
        self.beats.now += 5.0
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


def test_progress_outside_a_job_does_nothing():
    progress()  # no job runs on this thread: no error, no beat anywhere
