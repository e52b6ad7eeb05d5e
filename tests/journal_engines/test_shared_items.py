"""Two nodes on one PostgreSQL share status polls, status sends and inbound takes item by item (a claim with a lease
and a fencing token each, journal/item_claims.py): both nodes do some, each item is done once, and a node that wakes
past its lease finds its late write refused by the token, in one log line. A node is a journal of its own with its
claims; the channel is a stand-in that records who asked for what."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from datetime import UTC, datetime

import pytest

from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.channels.dpv.channel import DPV_CAPABILITIES
from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.inbound.status_sender import StatusSender
from gateway.journal.claims import Claims, FencedOut, HeldClaims
from gateway.journal.completion import RowBusy, record_status
from gateway.journal.engine import JournalUnavailable
from gateway.journal.item_claims import ItemClaims
from gateway.journal.phases import Phase
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from gateway.outbound.status_poller import StatusPoller
from gateway.receipts.writer import StatusWriter

pytestmark = pytest.mark.postgres

LEASE = 60.0


@dataclasses.dataclass
class Node:
    name: str
    journal: Journal
    items: ItemClaims
    statuses: StatusWriter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def nodes(postgres_database, clock, tmp_path):
    made = []
    (tmp_path / "status").mkdir()
    for name in ("node-a", "node-b"):
        journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
        held = HeldClaims(Claims(journal, name, clock, lease_seconds=LEASE))
        made.append(Node(name, journal, ItemClaims(held), StatusWriter(journal, tmp_path / "status", clock)))
    yield made
    for node in made:
        node.statuses.close()
        node.journal.close()


class AskingChannel:
    """DPV as the poller sees it: each request is recorded with the node that asked; every message is LEVERT.
    `meanwhile` runs inside each request (while the asking node holds its claims)."""

    name = "DPV"
    capabilities = dataclasses.replace(DPV_CAPABILITIES, statuses_per_request=10_000)

    def __init__(self, node: str, asked: list[tuple[str, str]], meanwhile=None) -> None:
        self.node = node
        self.asked = asked
        self.meanwhile = meanwhile

    def poll_statuses(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        self.asked.extend((self.node, message.message_id) for message in sent)
        if self.meanwhile is not None:
            self.meanwhile()
        return [StatusUpdate(message.message_id, "LEVERT", datetime.now(UTC), "published") for message in sent]


def _sent(journal: Journal, count: int) -> list[str]:
    ids = []
    for index in range(count):
        message_id = str(uuid.uuid4())
        record = journal.create(direction="out", message_id=message_id, status_name=f"{message_id}.xml",
                                phase=Phase.ACCEPTED, drop_name=f"m{index}")
        journal.move(record.row, Phase.SENDING, channel="DPV", detail={"reference": f"corr-{index}",
                                                                     "expects_receipt": True})
        journal.move(record.row, Phase.SENT)
        ids.append(message_id)
    return ids


def _levert(journal: Journal, message_id: str) -> int:
    record = journal.find_live("out", message_id)
    return sum(event.status == "LEVERT" for event in journal.events(record.row))


def test_two_nodes_share_a_status_round_each_message_asked_once(nodes, clock, caplog):
    caplog.set_level(logging.INFO)
    a, _ = nodes
    ids = _sent(a.journal, 12)
    asked: list[tuple[str, str]] = []
    both_asking = threading.Barrier(2, timeout=30)  # each node's request waits for the other's: the rounds overlap
    pollers = [StatusPoller(node.journal, node.statuses, clock, AskingChannel(node.name, asked, both_asking.wait),
                            batch=8, items=node.items) for node in nodes]
    clock.advance(1)
    threads = [threading.Thread(target=poller.poll) for poller in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    by_node = {node.name: {message for who, message in asked if who == node.name} for node in nodes}
    assert by_node["node-a"] and by_node["node-b"], f"both nodes polled: {by_node}"
    assert sorted(message for _, message in asked) == sorted(ids), "each message asked by one node, once"
    # A status whose message another node's step holds at that moment (its status files being noted, say) gives
    # way, says so, and is asked again next round; every other status is recorded in the round that asked.
    waited = {message_id for message_id in ids
              if f"message {message_id}: its LEVERT waits, another node is changing it; asked again next round"
              in caplog.text}
    assert {message_id for message_id in ids if _levert(a.journal, message_id) == 0} == waited
    clock.advance(300)
    pollers[0].channel.meanwhile = None  # rounds of its own: two of eight cover the twelve
    pollers[0].poll()
    pollers[0].poll()
    assert [_levert(a.journal, message_id) for message_id in ids] == [1] * len(ids)
    assert {a.journal.find_live("out", message_id).phase for message_id in ids} == {Phase.DELIVERED}
    assert a.journal.query("SELECT count(*) FROM claims WHERE node IS NOT NULL") == [(0,)], "every claim let go"


def test_a_nodes_late_status_write_is_refused_when_another_took_its_poll_over(nodes, clock, caplog):
    a, b = nodes
    [message_id] = _sent(a.journal, 1)
    asked: list[tuple[str, str]] = []

    def stalls_past_its_lease() -> None:  # node-a freezes while its request is out; node-b takes the poll over
        clock.advance(LEASE + 1)
        taker = StatusPoller(b.journal, b.statuses, clock, AskingChannel("node-b", asked), batch=8, items=b.items)
        assert taker.poll() == 1

    sleeper = StatusPoller(a.journal, a.statuses, clock, AskingChannel("node-a", asked, stalls_past_its_lease),
                           batch=8, items=a.items)
    clock.advance(1)
    caplog.set_level(logging.INFO)
    assert sleeper.poll() == 0, "node-a's answer is refused"
    assert asked == [("node-a", message_id), ("node-b", message_id)]
    assert _levert(a.journal, message_id) == 1
    refused = [record for record in caplog.records if "its late write is refused" in record.getMessage()]
    assert len(refused) == 1 and refused[0].levelname == "WARNING"
    assert "node node-a: its claim on poll:" in refused[0].getMessage()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert a.journal.query("SELECT count(*) FROM claims WHERE node IS NOT NULL") == [(0,)], "every claim let go"


def test_two_nodes_share_the_takes_a_listing_found_each_taken_once(nodes):
    a, b = nodes
    references = [f"transfer-{index:02d}" for index in range(10)]
    a.items.found("DPO", references)
    a.items.found("DPO", references[:4])  # listed again: still one take each
    first = a.items.takes("DPO", 4)
    second = b.items.takes("DPO", 100)  # what node-a holds is not node-b's
    assert [reference for reference, _ in first] == references[:4]
    assert sorted(reference for reference, _ in second) == references[4:]
    for node, claimed in ((a, first), (b, second)):
        for reference, claim in claimed:
            node.items.taken("DPO", reference, claim)
    assert a.journal.query("SELECT count(*) FROM claims") == [(0,)], "a take's claim goes with it when done"
    a.items.found("DPO", references[-2:])  # a listing made before the last were confirmed does not bring them back
    assert a.items.takes("DPO", 100) == [] and b.items.takes("DPO", 100) == []


def test_a_nodes_late_take_is_refused_when_another_took_it_over(nodes, clock, caplog):
    a, b = nodes
    a.items.found("DPO", ["transfer-1"])
    [(_, stale)] = a.items.takes("DPO", 1)
    assert b.items.takes("DPO", 1) == [], "held under a live lease"
    clock.advance(LEASE + 1)  # node-a freezes past its lease
    [(_, taken)] = b.items.takes("DPO", 1)
    assert taken.token > stale.token
    caplog.set_level(logging.INFO)
    with pytest.raises(FencedOut), a.items.held.fencing(stale):
        a.journal.add_event(a.journal.create(direction="in", message_id=str(uuid.uuid4()), status_name="x.xml",
                                             phase=Phase.RECEIVED).row, Status.INNKOMMENDE_MOTTATT)
    with pytest.raises(FencedOut):
        a.items.taken("DPO", "transfer-1", stale)
    refused = [record.getMessage() for record in caplog.records if "late write is refused" in record.getMessage()]
    assert refused == [f"node node-a: its claim on take:DPO:transfer-1 (token {stale.token}) was taken over by "
                       f"node-b (token {taken.token}); its late write is refused"], "one line, however many writes"
    assert a.journal.query("SELECT count(*) FROM messages WHERE direction = 'in'") == [(0,)]
    b.items.taken("DPO", "transfer-1", taken)
    assert a.journal.query("SELECT done_at IS NOT NULL FROM inbound_takes") == [(True,)]


def test_a_status_for_a_message_another_node_is_changing_gives_way_at_once(nodes, postgres_database):
    a, _ = nodes
    [message_id] = _sent(a.journal, 1)
    row = a.journal.find_live("out", message_id).row
    with postgres_database.connect() as other_node, other_node.transaction():
        other_node.execute("SELECT id FROM messages WHERE id = %s FOR UPDATE", (row,))  # its step is under way
        with pytest.raises(RowBusy):  # no wait (a wait while holding other rows closes circles): a later turn
            record_status(a.journal, row, Status.LEVERT, None, "published")
    assert _levert(a.journal, message_id) == 0
    assert record_status(a.journal, row, Status.LEVERT, None, "published")
    assert _levert(a.journal, message_id) == 1


def test_claims_made_by_a_round_the_database_failed_in_are_let_go_and_never_renewed(nodes, clock):
    """PostgreSQL restarted under two nodes: a round had claimed its polls when the database went; those claims must
    not stay with the node, renewed for ever while nobody polls their messages (they stood at SENDT for good)."""
    a, b = nodes
    ids = _sent(a.journal, 6)
    real_polls = a.items.polls

    def gone_after_the_first_step(channel, phases, limit):  # type: ignore[no-untyped-def]
        if phases != ("sent",):
            raise JournalUnavailable("server closed the connection unexpectedly")
        return real_polls(channel, phases, limit)

    a.items.polls = gone_after_the_first_step  # type: ignore[method-assign]
    asked: list[tuple[str, str]] = []
    clock.advance(1)
    with pytest.raises(JournalUnavailable):
        StatusPoller(a.journal, a.statuses, clock, AskingChannel("node-a", asked), batch=8, items=a.items).poll()
    assert asked == []
    a.items.held.renew()  # its lease job goes on running
    assert a.journal.query("SELECT count(*) FROM claims WHERE node IS NOT NULL") == [(0,)], "every claim let go"
    # Node-b polls them at once, without waiting for a lease to lapse.
    assert StatusPoller(b.journal, b.statuses, clock, AskingChannel("node-b", asked), batch=8,
                        items=b.items).poll() == 6
    assert sorted(message for _, message in asked) == sorted(ids)


def test_claims_of_a_step_whose_commit_answer_was_lost_are_let_go(nodes):
    """The connection broke as the step's COMMIT went: the claims are in the database, but the node saw an error.
    It lets them go, rather than hold (and renew) claims for work it will never do."""
    a, b = nodes
    a.items.found("DPO", [f"transfer-{index}" for index in range(5)])
    real_transaction = a.journal.transaction
    depth = [0]

    @contextlib.contextmanager
    def answer_lost():  # type: ignore[no-untyped-def]
        depth[0] += 1
        try:
            with real_transaction():
                yield
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            raise JournalUnavailable("server closed the connection unexpectedly")

    a.journal.transaction = answer_lost  # type: ignore[method-assign]
    with pytest.raises(JournalUnavailable):
        a.items.takes("DPO", 5)
    a.journal.transaction = real_transaction  # type: ignore[method-assign]
    a.items.held.renew()
    assert a.journal.query("SELECT count(*) FROM claims WHERE node IS NOT NULL") == [(0,)]
    assert len(b.items.takes("DPO", 5)) == 5


class StatusCarrier:
    """DPO as the status sender sees it: each status message is recorded with the node that sent it."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self, node: str, sent: list[tuple[str, str, str]]) -> None:
        self.node = node
        self.sent = sent

    def send_status(self, sbd) -> None:  # type: ignore[no-untyped-def]
        self.sent.append((self.node, sbd.message_id, sbd.business_message.status))


def test_owed_status_messages_on_two_nodes_are_each_sent_once_and_their_claims_go_with_them(nodes, clock):
    a = nodes[0]
    rows = []
    for _ in range(12):
        message_id = str(uuid.uuid4())
        record = a.journal.create(direction="in", message_id=message_id, status_name=f"{message_id}.xml",
                                  phase=Phase.RECEIVED, channel="DPO", sender="910075918",
                                  conversation_id=str(uuid.uuid4()),
                                  process="urn:no:difi:profile:arkivmelding:administrasjon:ver1.0")
        a.journal.queue_status_send(record.row, Status.MOTTATT)
        rows.append(record)
    sent: list[tuple[str, str, str]] = []
    senders = [StatusSender(node.journal, clock, {"DPO": StatusCarrier(node.name, sent)}, "910077473",
                            items=node.items) for node in nodes]
    releases = []
    for node in nodes:  # a release is a step of its own: one spent on a claim already gone is waste
        original = node.items.held.claims.let_go_all
        node.items.held.claims.let_go_all = lambda claims, original=original: (releases.extend(claims),
                                                                               original(claims))
    try:
        both = [threading.Thread(target=sender.send_due) for sender in senders]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(30)
    finally:
        for sender in senders:
            sender.close()
    assert sorted(message_id for _, message_id, _ in sent) == sorted(record.message_id for record in rows)
    assert {status for _, _, status in sent} == {"MOTTATT"}
    assert a.journal.due_status_sends() == []
    assert a.journal.query("SELECT count(*) FROM claims") == [(0,)], "a sent status's claim goes with it"
    assert releases == [], "no step spent releasing a claim that went with its status"
    assert all(not node.items.held.still_held(f"status-send:{record.row}:MOTTATT")
               for node in nodes for record in rows)
