"""A channel's transfer ids are opaque to the receiver, and its packages are named with the channel's own
extension: a transfer whose id is no UUID and would be a path is received, quarantined, kept under an
escaped name, released by the operator and opened again under the channel's own id."""

from __future__ import annotations

import dataclasses
import os

from gateway.clock import SystemClock
from gateway.journal.phases import Phase
from gateway.operator.actions import release

from .network import A
from .test_inbox_handover import OneMessageChannel, _receiver, one_message_setting

ODD_ID = "../outbox/x.y z"  # a path, a dot, a space: the channel's word, nothing the receiver may follow


class OddIdChannel(OneMessageChannel):
    """One message behind a transfer id that is no UUID, in packages the channel calls `.pkg`."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.capabilities = dataclasses.replace(self.capabilities, package_suffix=".pkg")
        self.asked: list[tuple[str, str]] = []

    def list_inbound(self) -> list[str]:
        return [] if self.acknowledged else [ODD_ID]

    def fetch_inbound(self, reference, target):
        self.asked.append(("fetch", reference))
        return super().fetch_inbound(reference, target)

    def reject_inbound(self, reference: str, reason: str) -> None:
        self.asked.append(("reject", reference))
        super().reject_inbound(reference, reason)

    def acknowledge_inbound(self, reference: str) -> None:
        self.asked.append(("acknowledge", reference))
        super().acknowledge_inbound(reference)


def test_an_odd_transfer_id_is_quarantined_kept_released_and_delivered_under_the_channels_own_words(tmp_path):
    config, identity, trust, plain, message_id = one_message_setting(tmp_path)
    channel = OddIdChannel(plain.package, identity, trust)
    channel.sender = "974760673"  # the transport names another sender than the SBD: quarantined
    quarantine = config.folders.state / "quarantine"
    outbox_before = sorted(os.listdir(config.folders.outbox))
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.poll() == 1
        record = journal.find_live("in", message_id)
        assert record is not None and record.phase == Phase.QUARANTINED
        kept = f"{message_id}.%2E%2E%2Foutbox%2Fx%2Ey%20z.pkg"
        assert sorted(os.listdir(quarantine)) == [kept]
        assert record.detail["reference"] == ODD_ID and record.detail["kept"] == kept
        assert channel.asked == [("fetch", ODD_ID), ("reject", ODD_ID)]  # the channel hears its own id back
        assert sorted(os.listdir(config.folders.outbox)) == outbox_before, "nothing written beside the state"

        # The cause fixed, the operator releases it: opened again from the kept package under the channel's id.
        channel.sender = A
        lines = release(config, message_id, SystemClock())
        assert "receiver opens" in lines[-1]
        released = journal.find_live("in", message_id)
        assert released is not None and released.detail["released"]["reference"] == ODD_ID
        assert receiver.retake_released() == 1
        delivered = journal.find_live("in", message_id)
        assert delivered is not None and delivered.phase == Phase.IN_INBOX
        assert os.listdir(config.folders.inbox) == [message_id]
        assert os.listdir(quarantine) == [], "the kept package goes once the message is in the inbox"
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()


def test_an_id_that_would_forge_a_log_line_is_not_taken(tmp_path, caplog):
    config, identity, trust, plain, message_id = one_message_setting(tmp_path)
    receiver, journal = _receiver(config, identity, trust, plain)
    try:
        assert receiver.take("a\nERROR forged") is False
        assert journal.find_live("in", message_id) is None
        assert "malformed id 'a\\nERROR forged' (it holds control characters); ignored" in caplog.text
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()


def test_a_kept_package_whose_name_holds_no_transfer_id_goes_back_to_quarantine_on_release(tmp_path):
    config, identity, trust, plain, message_id = one_message_setting(tmp_path)
    channel = OddIdChannel(plain.package, identity, trust)
    channel.sender = "974760673"
    quarantine = config.folders.state / "quarantine"
    downloads = config.folders.state / "incoming" / "dpo"
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.poll() == 1
        record = journal.find_live("in", message_id)
        assert record is not None
        # Renamed by hand to a name with an empty transfer id: the work folder would be the download folder.
        nameless = f"{message_id}..pkg"
        os.rename(quarantine / record.detail["kept"], quarantine / nameless)
        journal.update(record.row, detail={**record.detail, "kept": nameless})
        channel.sender = A
        release(config, message_id, SystemClock())
        receiver.retake_released()
        again = journal.find_live("in", message_id)
        assert again is not None and again.phase == Phase.QUARANTINED
        assert "its transfer id '' cannot be taken: it is empty" in again.errors[0]
        assert downloads.is_dir() and os.listdir(config.folders.inbox) == []
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
