"""Two nodes on one PostgreSQL share the sending: a node that sleeps past its lease (a long stall, a frozen VM) wakes
to find its send taken over and done by the other node, and whatever its late work meets then (the drop filed away,
its own session ended by the server) is said as the takeover it is, in one line, never as an error of the message."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import pytest

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.contract.statuses import Status
from gateway.folders import prepare_folders
from gateway.intake.service import Intake
from gateway.journal.claims import Claims, HeldClaims
from gateway.journal.phases import Phase
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from gateway.outbound.sender import Sender
from gateway.receipts.writer import StatusWriter
from tests.foundation.drops import make_folder_drop, write_config
from tests.foundation.test_sender_stages import DpoRegistry, until

pytestmark = pytest.mark.postgres

LEASE = 60.0


class _Packer:
    """DPO as the sender sees it: packing reads every document from the claimed drop; a send goes through at once.
    With `asleep`, packing waits for it first: the node is frozen between taking a message and reading its drop."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self, asleep: threading.Event | None = None, bug: Exception | None = None) -> None:
        self.asleep = asleep
        self.bug = bug  # raised on waking, in place of packing: an error that can only be a bug of ours
        self.packing = threading.Event()
        self.sent: list[str] = []

    def validate(self, message, service):
        return []

    def prepare(self, message, service, work):
        self.packing.set()
        if self.asleep is not None:
            self.asleep.wait(30)
        if self.bug is not None:
            raise self.bug
        content = b"".join(document.source.read_bytes() if isinstance(document.source, Path) else document.source
                           for document in message.documents)
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, content)

    def describe(self, package):
        return ""

    def already_sent(self, reference):
        return False

    def send(self, package, reference, on_reference):
        on_reference(f"transfer-{package.message_id}")
        self.sent.append(package.message_id)
        return f"transfer-{package.message_id}"


@dataclasses.dataclass
class _Node:
    name: str
    journal: Journal
    statuses: StatusWriter
    sender: Sender


@pytest.mark.parametrize(("database", "woken_node_meets"), [
    ("answers", "its drop gone"), ("out of reach", "its drop gone"), ("out of reach", "a bug")])
def test_a_node_waking_to_its_send_done_by_another_and_its_session_ended_says_it_was_taken_over(
        postgres_database, tmp_path, caplog, database, woken_node_meets):
    """`out of reach`: the database takes no connection while node-a wakes, so node-a cannot tell whose the send is
    now; it says the outage in its one line, lets its send go, and once the database answers finds nothing to send.
    A bug it meets meanwhile is still an ERROR with its traceback: an outage hides nothing but what it causes."""
    config = load_config(write_config(tmp_path, quiet_period_seconds=0))
    prepare_folders(config)
    clock = FakeClock()
    sleeping = threading.Event()
    bug = KeyError("a bug") if woken_node_meets == "a bug" else None
    channels = {"node-a": _Packer(asleep=sleeping, bug=bug), "node-b": _Packer()}
    nodes = []
    for name, channel in channels.items():
        journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
        statuses = StatusWriter(journal, config.folders.status, clock)
        held = HeldClaims(Claims(journal, name, clock, lease_seconds=LEASE))
        nodes.append(_Node(name, journal, statuses,
                           Sender(config, journal, statuses, clock, DpoRegistry(), {"DPO": channel}, held=held)))
    a, b = nodes
    try:
        make_folder_drop(config.folders.outbox, "brev")
        Intake(config, a.journal, a.statuses, clock).run_once()
        [record] = a.journal.in_phase(Phase.ACCEPTED)

        a.sender.send_due()
        assert channels["node-a"].packing.wait(10), "node-a took the message and froze before reading its drop"
        clock.advance(LEASE + 1)  # node-a sleeps past its lease: node-b takes the send over and finishes it
        b.sender.send_due()
        assert until(lambda: a.journal.get(record.row).phase == Phase.SENT
                     and not any(config.folders.work_area.iterdir()), timeout=30), "node-b sent and filed it away"
        with postgres_database.server.admin() as server:  # and the server ends node-a's session meanwhile
            if database == "out of reach":
                server.execute(f'ALTER DATABASE "{postgres_database.name}" ALLOW_CONNECTIONS false')
                server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                               (postgres_database.name,))
            else:
                server.execute("SELECT pg_terminate_backend(%s)",
                               (a.journal._db._connection._connection.info.backend_pid,))

        with caplog.at_level(logging.INFO):
            sleeping.set()  # node-a wakes: its drop is gone from the work area, its first step meets the ended session
            # Out of reach, each of its two tries to tell whose the send is waits for the connect timeout (10 s).
            assert until(lambda: not a.sender._in_flight, timeout=60), "node-a let its send go"
            if database == "out of reach":
                with postgres_database.server.admin() as server:
                    server.execute(f'ALTER DATABASE "{postgres_database.name}" ALLOW_CONNECTIONS true')
                assert until(lambda: a.sender.send_due() == 0 and not a.sender._in_flight, timeout=60)
            a.sender.send_due()  # and goes on: the message is not sent again
            time.sleep(0.3)
    finally:
        sleeping.set()
        for node in nodes:
            node.sender.close()
            node.statuses.close()
            node.journal.close()

    assert channels["node-b"].sent == [record.message_id] and channels["node-a"].sent == []
    events = [event.status for event in b.journal.events(record.row)]
    assert events.count(Status.SENDT) == 1, events
    said = [(r.levelno, r.name, r.getMessage()) for r in caplog.records]
    sender_said = [(r.levelno, r.getMessage(), r.exc_info and r.exc_info[1]) for r in caplog.records
                   if r.name == "gateway.outbound.sender" and r.levelno >= logging.WARNING]
    if bug is None:
        assert sender_said == [], said
    else:
        assert sender_said == [(logging.ERROR, f"sending journal row {record.row} failed unexpectedly; it will be "
                                               "tried again", bug)], said
    assert [line for line in said if line[1] == "gateway.journal.outage" and line[0] == logging.ERROR], said
    if database == "answers":  # the woken node's second try reaches the database and finds the claim taken over
        assert [line for line in said if line[0] == logging.WARNING and
                f"its claim on send:{record.row} (token 1) was taken over by" in line[2]], said
