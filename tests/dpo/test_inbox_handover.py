"""The hand-over to the inbox survives a crash at its worst moment: after the journal says "in the
inbox" and before the folder is renamed there. The message reaches the archive exactly once."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from gateway.channels.dpo.channel import DpoChannel
from gateway.channels.dpo.package import pack_message
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.contract.statuses import Status
from gateway.devcerts import create_dev_pki, dev_identity
from gateway.folders import prepare_folders
from gateway.formats.asice import AsicDocument
from gateway.formats.business import Arkivmelding
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd
from gateway.inbound import inbox as inbox_module
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import Receiver
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter
from tests.foundation.drops import write_config

from .network import A, B

TRANSFER = "5d0c3c52-4f1e-4c55-9a8e-0d1f2e3a4b5c"


class OneMessageChannel(DpoChannel):
    """DPO's reading of packages, with a broker holding one package for us until it is acknowledged."""

    def __init__(self, package: bytes, identity: OrgIdentity, trust: TrustStore) -> None:
        super().__init__(None, "eformidling-dpo-meldingsutveksling", identity, trust, SystemClock())  # type: ignore[arg-type]
        self.package = package
        self.acknowledged = False
        self.sender: str | None = A

    def list_inbound(self) -> list[str]:
        return [] if self.acknowledged else [TRANSFER]

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        return target.write(self.package)

    def acknowledge_inbound(self, reference: str) -> None:
        self.acknowledged = True

    def reject_inbound(self, reference: str, reason: str) -> None:
        self.acknowledged = True

    def transport_sender(self, reference: str) -> str | None:
        return self.sender  # the broker's word for who sent the transfer


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs."""


@pytest.fixture
def setting(tmp_path):
    return one_message_setting(tmp_path)


def one_message_setting(tmp_path: Path):
    """A receiving gateway's config, identity and trust, and a channel offering one message to it."""
    pki = create_dev_pki(tmp_path / "pki", {A: "A", B: "B"})
    sender, receiver_identity = dev_identity(pki, A), dev_identity(pki, B)
    document = tmp_path / "brev.pdf"
    document.write_bytes(b"%PDF-1.4 brev")
    sbd = new_sbd(
        sender=A,
        receiver=B,
        business_message=Arkivmelding(sikkerhetsnivaa=3),
        process=ARKIVMELDING_PROCESS,
        created=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
    )
    package = pack_message(
        sbd,
        [AsicDocument("brev.pdf", document, "application/pdf")],
        sender,
        receiver_identity.certificate,
        tmp_path / "out",
    )
    root = tmp_path / "b"
    root.mkdir()
    config_path = write_config(root)
    config_path.write_text(config_path.read_text().replace('orgnr: "991825827"', f'orgnr: "{B}"'))
    config = load_config(config_path)
    prepare_folders(config)
    trust = TrustStore.from_pem_files([pki.trust_bundle])
    return config, receiver_identity, trust, OneMessageChannel(package, receiver_identity, trust), sbd.message_id


def _receiver(config, identity, trust, channel) -> tuple[Receiver, Journal]:
    journal = Journal(config.folders.journal_path, SystemClock())
    statuses = StatusWriter(journal, config.folders.status, SystemClock())
    return Receiver(config, journal, statuses, SystemClock(), channel, Inbox(config, journal, statuses)), journal


def test_a_crash_between_journal_and_rename_delivers_the_message_once(setting, monkeypatch):
    config, identity, trust, channel, message_id = setting
    receiver, journal = _receiver(config, identity, trust, channel)

    def crash(*_args: object) -> None:
        raise Crash

    monkeypatch.setattr(inbox_module, "durable_rename", crash)
    with pytest.raises(Crash):
        receiver.take(TRANSFER)
    monkeypatch.undo()
    # The journal says IN_INBOX; the folder is still in staging; the channel still offers the message.
    assert journal.find_live("in", message_id).phase == Phase.IN_INBOX
    assert os.listdir(config.folders.inbox) == []
    assert not channel.acknowledged
    assert receiver.inbox.check_picked_up() == 0, "a message still in transit must not look taken"
    receiver.close()
    receiver.statuses.close()
    journal.close()

    # Restart: the hand-over is finished first, then the channel offers the message again.
    receiver, journal = _receiver(config, identity, trust, channel)
    assert receiver.inbox.recover() == 1
    assert os.listdir(config.folders.inbox) == [message_id]
    shutil.rmtree(config.folders.inbox / message_id)  # the archive system takes it
    receiver.poll()
    assert channel.acknowledged
    assert os.listdir(config.folders.inbox) == [], "the message must not be handed over a second time"
    assert receiver.inbox.check_picked_up() == 0, "gone once could be a share's hiccup"
    assert receiver.inbox.check_picked_up() == 1, "gone twice in a row: the archive system took it"
    record = journal.find_live("in", message_id)
    assert record.phase == Phase.TAKEN
    assert [event.status for event in journal.events(record.row)] == [
        Status.INNKOMMENDE_MOTTATT,
        Status.INNKOMMENDE_LEVERT,
    ]
    receiver.close()
    receiver.statuses.close()
    journal.close()


def test_a_transfer_id_that_looks_like_a_path_is_escaped_never_followed(setting):
    """Transfer ids are the channel's opaque strings: `..`, `.` and `/` in one name no folder but its own."""
    config, identity, trust, channel, message_id = setting
    sentinel = config.folders.state / "sentinel"
    sentinel.write_text("the state folder's own file\n")
    downloads = config.folders.state / "incoming" / "dpo"
    receiver, journal = _receiver(config, identity, trust, channel)
    hostile = ["..", ".", "../../etc"]
    try:
        channel.list_inbound = lambda: [] if channel.acknowledged else hostile
        assert receiver.poll() == 3  # the message reaches the inbox once; its other transfers are duplicates
        assert sentinel.exists(), "the state folder must survive a hostile transfer id"
        assert os.listdir(config.folders.inbox) == [message_id]
        assert downloads.is_dir() and os.listdir(downloads) == []
        assert not (config.folders.state / "etc").exists()
        record = journal.find_live("in", message_id)
        assert record is not None and record.detail["reference"] in hostile  # the channel's id, unescaped
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()


def test_an_inbox_on_another_file_system_than_at_start_is_not_taken_for_a_pick_up(setting):
    config, identity, trust, channel, message_id = setting
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        receiver.poll()
        assert os.listdir(config.folders.inbox) == [message_id]
        shutil.rmtree(config.folders.inbox / message_id)
        receiver.inbox._inbox_device = -1  # as if the share was unmounted: the folder now lies on the root file system
        assert receiver.inbox.check_picked_up() == 0
        assert receiver.inbox.check_picked_up() == 0
        assert journal.find_live("in", message_id).phase == Phase.IN_INBOX
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()


def test_every_file_and_folder_is_on_disk_before_the_journal_says_in_the_inbox(setting, monkeypatch):
    """After a power cut the message must be whole in staging or in the inbox, never torn or missing from both
    (which would look like a pick-up): each document, message.xml, the message folder and the staging folder
    itself are fsynced before IN_INBOX is committed."""
    config, identity, trust, channel, message_id = setting
    synced: set[str] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    receiver, journal = _receiver(config, identity, trust, channel)
    synced_at_commit: set[str] = set()
    real_move = journal.move

    def recording_move(row, phase, **fields):
        if phase == Phase.IN_INBOX:
            synced_at_commit.update(synced)
        return real_move(row, phase, **fields)

    monkeypatch.setattr(journal, "move", recording_move)
    try:
        assert receiver.take(TRANSFER)
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()
    staging = config.folders.inbox_staging / message_id
    assert sorted(os.listdir(config.folders.inbox / message_id)) == ["brev.pdf", "message.xml"]
    for path in (staging / "brev.pdf", staging / "message.xml", staging, config.folders.inbox_staging):
        assert str(path) in synced_at_commit, f"{path} was not fsynced before IN_INBOX was committed"
