"""A send that fails after the broker gave it a transfer resumes that transfer: never a second one."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.devcerts import create_dev_pki, dev_identity
from gateway.errors import RetryableChannelError
from gateway.journal.phases import Phase
from gateway.outbound.sender import RetryPolicy, Sender
from gateway.routing.registry import InfoRecord, RegistryAnswer, ServiceRecord

from .drops import OUR_ORGNR, VALID_RECEIVER, make_folder_drop


class _Registry:
    def __init__(self, certificate_pem: str) -> None:
        self.certificate_pem = certificate_pem

    def lookup(self, identifier, process, security_level=None, conversation_id=None):
        record = ServiceRecord(
            "DPO",
            process,
            ("urn:no:difi:arkivmelding:xsd::arkivmelding",),
            self.certificate_pem,
            None,
            None,
            None,
            4,
            None,
            identifier,
        )
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), [record])


class _FlakyChannel:
    """Gives the message a transfer, then loses the connection during the first upload."""

    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(self) -> None:
        self.references_seen: list[str | None] = []
        self.prepared: list[str] = []

    def validate(self, message, service):
        return []

    def prepare(self, message, service, work):
        self.prepared.append(message.sbd.message_id)
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, b"package")

    def already_sent(self, reference):
        return False

    def describe(self, package):
        return ""

    def send(self, package, reference, on_reference):
        self.references_seen.append(reference)
        if reference is None:
            on_reference("transfer-1")
            raise RetryableChannelError("the connection broke during the upload")
        return reference


def test_a_retry_after_a_failed_upload_resumes_the_same_transfer(harness, tmp_path):
    h = harness(quiet_period_seconds=0)
    pki = create_dev_pki(tmp_path / "pki", {OUR_ORGNR: "Oss", VALID_RECEIVER: "Mottaker"})
    receiver_pem = dev_identity(pki, VALID_RECEIVER).certificate.public_bytes(serialization.Encoding.PEM).decode()
    make_folder_drop(h.outbox, "brev")
    h.run()
    [record] = h.journal.in_phase(Phase.ACCEPTED)
    channel = _FlakyChannel()
    sender = Sender(
        h.config,
        h.journal,
        h.statuses,
        h.clock,
        _Registry(receiver_pem),
        {"DPO": channel},
        retry=RetryPolicy(first_seconds=1),
    )
    try:
        sender.send_one(record)
        after_failure = h.journal.get(record.row)
        assert after_failure.phase == Phase.SENDING
        assert after_failure.detail["reference"] == "transfer-1", "the retry must know the transfer it started"
        assert after_failure.attempts == 1
        h.clock.advance(5)
        sender.send_one(after_failure)
    finally:
        sender.close()
    assert channel.references_seen == [None, "transfer-1"]
    assert h.journal.get(record.row).phase == Phase.SENT


class _DpvRegistry:
    def lookup(self, identifier, process, security_level=None, conversation_id=None):
        record = ServiceRecord("DPV", process, (), None, None, "4255", "10", 3, "eformidling-dpv-administrasjon")
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), [record])


class _UnsureChannel(_FlakyChannel):
    """Cannot tell whether an interrupted upload finished: the broker is down."""

    def already_sent(self, reference):
        raise RetryableChannelError("network error (ConnectError)")


def _sending_with_a_reference(h, channel_name: str = "DPO"):
    make_folder_drop(h.outbox, "brev")
    h.run()
    [record] = h.journal.in_phase(Phase.ACCEPTED)
    # As a journal from before the route was cached: the channel and its transfer, no service record.
    h.journal.move(record.row, Phase.SENDING, channel=channel_name, route_reason="DPO record",
                   detail={**record.detail, "reference": "transfer-1"})
    return h.journal.get(record.row)


def test_past_its_deadline_a_send_that_cannot_be_checked_backs_off_instead_of_spinning(harness):
    h = harness(quiet_period_seconds=0)
    record = _sending_with_a_reference(h)
    h.clock.advance(2 * 86400)  # past the default 24 h deadline
    sender = Sender(h.config, h.journal, h.statuses, h.clock, _Registry("pem"), {"DPO": _UnsureChannel()},
                    retry=RetryPolicy(first_seconds=20, jitter=0))
    try:
        sender.send_one(h.journal.get(record.row))
    finally:
        sender.close()
    after = h.journal.get(record.row)
    assert after.phase == Phase.SENDING, "not expired: it may have been sent"
    assert after.next_attempt_at is not None and after.next_attempt_at >= h.clock.now().timestamp() + 19
    assert h.journal.due_rows((Phase.SENDING,), h.clock.now().timestamp(), 10, set()) == []


def test_a_send_under_way_on_one_channel_never_moves_to_another(harness):
    h = harness(quiet_period_seconds=0)
    record = _sending_with_a_reference(h)
    channels = {"DPO": _FlakyChannel(), "DPV": _FlakyChannel()}
    sender = Sender(h.config, h.journal, h.statuses, h.clock, _DpvRegistry(), channels)
    try:
        sender.send_one(h.journal.get(record.row))
    finally:
        sender.close()
    failed = h.journal.get(record.row)
    assert failed.phase == Phase.FAILED
    assert "changed from DPO to DPV while a send on DPO (transfer-1) was under way" in failed.errors[-1]
    assert channels["DPV"].references_seen == [] and channels["DPO"].references_seen == []
