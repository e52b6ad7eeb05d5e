"""The status rules for every channel: a delivery outranks an expiry, LEVERT without a receipt to
wait for finishes a message, sends failing to the deadline end as FEIL with the last error, owed
status messages give up at the deadline, duplicates and disorder are harmless, and the CLI shows
what the status file shows."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta, timezone
from pathlib import Path

from lxml import etree

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.clock import isoformat
from gateway.contract.status import NAMESPACE as STATUS_NS
from gateway.contract.status import schema as status_schema
from gateway.contract.statuses import Status
from gateway.errors import RetryableChannelError
from gateway.inbound.status_sender import StatusSender
from gateway.intake.service import expire_overdue
from gateway.journal.completion import record_status
from gateway.journal.phases import Phase
from gateway.outbound.sender import RetryPolicy, Sender
from gateway.routing.registry import InfoRecord, RegistryAnswer, ServiceRecord

from .drops import make_folder_drop, sidecar_xml

NS = {"s": STATUS_NS}


def _status_file(h, record) -> etree._Element:
    h.statuses.flush()
    tree = etree.parse(str(h.status / record.status_name))
    assert status_schema().validate(tree), status_schema().error_log
    return tree.getroot()


def _history(root) -> list[tuple[str, str, str | None]]:
    return [
        tuple(e.findtext(f"s:{name}", namespaces=NS) for name in ("value", "time", "learned"))
        for e in root.findall("s:history/s:status", NS)
    ]


def _sent_message(h, name: str = "brev", expects_receipt: bool = True, deadline_hours: float = 1.0):
    deadline = h.clock.now() + timedelta(hours=deadline_hours)
    make_folder_drop(h.outbox, name, sidecar=sidecar_xml(extra=f"<deadline>{isoformat(deadline)}</deadline>"))
    h.run()
    [record] = [r for r in h.journal.listing() if r.drop_name == name]
    detail = {**record.detail, "reference": f"ref-{name}", "expects_receipt": expects_receipt}
    h.journal.move(record.row, Phase.SENDING, channel="DPV", route_reason="test route", detail=detail)
    with h.journal.transaction():
        h.journal.move(record.row, Phase.SENT)
        h.journal.add_event(record.row, Status.SENDT, description="handed to DPV")
    return h.journal.get(record.row)


def test_a_levert_after_levetid_utlopt_makes_the_message_levert_and_keeps_both_events(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, expects_receipt=True)
    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    assert h.journal.get(record.row).phase == Phase.EXPIRED
    assert _status_file(h, record).findtext("s:current", namespaces=NS) == "LEVETID_UTLOPT"

    stamped = h.clock.now() - timedelta(minutes=90)  # delivered before the deadline; we learn it late
    h.clock.advance(60)
    assert record_status(h.journal, record.row, Status.LEVERT, stamped, "published in the receiver's mailbox")

    root = _status_file(h, record)
    assert root.findtext("s:current", namespaces=NS) == "LEVERT"
    history = _history(root)
    assert [value for value, _time, _learned in history] == ["OPPRETTET", "SENDT", "LEVERT", "LEVETID_UTLOPT"]
    levert = next(entry for entry in history if entry[0] == "LEVERT")
    assert levert[1] == isoformat(stamped) and levert[2] == isoformat(h.clock.now()), "stamped time and learned time"
    assert h.journal.get(record.row).phase == Phase.DELIVERED

    record_status(h.journal, record.row, Status.LEST, None, "read")
    assert h.journal.get(record.row).phase == Phase.DONE
    assert _status_file(h, record).findtext("s:current", namespaces=NS) == "LEST"


def test_levert_without_a_receipt_to_wait_for_finishes_the_message(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "uten-kvittering", expects_receipt=False)
    record_status(h.journal, record.row, Status.LEVERT, None, "delivered")
    finished = h.journal.get(record.row)
    assert finished.phase == Phase.DONE and finished.finished_at is not None


def test_levert_with_a_receipt_expected_is_finished_for_expiry_and_retention_and_lest_may_still_come(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "venter-kvittering", expects_receipt=True)
    record_status(h.journal, record.row, Status.LEVERT, None, "delivered")
    delivered = h.journal.get(record.row)
    assert delivered.phase == Phase.DELIVERED and delivered.finished_at is not None
    h.clock.advance(3 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 0, "a delivered message never expires"
    assert h.journal.get(record.row).phase == Phase.DELIVERED
    h.clock.advance(86400)
    record_status(h.journal, record.row, Status.LEST, None, "arkivmelding_kvittering OK")
    assert h.journal.get(record.row).phase == Phase.DONE


def test_duplicate_and_out_of_order_statuses_are_harmless_and_the_history_is_in_time_order(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "uorden")
    base = h.clock.now()
    # LEST arrives first, then the LEVERT and MOTTATT that happened before it, then LEST again.
    assert record_status(h.journal, record.row, Status.LEST, base + timedelta(seconds=30), "read")
    assert record_status(h.journal, record.row, Status.LEVERT, base + timedelta(seconds=20), "delivered")
    assert record_status(h.journal, record.row, Status.MOTTATT, base + timedelta(seconds=10), "received")
    assert not record_status(h.journal, record.row, Status.LEST, base + timedelta(seconds=40), "read again")
    root = _status_file(h, record)
    assert root.findtext("s:current", namespaces=NS) == "LEST"
    assert [value for value, _t, _l in _history(root)] == ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"]
    assert h.journal.get(record.row).phase == Phase.DONE


def test_statuses_stamped_before_our_sendt_read_in_lifecycle_order_whatever_order_they_arrive_in(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "klokke")
    behind = h.clock.now() - timedelta(minutes=5)  # the receiver's clock runs behind ours
    # All three are clamped to our SENDT; they arrive LEST, LEVERT, MOTTATT (parallel downloads).
    for status in (Status.LEST, Status.LEVERT, Status.MOTTATT):
        assert record_status(h.journal, record.row, status, behind, status.value.lower())
    expected = ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"]
    assert [value for value, _t, _l in _history(_status_file(h, record))] == expected
    assert [event.status for event in h.journal.events(record.row)] == expected


def test_the_history_compares_stamps_as_instants_whatever_offset_the_reporter_wrote(harness):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "sone")
    oslo = timezone(timedelta(hours=1))
    later = h.clock.now() + timedelta(minutes=10)
    # MOTTATT at 10:10Z written as 11:10+01:00; LEVERT at 10:40Z written in UTC: as text it sorts first.
    assert record_status(h.journal, record.row, Status.MOTTATT, later.astimezone(oslo), "received")
    assert record_status(h.journal, record.row, Status.LEVERT, later + timedelta(minutes=30), "delivered")
    assert [event.status for event in h.journal.events(record.row)][-2:] == [Status.MOTTATT, Status.LEVERT]


def test_the_cli_shows_the_same_current_status_as_the_status_file(harness, tmp_path: Path):
    h = harness(quiet_period_seconds=0)
    record = _sent_message(h, "cli-og-fil")
    base = h.clock.now()
    record_status(h.journal, record.row, Status.LEST, base + timedelta(seconds=30), "read")
    record_status(h.journal, record.row, Status.MOTTATT, base + timedelta(seconds=10), "late MOTTATT")
    in_file = _status_file(h, record).findtext("s:current", namespaces=NS)
    listing = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--config", str(h.config.source)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    [line] = [line for line in listing.splitlines() if line.startswith(record.message_id)]
    assert in_file == "LEST" and line.split()[2] == "LEST"
    detail = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--config", str(h.config.source), record.message_id],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "current LEST" in detail.splitlines()[0]


class _Registry:
    def lookup(self, identifier, process, security_level=None, conversation_id=None):
        record = ServiceRecord("DPO", process, (), "-----BEGIN CERTIFICATE-----", None, None, None, 3, None, identifier)
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), [record])


class _RefusingChannel:
    """A channel whose every upload fails the same way: the broker says 503."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def validate(self, message, service):
        return []

    def prepare(self, message, service, work):
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, b"package")

    def already_sent(self, reference):
        return False

    def describe(self, package):
        return ""

    def send(self, package, reference, on_reference):
        raise RetryableChannelError("the broker refused the upload: 503 Service Unavailable (maintenance)")


def test_sends_failing_until_the_deadline_end_as_feil_with_the_last_error_in_words(harness):
    h = harness(quiet_period_seconds=0)
    deadline = h.clock.now() + timedelta(minutes=5)
    make_folder_drop(h.outbox, "feiler", sidecar=sidecar_xml(extra=f"<deadline>{isoformat(deadline)}</deadline>"))
    h.run()
    [record] = h.journal.in_phase(Phase.ACCEPTED)
    sender = Sender(h.config, h.journal, h.statuses, h.clock, _Registry(), {"DPO": _RefusingChannel()},
                    retry=RetryPolicy(first_seconds=60))
    try:
        for _ in range(10):
            sender.send_one(h.journal.get(record.row))
            h.clock.advance(61)
    finally:
        sender.close()
    failed = h.journal.get(record.row)
    assert failed.phase == Phase.FAILED
    root = _status_file(h, failed)
    assert root.findtext("s:current", namespaces=NS) == "FEIL"
    feil = [e for e in root.findall("s:history/s:status", NS) if e.findtext("s:value", namespaces=NS) == "FEIL"]
    description = feil[0].findtext("s:description", namespaces=NS)
    assert "the deadline passed while sending kept failing" in description
    assert "the broker refused the upload: 503" in description


def test_the_expiry_sweep_also_ends_a_failing_message_as_feil_with_its_last_error(harness):
    h = harness(quiet_period_seconds=0)
    deadline = h.clock.now() + timedelta(minutes=5)
    make_folder_drop(h.outbox, "sveip", sidecar=sidecar_xml(extra=f"<deadline>{isoformat(deadline)}</deadline>"))
    h.run()
    [record] = h.journal.in_phase(Phase.ACCEPTED)
    h.journal.update(record.row, attempts=3, detail={**record.detail, "last_error": "network error (ConnectError)"})
    h.clock.advance(600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    failed = h.journal.get(record.row)
    assert failed.phase == Phase.FAILED
    assert any("network error (ConnectError)" in error for error in failed.errors)
    assert [e.status for e in h.journal.events(record.row)][-1] == Status.FEIL


class _DownChannel:
    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self) -> None:
        self.tries = 0

    def send_status(self, sbd):
        self.tries += 1
        raise RetryableChannelError("network error (ConnectError: connection refused)")


def test_an_owed_status_message_is_retried_until_an_hour_past_the_incoming_messages_deadline_then_given_up(
    harness, caplog
):
    h = harness(quiet_period_seconds=0)
    record = h.journal.create(
        direction="in", message_id="3f2b8f0e-8d1c-4c35-9a57-2d7f3c1e6b90", status_name="in.x.xml",
        phase=Phase.RECEIVED, sender="910075918", receiver="991825827",
        conversation_id="6a1f0c7e-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
        process="urn:no:difi:profile:arkivmelding:administrasjon:ver1.0", channel="DPO",
        deadline=h.clock.now() + timedelta(minutes=10),
    )
    h.journal.queue_status_send(record.row, Status.MOTTATT)
    channel = _DownChannel()
    status_sender = StatusSender(h.journal, h.clock, {"DPO": channel}, "991825827",
                                 retry=RetryPolicy(first_seconds=60), workers=1)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(100):  # 100 minutes: the deadline after 10, an hour's grace past it
                status_sender.send_due()
                h.clock.advance(61)
    finally:
        status_sender.close()
    assert h.journal.due_status_sends() == []
    assert 3 <= channel.tries <= 12, "retried with back-off, not in a tight loop, and not past the grace"
    given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 1 and "deadline" in given_up[0]
