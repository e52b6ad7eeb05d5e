"""The signer's certificate is checked at the time of receipt, on the receiving gateway's own clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from gateway.clock import FakeClock
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import Receiver
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter

from .test_inbox_handover import TRANSFER, one_message_setting


@pytest.mark.parametrize("days_off", [0, -2], ids=["clock right", "clock two days behind"])
def test_the_receivers_clock_decides_whether_the_signer_is_valid(tmp_path, days_off: int) -> None:
    # The dev PKI's certificates start a day before they are made: two days back, the signer's is not valid yet.
    config, _identity, _trust, channel, message_id = one_message_setting(tmp_path)
    clock = FakeClock(datetime.now(UTC) + timedelta(days=days_off))
    journal = Journal(config.folders.journal_path, clock)
    statuses = StatusWriter(journal, config.folders.status, clock)
    channel.clock = clock  # the channel verifies what it opens at the time on the gateway's clock
    receiver = Receiver(config, journal, statuses, clock, channel, Inbox(config, journal, statuses))
    try:
        assert receiver.take(TRANSFER)
        record = journal.find_live("in", message_id)
    finally:
        receiver.close()
        statuses.close()
        journal.close()
    assert record is not None
    if days_off == 0:
        assert record.phase == Phase.IN_INBOX
        assert os.listdir(config.folders.inbox) == [message_id]
        return
    assert record.phase == Phase.QUARANTINED
    assert os.listdir(config.folders.inbox) == []
    (reason,) = record.errors
    assert reason.startswith("the signer's certificate 'CN=A") and "is not yet valid: valid from" in reason
    assert f"checked at {clock.now():%Y-%m-%d %H:%M:%S} UTC" in reason
