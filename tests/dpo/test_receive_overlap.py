"""A receive poll overlaps its takes with the listing: a transfer listed while the wave before it is
still under way starts at once, not after the slowest of that wave, and each transfer is taken once
in a poll however often it is listed."""

from __future__ import annotations

import threading
import time
import uuid

from gateway.inbound.receiver import Receiver
from tests.dpo.test_inbox_handover import _receiver, one_message_setting


class _Timed:
    """Stands in for take(): each transfer takes its set time; records when it started and ended."""

    def __init__(self, durations: dict[str, float]) -> None:
        self.durations = durations
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, reference: str) -> bool:
        with self._lock:
            self.calls.append(reference)
            self.started[reference] = time.monotonic()
        time.sleep(self.durations[reference])
        with self._lock:
            self.ended[reference] = time.monotonic()
        return True


class _Listing:
    """A channel list that grows: the next transfers become visible after each listing."""

    def __init__(self, waves: list[list[str]]) -> None:
        self.waves = waves
        self.listings = 0
        self.visible: list[str] = []
        self.taken: set[str] = set()

    def __call__(self) -> list[str]:
        if self.listings < len(self.waves):
            self.visible += self.waves[self.listings]
        self.listings += 1
        return [reference for reference in self.visible if reference not in self.taken]


def test_a_transfer_listed_during_a_wave_starts_before_the_waves_slowest_one_ends(tmp_path, monkeypatch):
    config, identity, trust, channel, _message_id = one_message_setting(tmp_path)
    receiver, journal = _receiver(config, identity, trust, channel)
    slow, quick, late = (str(uuid.uuid4()) for _ in range(3))
    timed = _Timed({slow: 3.0, quick: 0.05, late: 0.05})
    listing = _Listing([[slow, quick], [late]])
    monkeypatch.setattr(receiver, "take", timed)
    monkeypatch.setattr(receiver.channel, "list_inbound", listing)
    try:
        assert receiver.poll() == 3
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
    assert sorted(timed.calls) == sorted([slow, quick, late]), "each once, though they are listed again"
    assert timed.started[late] < timed.ended[slow] - 1.0, "the late one did not wait for the slow one"


def test_the_poll_ends_when_nothing_new_is_listed_and_nothing_is_under_way(tmp_path, monkeypatch):
    config, identity, trust, channel, _message_id = one_message_setting(tmp_path)
    receiver: Receiver
    receiver, journal = _receiver(config, identity, trust, channel)
    first = str(uuid.uuid4())
    timed = _Timed({first: 0.01})
    listing = _Listing([[first]])
    monkeypatch.setattr(receiver, "take", timed)
    monkeypatch.setattr(receiver.channel, "list_inbound", listing)
    try:
        assert receiver.poll() == 1
        assert listing.listings <= 3
        listing.taken.add(first)  # confirmed: the channel lists it no more
        assert receiver.poll() == 0
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
