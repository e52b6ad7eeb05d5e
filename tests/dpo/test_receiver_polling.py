"""Polling the channel: a transfer too large to take is set aside once, and a backlog longer than
one listing drains in one poll."""

from __future__ import annotations

import logging
import os
import uuid

from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.errors import RetryableChannelError, SecurityError

from .test_inbox_handover import TRANSFER, _receiver, one_message_setting


class OversizeChannel:
    """A channel whose only message is larger than it carries, as DpoChannel reports it."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self) -> None:
        self.acknowledged = False
        self.fetches = 0

    def list_inbound(self) -> list[str]:
        return [] if self.acknowledged else [TRANSFER]

    def fetch_inbound(self, reference, target) -> int:
        self.fetches += 1
        raise SecurityError(f"broker file transfer {reference} is larger than 1100000000 bytes")

    def acknowledge_inbound(self, reference: str) -> None:
        self.acknowledged = True

    def reject_inbound(self, reference: str, reason: str) -> None:
        self.acknowledged = True


def test_a_download_larger_than_the_channel_carries_is_quarantined_once_not_fetched_forever(tmp_path):
    config, identity, trust, _channel, _message_id = one_message_setting(tmp_path)
    channel = OversizeChannel()
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        receiver.poll()
        receiver.poll()
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
    assert channel.fetches == 1 and channel.acknowledged
    assert os.listdir(config.folders.inbox) == []
    note = config.folders.state / "quarantine" / f"unreadable.{TRANSFER}.error.txt"
    assert "larger than" in note.read_text()


class PagedChannel:
    """Lists at most `page` waiting transfers, the newest, as the Altinn broker does (100 there)."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self, waiting: list[str], page: int) -> None:
        self.waiting = list(waiting)
        self.page = page
        self.taken: list[str] = []

    def list_inbound(self) -> list[str]:
        return self.waiting[-self.page :]

    def fetch_inbound(self, reference, target) -> int:
        raise SecurityError("too large")  # the receiver notes it and confirms it: enough to see it taken

    def acknowledge_inbound(self, reference: str) -> None:
        self.waiting.remove(reference)
        self.taken.append(reference)

    reject_inbound = lambda self, reference, reason: self.acknowledge_inbound(reference)  # noqa: E731


def test_one_poll_drains_a_backlog_longer_than_the_channel_lists(tmp_path):
    config, identity, trust, _channel, _message_id = one_message_setting(tmp_path)
    waiting = [str(uuid.UUID(int=index)) for index in range(1, 8)]
    channel = PagedChannel(waiting, page=3)
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.poll() == 7
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
    assert sorted(channel.taken) == waiting and channel.waiting == []


class DownChannel(OversizeChannel):
    """A channel whose list call fails as the network does."""

    def list_inbound(self) -> list[str]:
        raise RetryableChannelError("listing published broker file transfers: network error (RemoteProtocolError)")


def test_a_failed_list_call_is_one_warning_not_an_exception_for_the_scheduler(tmp_path, caplog):
    config, identity, trust, _channel, _message_id = one_message_setting(tmp_path)
    receiver, journal = _receiver(config, identity, trust, DownChannel())
    try:
        with caplog.at_level(logging.WARNING):
            assert receiver.poll() == 0
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
    [line] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "listing the messages waiting on DPO failed" in line.getMessage() and line.exc_info is None
