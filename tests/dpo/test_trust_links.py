"""Trust on the way in: the transport's sender, the SBD's sender and the ASiC signer must be one
organisation (or a signing service config allows for that sender), and a status or kvittering
changes our message only when it comes from that message's receiver."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.channels.dpo.package import pack_in_memory, pack_message
from gateway.config import load_config
from gateway.contract.statuses import Status
from gateway.devcerts import create_dev_pki, dev_identity
from gateway.folders import prepare_folders
from gateway.formats.asice import AsicDocument
from gateway.formats.business import Arkivmelding, ArkivmeldingKvittering
from gateway.formats.business import Status as StatusMessage
from gateway.formats.keys import TrustStore
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd
from gateway.journal.phases import Phase
from tests.foundation.drops import write_config

from .network import A, B
from .test_inbox_handover import TRANSFER, OneMessageChannel, _receiver

C = "974760673"  # a third organisation: a shared IT service, or a stranger
NS = {"m": "urn:efm-gateway:message:1"}


def _setting(tmp_path: Path, extra_config: str = ""):
    pki = create_dev_pki(tmp_path / "pki", {A: "A", B: "B", C: "C"})
    identities = {orgnr: dev_identity(pki, orgnr) for orgnr in (A, B, C)}
    root = tmp_path / "b"
    root.mkdir()
    config_path = write_config(root)
    config_path.write_text(config_path.read_text().replace('orgnr: "991825827"', f'orgnr: "{B}"') + extra_config)
    config = load_config(config_path)
    prepare_folders(config)
    return config, identities, TrustStore.from_pem_files([pki.trust_bundle])


def _business_package(tmp_path: Path, identities, signer: str, sender: str = A) -> tuple[bytes, str]:
    document = tmp_path / "brev.pdf"
    document.write_bytes(b"%PDF-1.4 brev")
    sbd = new_sbd(sender=sender, receiver=B, business_message=Arkivmelding(sikkerhetsnivaa=3),
                  process=ARKIVMELDING_PROCESS, created=datetime.now(UTC), message_id=str(uuid.uuid4()))
    package = pack_message(sbd, [AsicDocument("brev.pdf", document, "application/pdf")], identities[signer],
                           identities[B].certificate, tmp_path / "out")
    return package, sbd.message_id


def _take(config, identities, trust, package: bytes, transport_sender: str):
    channel = OneMessageChannel(package, identities[B], trust)
    channel.sender = transport_sender
    receiver, journal = _receiver(config, identities[B], trust, channel)
    try:
        assert receiver.take(TRANSFER)
        receiver.statuses.flush()
    finally:
        receiver.close()
    return receiver, journal, channel


def _quarantine_reason(journal, message_id: str) -> str:
    record = journal.find_live("in", message_id)
    assert record is not None and record.phase == Phase.QUARANTINED
    return " ".join(record.errors)


def test_a_transport_sender_other_than_the_sbds_sender_is_quarantined_naming_both(tmp_path):
    config, identities, trust = _setting(tmp_path)
    package, message_id = _business_package(tmp_path, identities, signer=A)
    receiver, journal, channel = _take(config, identities, trust, package, transport_sender=C)
    try:
        reason = _quarantine_reason(journal, message_id)
        assert f"DPO says {C} sent it, but its SBD names {A} as the sender" in reason
        assert os.listdir(config.folders.inbox) == [] and channel.acknowledged
    finally:
        receiver.statuses.close()
        journal.close()


def test_a_signer_other_than_the_sender_is_quarantined_naming_both(tmp_path):
    config, identities, trust = _setting(tmp_path)
    package, message_id = _business_package(tmp_path, identities, signer=C)
    receiver, journal, _channel = _take(config, identities, trust, package, transport_sender=A)
    try:
        reason = _quarantine_reason(journal, message_id)
        assert f"signed by {C}" in reason and f"names {A} as the sender" in reason
        assert "trust.signing_services" in reason
        assert os.listdir(config.folders.inbox) == []
    finally:
        receiver.statuses.close()
        journal.close()


def test_a_signing_service_allowed_by_config_is_accepted_and_named_beside_the_sender(tmp_path):
    config, identities, trust = _setting(tmp_path, f'trust:\n  signing_services:\n    "{C}": ["{A}"]\n')
    package, message_id = _business_package(tmp_path, identities, signer=C)
    receiver, journal, _channel = _take(config, identities, trust, package, transport_sender=A)
    try:
        record = journal.find_live("in", message_id)
        assert record is not None and record.phase == Phase.IN_INBOX
        described = etree.parse(str(config.folders.inbox / message_id / "message.xml")).getroot()
        assert described.findtext("m:sender", namespaces=NS) == A
        assert described.findtext("m:signedBy", namespaces=NS) == C
        [event] = [e for e in journal.events(record.row) if e.status == Status.INNKOMMENDE_MOTTATT]
        assert f"signed by {C} for {A}" in (event.description or "")
    finally:
        receiver.statuses.close()
        journal.close()


def _our_message_to(journal, receiver_orgnr: str) -> int:
    message_id = str(uuid.uuid4())
    record = journal.create(direction="out", message_id=message_id, status_name=f"x.{message_id}.xml",
                            phase=Phase.ACCEPTED, drop_name="x", receiver=receiver_orgnr, sender=B)
    journal.move(record.row, Phase.SENDING, channel="DPO", detail={"reference": "t", "expects_receipt": True})
    journal.move(record.row, Phase.SENT)
    return record.row


def _about(message_id: str, sender: str, business):
    """A status (which reuses our message's id) or a kvittering (its own id) from `sender` to us."""
    own_id = message_id if isinstance(business, StatusMessage) else str(uuid.uuid4())
    return new_sbd(sender=sender, receiver=B, business_message=business, process=ARKIVMELDING_PROCESS,
                   created=datetime.now(UTC), message_id=own_id)


@pytest.mark.parametrize(
    ("what", "sbd_sender", "transport_sender"),
    [("status", C, C), ("status", A, C), ("kvittering", C, C), ("kvittering", A, C)],
    ids=["status from a stranger", "status whose transport is another", "kvittering from a stranger",
         "kvittering whose transport is another"],
)
def test_a_forged_status_or_kvittering_is_dropped_and_our_message_is_unchanged(
    tmp_path, caplog, what, sbd_sender, transport_sender
):
    config, identities, trust = _setting(tmp_path)
    channel = OneMessageChannel(b"", identities[B], trust)
    receiver, journal = _receiver(config, identities[B], trust, channel)
    try:
        row = _our_message_to(journal, A)
        message_id = journal.get(row).message_id
        business = (StatusMessage(status="LEVERT") if what == "status"
                    else ArkivmeldingKvittering(receipt_type="OK", related_to_message_id=message_id))
        sbd = _about(message_id, sbd_sender, business)
        channel.package = pack_in_memory(sbd, [], identities[sbd_sender], None)
        channel.sender = transport_sender
        with caplog.at_level(logging.WARNING):
            assert receiver.take(TRANSFER)
        assert [e.status for e in journal.events(row)] == [], "nothing applied"
        assert journal.get(row).phase == Phase.SENT
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("dropped, not applied" in line for line in warnings), warnings

        # The same from the message's receiver, through its own transport, counts.
        channel.acknowledged = False
        sbd = _about(message_id, A, business)
        channel.package = pack_in_memory(sbd, [], identities[A], None)
        channel.sender = A
        assert receiver.take(TRANSFER)
        expected = Status.LEVERT if what == "status" else Status.LEST
        assert expected in [e.status for e in journal.events(row)]
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()


def test_a_transfer_whose_channel_names_no_sender_is_not_trusted(tmp_path):
    config, identities, trust = _setting(tmp_path)
    package, message_id = _business_package(tmp_path, identities, signer=A)
    receiver, journal, _channel = _take(config, identities, trust, package, transport_sender=None)
    try:
        assert "DPO did not say who sent it" in _quarantine_reason(journal, message_id)
        assert os.listdir(config.folders.inbox) == []
    finally:
        receiver.statuses.close()
        journal.close()
