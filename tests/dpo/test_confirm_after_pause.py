"""A transfer taken and journaled is confirmed after a short pause of its channel, not taken again at the next poll.
Under 30 % faults the channel paused every few seconds (any 429 pauses it for every call); a confirmation given up
because a pause had begun meanwhile had the same transfer downloaded, opened and applied again at every poll."""

from __future__ import annotations

import time

from gateway.clock import SystemClock
from gateway.delivery.circuit import ChannelCircuit
from gateway.errors import RetryableChannelError
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import CONFIRM_WAIT_SECONDS, Receiver
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter

from .test_inbox_handover import TRANSFER, OneMessageChannel, one_message_setting


class ThrottledMeanwhile(OneMessageChannel):
    """While the message is opened, another call of the channel hears a 429 asking us to wait `wait` seconds."""

    def __init__(self, setting: OneMessageChannel, circuit: ChannelCircuit, wait: float) -> None:
        super().__init__(setting.package, setting.identity, setting.trust)
        self.circuit = circuit
        self.wait = wait
        self.fetches = 0

    def fetch_inbound(self, reference, target):  # type: ignore[no-untyped-def]
        self.fetches += 1
        return super().fetch_inbound(reference, target)

    def transport_sender(self, reference: str) -> str | None:
        self.circuit.heed(RetryableChannelError("HTTP 429 from the broker", retry_after=self.wait, throttled=True))
        return super().transport_sender(reference)


def _take(tmp_path, wait: float):  # type: ignore[no-untyped-def]
    config, _identity, _trust, setting, message_id = one_message_setting(tmp_path)
    clock = SystemClock()
    circuit = ChannelCircuit("DPO", clock)
    channel = ThrottledMeanwhile(setting, circuit, wait)
    journal = Journal(config.folders.journal_path, clock)
    statuses = StatusWriter(journal, config.folders.status, clock)
    receiver = Receiver(config, journal, statuses, clock, channel, Inbox(config, journal, statuses), circuit=circuit)
    try:
        started = time.monotonic()
        taken = receiver.take_guarded(TRANSFER)
        took = time.monotonic() - started
        record = journal.find_live("in", message_id)
    finally:
        receiver.close()
        statuses.close()
        journal.close()
    return taken, took, channel, record


def test_a_short_pause_that_began_meanwhile_is_waited_out_and_the_transfer_confirmed(tmp_path):
    taken, took, channel, record = _take(tmp_path, wait=1.0)
    assert taken == 1 and channel.acknowledged, "confirmed once the pause was over"
    assert took >= 0.9, "the peer's wait was kept: nothing was asked of it before"
    assert record.phase == Phase.IN_INBOX
    assert channel.fetches == 1


def test_a_long_pause_is_not_waited_out_the_transfer_waits_for_a_later_poll(tmp_path):
    taken, took, channel, record = _take(tmp_path, wait=CONFIRM_WAIT_SECONDS + 30)
    assert taken == 0 and not channel.acknowledged, "offered again once the channel answers again"
    assert took < CONFIRM_WAIT_SECONDS, "no worker held up for the whole of a long pause"
    assert record.phase == Phase.IN_INBOX, "in the inbox already: offered again, it is confirmed, not delivered twice"
