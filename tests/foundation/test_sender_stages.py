"""The sender's two stages: a few workers pack messages, and each channel keeps its own number of sends
on the wire, however few packers there are; a slow channel never holds up the packing for another."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.clock import isoformat
from gateway.errors import RetryableChannelError
from gateway.journal.phases import Phase
from gateway.outbound.sender import Sender
from gateway.routing.registry import InfoRecord, RegistryAnswer, ServiceRecord

from .drops import make_folder_drop, sidecar_xml


class DpoRegistry:
    """Every receiver is on DPO."""

    def lookup(self, identifier, process, security_level=None, conversation_id=None):
        record = ServiceRecord("DPO", process, ("urn:no:difi:arkivmelding:xsd::arkivmelding",), "pem",
                               None, None, None, 4, None, identifier)
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), [record])


class _SlowWire:
    """A channel whose sends wait on the wire until released, counting how many wait at once."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self) -> None:
        self.open = threading.Event()
        self.on_the_wire = 0
        self.most_on_the_wire = 0
        self.packing_threads: set[str] = set()
        self._lock = threading.Lock()

    def validate(self, message, service):
        return []

    def prepare(self, message, service, work):
        self.packing_threads.add(threading.current_thread().name)
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, b"package")

    def describe(self, package):
        return ""

    def already_sent(self, reference):
        return False

    def send(self, package, reference, on_reference):
        on_reference(f"transfer-{package.message_id}")
        with self._lock:
            self.on_the_wire += 1
            self.most_on_the_wire = max(self.most_on_the_wire, self.on_the_wire)
        self.open.wait(timeout=30)
        with self._lock:
            self.on_the_wire -= 1
        return f"transfer-{package.message_id}"


def until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_channel_keeps_its_in_flight_sends_on_the_wire_with_two_packers(harness):
    h = harness(quiet_period_seconds=0)
    config = dataclasses.replace(h.config, network=dataclasses.replace(h.config.network, max_parallel_sends=2))
    for index in range(30):
        make_folder_drop(h.outbox, f"brev-{index}")
    h.run()
    assert len(h.journal.in_phase(Phase.ACCEPTED)) == 30
    wire = _SlowWire()
    sender = Sender(config, h.journal, h.statuses, h.clock, DpoRegistry(), {"DPO": wire}, in_flight={"DPO": 12})
    try:
        sender.send_due()
        assert until(lambda: wire.on_the_wire == 12), f"{wire.on_the_wire} sends on the wire, not 12"
        sender.send_due()  # more rows taken while the wire is full: packed, and waiting for a slot
        time.sleep(0.3)
        assert wire.most_on_the_wire == 12
        wire.open.set()

        def all_sent() -> bool:
            sender.send_due()
            return len(h.journal.in_phase(Phase.SENT)) == 30

        assert until(all_sent)
    finally:
        wire.open.set()
        sender.close()
    assert wire.most_on_the_wire == 12
    assert {name.rsplit("_", 1)[0] for name in wire.packing_threads} == {"prepare"}
    assert len(wire.packing_threads) <= 2


class _Gate(_SlowWire):
    """A wire whose first send waits at the gate; records every package that went on the wire, and can
    answer 503 instead."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.unavailable = False

    def send(self, package, reference, on_reference):
        self.sent.append(package.message_id)
        if self.unavailable:
            raise RetryableChannelError("HTTP 503 from the broker", retry_after=30)
        return super().send(package, reference, on_reference)


def _drops_with_deadline(h, names, hours: float = 1.0) -> None:
    deadline = isoformat(h.clock.now() + timedelta(hours=hours))
    for name in names:
        make_folder_drop(h.outbox, name, sidecar=sidecar_xml(extra=f"<deadline>{deadline}</deadline>"))
    h.run()


def test_a_message_whose_deadline_passes_while_it_waits_for_a_slot_is_not_sent(harness):
    h = harness(quiet_period_seconds=0)
    _drops_with_deadline(h, ["først", "siste"])
    wire = _Gate()
    sender = Sender(h.config, h.journal, h.statuses, h.clock, DpoRegistry(), {"DPO": wire}, in_flight={"DPO": 1})
    try:
        sender.send_due()
        assert until(lambda: wire.on_the_wire == 1)
        time.sleep(0.3)  # the other one is packed and waits for the only slot
        h.clock.advance(2 * 3600)  # its deadline passes meanwhile
        wire.open.set()

        def phases() -> list[Phase]:
            sender.send_due()
            return sorted(record.phase.value for record in h.journal.listing())

        assert until(lambda: phases() == ["expired", "sent"]), phases()
    finally:
        wire.open.set()
        sender.close()
    [sent] = [record for record in h.journal.listing() if record.phase == Phase.SENT]
    assert wire.sent == [sent.message_id], "the expired message never went on the wire"


def test_messages_waiting_for_a_slot_wait_for_the_channel_when_another_send_pauses_it(harness):
    h = harness(quiet_period_seconds=0)
    _drops_with_deadline(h, [f"brev-{index}" for index in range(6)])
    wire = _Gate()
    wire.unavailable = True
    sender = Sender(h.config, h.journal, h.statuses, h.clock, DpoRegistry(), {"DPO": wire}, in_flight={"DPO": 1})
    try:
        sender.send_due()
        assert until(lambda: sender.circuits["DPO"].is_open)
        assert until(lambda: not sender._in_flight)
    finally:
        sender.close()
    # A 503 with Retry-After pauses the channel at once: the five packed behind it wait for the channel,
    # charged no attempt, instead of each going on the wire to be refused in turn.
    assert len(wire.sent) == 1
    records = h.journal.listing()
    assert sorted(record.attempts for record in records) == [0, 0, 0, 0, 0, 1]
    assert {record.phase for record in records} == {Phase.ACCEPTED}
    now = h.clock.now().timestamp()
    assert all(record.next_attempt_at and record.next_attempt_at > now + 20 for record in records)
