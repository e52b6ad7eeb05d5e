"""Receiving on nodes that share a PostgreSQL journal (gateway/inbound/shared_takes.py): a transfer whose take fails
(a network error, a fault of the broker) waits for the next turn, as on one node; it is not taken again and again
within the turn. Under 30 % faults a node took one answer 196 times in a few minutes, and applied it 36 times."""

from __future__ import annotations

import logging
import uuid
from typing import BinaryIO

import pytest

from gateway.clock import SystemClock
from gateway.errors import RetryableChannelError
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import Receiver
from gateway.inbound.shared_takes import SharedTakes
from gateway.journal.claims import Claims, HeldClaims
from gateway.journal.item_claims import ItemClaims
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter
from tests.dpo.test_inbox_handover import OneMessageChannel, one_message_setting

pytestmark = pytest.mark.postgres

WAITING = sorted(str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))


class FaultyBroker(OneMessageChannel):
    """A broker listing three transfers for us, every download of which breaks; each try is counted."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fetched: list[str] = []

    def list_inbound(self) -> list[str]:
        return list(WAITING)

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        self.fetched.append(reference)
        raise RetryableChannelError(f"downloading broker file transfer {reference}: HTTP 502 from 127.0.0.1")


def test_a_take_that_fails_waits_for_the_next_turn_instead_of_being_taken_again_at_once(
        tmp_path, postgres_database, caplog):
    config, identity, trust, channel, _ = one_message_setting(tmp_path)
    broker = FaultyBroker(channel.package, identity, trust)
    clock = SystemClock()
    journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
    statuses = StatusWriter(journal, config.folders.status, clock)
    receiver = Receiver(config, journal, statuses, clock, broker, Inbox(config, journal, statuses), workers=2)
    shared = SharedTakes(receiver, ItemClaims(HeldClaims(Claims(journal, "node-a", clock))))
    caplog.set_level(logging.INFO)
    try:
        assert shared.list() == 0  # the listing's turn: the three are found, and this node tries to take them
        assert sorted(broker.fetched) == WAITING, "each tried once in the turn"
        assert journal.query("SELECT count(*) FROM inbound_takes WHERE done_at IS NULL") == [(3,)], \
            "none taken: each waits for the next turn"
        assert shared.take() == 0  # the next turn tries each once more
        assert sorted(broker.fetched) == sorted(WAITING * 2)
        assert journal.query("SELECT count(*) FROM claims WHERE node IS NOT NULL") == [(0,)], "every claim let go"
    finally:
        receiver.close()
        statuses.close()
        journal.close()
    said = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert said and all("it will be offered again at the next poll" in line or "the same error" in line
                        for line in said)
