"""The status poller takes the open messages whose poll is due, a batch per round, those due longest
first: every open message is reached in turn, a round never asks for more than its batch, finished ones
drop out, and a channel's failure is one line and the next round goes on."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpv.channel import DPV_CAPABILITIES
from gateway.clock import FakeClock
from gateway.errors import RetryableChannelError
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.outbound.status_poller import StatusPoller
from gateway.receipts.writer import StatusWriter


class CountingChannel:
    """A channel that answers a whole batch in one request: what is tested here is the walk."""

    name = "DPV"
    capabilities = dataclasses.replace(DPV_CAPABILITIES, statuses_per_request=10_000)

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.delivered: set[str] = set()
        self.down = False

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        if self.down:
            raise RetryableChannelError("network error (ConnectError: connection refused)")
        self.batches.append([message.message_id for message in sent])
        return [
            StatusUpdate(message.message_id, "LEVERT", datetime.now(UTC), "published")
            for message in sent if message.message_id in self.delivered
        ]


ROUND_SECONDS = 30.0  # DPV's status_poll_seconds: the time between two rounds


def rounds(poller: StatusPoller, clock: FakeClock, count: int = 1) -> None:
    """`count` rounds, each a round's time after the one before (or after the messages were sent)."""
    for _ in range(count):
        clock.advance(ROUND_SECONDS)
        poller.poll()


@pytest.fixture
def setting(tmp_path):
    clock = FakeClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock)
    statuses = StatusWriter(journal, tmp_path, clock)
    yield clock, journal, statuses
    statuses.close()
    journal.close()


def _open_messages(journal: Journal, count: int, channel: str = "DPV") -> list[str]:
    ids = []
    for index in range(count):
        message_id = f"00000000-0000-4000-8000-{index:012d}"
        record = journal.create(direction="out", message_id=message_id, status_name=f"m.{message_id}.xml",
                                phase=Phase.ACCEPTED, drop_name="m")
        journal.move(record.row, Phase.SENDING, channel=channel,
                     detail={"reference": f"corr-{index}", "expects_receipt": True})
        journal.move(record.row, Phase.SENT)
        ids.append(message_id)
    return ids


def test_rounds_walk_every_open_message_in_batches_and_start_over(setting):
    clock, journal, statuses = setting
    ids = _open_messages(journal, 450)
    journal.create(direction="out", message_id="00000000-0000-4000-9000-000000000001", status_name="dpo.xml",
                   phase=Phase.ACCEPTED, drop_name="dpo")  # not on DPV: never polled there
    channel = CountingChannel()
    poller = StatusPoller(journal, statuses, clock, channel, batch=200)
    rounds(poller, clock, 3)
    # Three quarters of a batch for messages waiting for LEVERT (a quarter kept for the late walk).
    assert [len(batch) for batch in channel.batches] == [150, 150, 150]
    assert sorted(message for batch in channel.batches for message in batch) == ids, "each once in a walk"
    rounds(poller, clock)
    assert channel.batches[3] == ids[:150], "the walk starts over after the last batch"


def test_messages_that_reached_levert_leave_the_walk_unless_lest_may_follow(setting):
    clock, journal, statuses = setting
    ids = _open_messages(journal, 10)
    channel = CountingChannel()
    channel.delivered = set(ids[:4])
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    clock.advance(ROUND_SECONDS)
    assert poller.poll() == 4
    assert [journal.find_live("out", i).phase for i in ids[:4]] == [Phase.DELIVERED] * 4
    rounds(poller, clock)
    assert sorted(channel.batches[1]) == ids, "delivered messages stay polled: LEST may come"
    clock.advance(31 * 86400)
    poller.poll()
    assert channel.batches[2] == ids[4:], "after the watch period only the undelivered are polled"


def test_the_late_walk_keeps_its_share_when_many_wait_for_levert(setting):
    clock, journal, statuses = setting
    ids = _open_messages(journal, 20)
    channel = CountingChannel()
    channel.delivered = set(ids[:5])
    poller = StatusPoller(journal, statuses, clock, channel, batch=8)
    rounds(poller, clock)  # ids 0-5 of those waiting for LEVERT; five of them are delivered now
    channel.batches.clear()
    poller.poll()
    [batch] = channel.batches
    waiting, late = batch[:6], batch[6:]
    assert waiting == ids[6:12] and late == ids[:2], "six for LEVERT, two kept for the delivered ones"


def test_a_channel_failure_is_one_warning_and_the_next_round_goes_on(setting, caplog):
    clock, journal, statuses = setting
    _open_messages(journal, 5)
    channel = CountingChannel()
    channel.down = True
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    with caplog.at_level(logging.WARNING):
        assert poller.poll() == 0
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "polling DPV for the statuses of 5 message(s) failed" in line.getMessage() and line.exc_info is None
    channel.down = False
    poller.poll()
    assert len(channel.batches) == 1 and len(channel.batches[0]) == 5


class OneAtATimeChannel:
    """Like Altinn Correspondence: one request per message's status, each taking a while on the wire."""

    name = "DPV"
    capabilities = DPV_CAPABILITIES

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.failing = failing
        self.asked: list[str] = []
        self.on_the_wire = 0
        self.most_on_the_wire = 0
        self._lock = threading.Lock()

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        [message] = sent
        with self._lock:
            self.asked.append(message.message_id)
            self.on_the_wire += 1
            self.most_on_the_wire = max(self.most_on_the_wire, self.on_the_wire)
        time.sleep(0.05)
        with self._lock:
            self.on_the_wire -= 1
        if message.message_id in self.failing:
            raise RetryableChannelError("network error (ReadTimeout)")
        return [StatusUpdate(message.message_id, "LEVERT", datetime.now(UTC), "published")]


def test_a_batch_is_asked_a_request_per_message_with_up_to_in_flight_on_the_wire_at_once(setting):
    clock, journal, statuses = setting
    ids = _open_messages(journal, 60)
    channel = OneAtATimeChannel()
    poller = StatusPoller(journal, statuses, clock, channel, batch=80, in_flight=12)
    assert poller.poll() == 60
    assert sorted(channel.asked) == ids
    assert channel.most_on_the_wire == 12
    assert {record.phase for message_id in ids for record in journal.find(message_id)} == {Phase.DELIVERED}


def test_requests_that_fail_lose_only_their_own_messages_statuses_in_the_round(setting, caplog):
    clock, journal, statuses = setting
    ids = _open_messages(journal, 10)
    channel = OneAtATimeChannel(failing={ids[3], ids[7]})
    poller = StatusPoller(journal, statuses, clock, channel, batch=20, in_flight=4)
    with caplog.at_level(logging.WARNING):
        assert poller.poll() == 8
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "2 of 10 requests failed" in line.getMessage() and line.exc_info is None
