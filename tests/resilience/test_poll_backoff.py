"""Status polling backs off for messages whose status has stood still, ends for a message its provider
no longer has, and waits while the channel asked us to: on a fake clock, with the real journal."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpv.channel import DPV_CAPABILITIES
from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.delivery.circuit import Circuits
from gateway.errors import RetryableChannelError
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.outbound.poll_schedule import DAY_SECONDS, PollSchedule
from gateway.outbound.status_poller import StatusPoller
from gateway.receipts.writer import StatusWriter

ROUND = 30.0  # the channel's status_poll_seconds
HOUR = 3600.0


@pytest.mark.parametrize(("unchanged", "every"), [
    (0.0, 0.0), (23 * HOUR, 0.0),
    (1 * DAY_SECONDS, 300.0), (2.9 * DAY_SECONDS, 300.0),
    (3 * DAY_SECONDS, 900.0), (6 * DAY_SECONDS, 900.0),
    (7 * DAY_SECONDS, 1800.0), (29.9 * DAY_SECONDS, 1800.0),
    (30 * DAY_SECONDS, HOUR), (400 * DAY_SECONDS, HOUR),
])
def test_the_schedule_asks_every_round_for_a_day_then_less_often_down_to_hourly_at_30_days(unchanged, every):
    assert PollSchedule().interval(unchanged) == every


def test_a_message_polled_on_a_fake_clock_is_next_due_by_how_long_its_status_stood_still():
    clock = FakeClock()
    changed = clock.now().timestamp()
    schedule = PollSchedule()
    moments = []
    for days in (0.5, 2, 5, 10, 31):
        clock.advance(days * DAY_SECONDS - (clock.now().timestamp() - changed))
        now = clock.now().timestamp()
        moments.append(schedule.next_poll(now, changed) - now)
    assert moments == [0.0, 300.0, 900.0, 1800.0, HOUR]


def test_a_schedule_that_does_not_start_at_zero_or_does_not_rise_is_refused():
    with pytest.raises(ValueError, match="start at 0 s"):
        PollSchedule(((DAY_SECONDS, 60.0),))
    with pytest.raises(ValueError, match="rise"):
        PollSchedule(((0.0, 0.0), (7 * DAY_SECONDS, 60.0), (DAY_SECONDS, 30.0)))


class ScriptedChannel:
    """A polling channel that answers from a script and remembers who it was asked about."""

    name = "DPV"
    capabilities = dataclasses.replace(DPV_CAPABILITIES, statuses_per_request=1000)

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.answers: dict[str, StatusUpdate] = {}
        self.failure: Exception | None = None

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        self.asked.append([message.message_id for message in sent])
        if self.failure is not None:
            raise self.failure
        return [self.answers.pop(message.message_id) for message in sent if message.message_id in self.answers]

    def times_asked(self, message_id: str) -> int:
        return sum(message_id in batch for batch in self.asked)


@pytest.fixture
def setting(tmp_path):
    clock = FakeClock()
    journal = Journal(tmp_path / "journal.sqlite3", clock)
    statuses = StatusWriter(journal, tmp_path, clock)
    yield clock, journal, statuses
    statuses.close()
    journal.close()


def _sent(journal: Journal, message_id: str) -> int:
    record = journal.create(direction="out", message_id=message_id, status_name=f"m.{message_id}.xml",
                            phase=Phase.ACCEPTED, drop_name="m")
    journal.move(record.row, Phase.SENDING, channel="DPV",
                 detail={"reference": f"ref-{message_id}", "expects_receipt": True})
    with journal.transaction():
        journal.move(record.row, Phase.SENT)
        journal.add_event(record.row, Status.SENDT, description="handed to DPV")
    return record.row


def _rounds(poller: StatusPoller, clock: FakeClock, seconds: float) -> None:
    for _ in range(int(seconds // ROUND)):
        clock.advance(ROUND)
        poller.poll()


def test_the_poller_asks_for_fresh_messages_every_round_and_for_old_ones_hourly(setting):
    clock, journal, statuses = setting
    _sent(journal, "old")  # nothing heard for 40 days
    clock.advance(38 * DAY_SECONDS)
    _sent(journal, "quiet")  # nothing heard for 2 days
    clock.advance(2 * DAY_SECONDS)
    _sent(journal, "fresh")
    channel = ScriptedChannel()
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    _rounds(poller, clock, 2 * HOUR)
    assert (channel.times_asked("fresh"), channel.times_asked("quiet"), channel.times_asked("old")) == (240, 24, 2)


def test_a_new_status_makes_an_old_message_asked_for_every_round_again(setting):
    clock, journal, statuses = setting
    row = _sent(journal, "old")
    clock.advance(10 * DAY_SECONDS)  # within the 30 days a delivered message is still watched for LEST
    channel = ScriptedChannel()
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    _rounds(poller, clock, ROUND)
    assert channel.times_asked("old") == 1
    assert journal.next_poll_of(row) == pytest.approx(clock.now().timestamp() + 1800.0)
    clock.advance(1800.0)
    channel.answers["old"] = StatusUpdate("old", "LEVERT", datetime.now(UTC), "published")
    poller.poll()  # LEVERT: it may still be read (LEST), and its status has just changed
    channel.asked.clear()
    _rounds(poller, clock, 10 * ROUND)
    assert channel.times_asked("old") == 10
    assert journal.get(row).phase == Phase.DELIVERED


def test_a_message_its_provider_no_longer_has_gets_annet_and_is_not_asked_for_again(setting):
    clock, journal, statuses = setting
    gone_row = _sent(journal, "gone")
    _sent(journal, "other")
    channel = ScriptedChannel()
    words = "deleted at the provider: Altinn no longer has the correspondence (HTTP 404)"
    channel.answers["gone"] = StatusUpdate("gone", "ANNET", None, words, ends_polling=True)
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    _rounds(poller, clock, ROUND)
    [annet] = [event for event in journal.events(gone_row) if event.status == Status.ANNET]
    assert annet.description == words
    assert journal.next_poll_of(gone_row) is None
    _rounds(poller, clock, 20 * ROUND)
    assert (channel.times_asked("gone"), channel.times_asked("other")) == (1, 21)
    assert journal.get(gone_row).phase == Phase.SENT, "still open: its deadline ends it as usual"


def test_finished_messages_are_never_asked_for_again(setting):
    clock, journal, statuses = setting
    row = _sent(journal, "read")
    channel = ScriptedChannel()
    channel.answers["read"] = StatusUpdate("read", "LEST", datetime.now(UTC), "read in Altinn")
    poller = StatusPoller(journal, statuses, clock, channel, batch=100)
    _rounds(poller, clock, 5 * ROUND)
    assert journal.get(row).phase == Phase.DONE
    assert channel.times_asked("read") == 1 and journal.next_poll_of(row) is None


def test_a_poll_answered_with_retry_after_pauses_every_poll_of_the_channel_until_it_is_over(setting):
    clock, journal, statuses = setting
    _sent(journal, "waiting")
    circuits = Circuits(clock)
    channel = ScriptedChannel()
    channel.failure = RetryableChannelError("HTTP 429 (the server asks us to wait 300 s)", retry_after=300.0,
                                            throttled=True)
    poller = StatusPoller(journal, statuses, clock, channel, batch=100, circuit=circuits["DPV"])
    _rounds(poller, clock, ROUND)
    assert len(channel.asked) == 1 and circuits["DPV"].seconds_left() == pytest.approx(300.0)
    channel.failure = None
    _rounds(poller, clock, 290)
    assert len(channel.asked) == 1, "nothing asked while the channel's Retry-After lasts"
    _rounds(poller, clock, 2 * ROUND)
    assert len(channel.asked) >= 2, "asked again once it is over"


def test_messages_sent_before_the_upgrade_are_due_for_a_poll_at_once(journal_place):
    """A journal of the version before next_poll_at: its open sent messages are asked about in the first round."""
    journal_place.create_old_schema(";".join(MIGRATIONS[:3]), 3)
    columns = "direction, message_id, status_name, phase, channel, detail, created_at, updated_at"
    journal_place.run(*(
        f"INSERT INTO messages ({columns}) VALUES ('out', '{message_id}', '{message_id}.xml', '{phase}', 'DPV', "  # noqa: S608
        f"'{detail}', 0, 0)"
        for message_id, phase, detail in (("sent-before", "sent", '{"reference": "r-1"}'),
                                          ("never-sent", "expired", "{}"), ("read", "done", '{"reference": "r-2"}'))
    ))
    clock = FakeClock()
    journal = journal_place.open(clock)
    try:
        due = journal.due_for_poll("DPV", ("sent", "delivered", "expired", "done"), clock.now().timestamp(), 10)
        assert [record.message_id for record in due] == ["sent-before"]
    finally:
        journal.close()
