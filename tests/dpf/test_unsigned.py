"""The seam's `signs_payloads`: a channel whose messages are signed (DPO) never lets an unsigned one
through; only a channel whose transport vouches for the sender (DPF) delivers without a signer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import BinaryIO

from gateway.channels.base import InboundMessage
from gateway.channels.dpf.channel import DPF_CAPABILITIES
from gateway.channels.dpo.channel import DPO_CAPABILITIES
from gateway.journal.phases import Phase
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
