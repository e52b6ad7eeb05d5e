"""The seam's `signs_payloads`: a channel whose messages are signed (DPO) never lets an unsigned one
through; only a channel whose transport vouches for the sender (DPF) delivers without a signer."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from gateway.channels.base import InboundMessage
from gateway.channels.dpf.channel import DPF_CAPABILITIES
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.contract.sidecar import read_sidecar
from gateway.contract.statuses import Status
from gateway.formats.business import Status as StatusMessage
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd
from gateway.journal.phases import Phase
from tests.dpo.network import A, B
from tests.dpo.test_inbox_handover import TRANSFER, OneMessageChannel, _receiver, one_message_setting


class SignatureStripped(OneMessageChannel):
    """DPO's reading of a package, but the extract forgets who signed it."""

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        opened = super().open_inbound(reference, download, work)
        inner = opened.extract
        assert inner is not None
        return dataclasses.replace(
            opened, extract=lambda target, durable: dataclasses.replace(inner(target, durable), signer=None))


def _take(tmp_path: Path, capabilities):
    config, identity, trust, plain_channel, message_id = one_message_setting(tmp_path)
    channel = SignatureStripped(plain_channel.package, identity, trust)
    channel.capabilities = capabilities
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.take(TRANSFER)
    finally:
        receiver.close()
    return config, journal.find_live("in", message_id), message_id


def test_an_unsigned_message_on_a_signing_channel_is_quarantined(tmp_path):
    config, record, message_id = _take(tmp_path, DPO_CAPABILITIES)
    assert record is not None and record.phase == Phase.QUARANTINED
    assert "carries no signature" in " ".join(record.errors)
    assert not (config.folders.inbox / message_id).exists()


def test_where_the_transport_vouches_an_unsigned_message_is_delivered(tmp_path):
    config, record, message_id = _take(tmp_path, dataclasses.replace(DPO_CAPABILITIES, signs_payloads=False))
    assert record is not None and record.phase == Phase.IN_INBOX
    assert (config.folders.inbox / message_id / "brev.pdf").exists()
    assert DPF_CAPABILITIES.signs_payloads is False


STATED = "the sender is only what the forsendelse's reply-to address (svarSendesTil) says"


class SenderStatedOnly(SignatureStripped):
    """A channel like DPF: no signature, and a transport that names no sender; the SBD's sender is only stated."""

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        return dataclasses.replace(super().open_inbound(reference, download, work), transport_sender=None,
                                   sender_unverified=STATED)


def test_a_sender_nobody_vouches_for_is_delivered_with_words_saying_so(tmp_path):
    config, identity, trust, plain_channel, message_id = one_message_setting(tmp_path)
    channel = SenderStatedOnly(plain_channel.package, identity, trust)
    channel.capabilities = DPF_CAPABILITIES
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.take(TRANSFER)
        record = journal.find_live("in", message_id)
        assert record is not None and record.phase == Phase.IN_INBOX
        [received] = [e for e in journal.events(record.row) if e.status == Status.INNKOMMENDE_MOTTATT]
        assert f"not verified: {STATED}" in (received.description or "")
    finally:
        receiver.close()
    described, problems = read_sidecar((config.folders.inbox / message_id / "message.xml").read_bytes())
    assert described is not None, problems
    assert described.sender == A and described.sender_not_verified == STATED


def _status_about_ours(tmp_path: Path, vouched: bool) -> tuple[Phase, list[str]]:
    """Our message to A is SENT; a LEVERT status message naming it arrives from A, vouched for or not."""
    config, identity, trust, plain_channel, _ = one_message_setting(tmp_path)
    ours = str(uuid.uuid4())
    status = new_sbd(sender=A, receiver=B, business_message=StatusMessage(status="LEVERT"),
                     process=ARKIVMELDING_PROCESS, created=datetime.now(UTC), conversation_id=ours, message_id=ours,
                     message_type="status")

    class StatusChannel(SignatureStripped):
        def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
            return InboundMessage(status, None, transport_sender=A if vouched else None,
                                  sender_unverified="" if vouched else STATED)

    channel = StatusChannel(plain_channel.package, identity, trust)
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        record = journal.create(direction="out", message_id=ours, status_name=f"x.{ours}.xml", phase=Phase.ACCEPTED,
                                drop_name="x", receiver=A)
        journal.move(record.row, Phase.SENDING, channel="DPO", detail={"reference": "t"})
        journal.move(record.row, Phase.SENT)
        receiver.take(TRANSFER)
        after = journal.get(record.row)
        return after.phase, [event.status.value for event in journal.events(record.row)]
    finally:
        receiver.close()


def test_a_status_whose_sender_nobody_vouches_for_never_changes_ours(tmp_path, caplog):
    phase, statuses = _status_about_ours(tmp_path / "stated", vouched=False)
    assert "LEVERT" not in statuses and phase == Phase.SENT
    assert any("dropped, not applied" in r.getMessage() and STATED in r.getMessage() for r in caplog.records)
    # The same status with the transport's word for its sender is applied: the refusal above is the sender's.
    phase, statuses = _status_about_ours(tmp_path / "vouched", vouched=True)
    assert "LEVERT" in statuses
