"""Small messages are packed and opened in memory, large ones through files; both give the same message."""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.channels.dpo import package as pack_module
from gateway.channels.dpo import unpack as unpack_module
from gateway.channels.dpo.package import pack_message
from gateway.channels.dpo.unpack import open_package, open_payload
from gateway.devcerts import create_dev_pki, dev_identity
from gateway.errors import SecurityError
from gateway.formats.asice import AsicDocument
from gateway.formats.business import Arkivmelding
from gateway.formats.keys import TrustStore
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd, to_json
from gateway.inbound import receiver as receiver_module

from .network import A, B
from .test_inbox_handover import TRANSFER, _receiver, one_message_setting


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    pki = create_dev_pki(tmp_path_factory.mktemp("pki"), {A: "A", B: "B"})
    return dev_identity(pki, A), dev_identity(pki, B), TrustStore.from_pem_files([pki.trust_bundle])


def _message(tmp_path: Path) -> tuple:
    pdf = tmp_path / "brev.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(20_000))
    sbd = new_sbd(
        sender=A, receiver=B, business_message=Arkivmelding(sikkerhetsnivaa=3), process=ARKIVMELDING_PROCESS,
        created=datetime.now(UTC), message_id=str(uuid.uuid4()),
    )
    documents = [
        AsicDocument("arkivmelding.xml", b"<arkivmelding/>", "application/xml"),  # built in memory
        AsicDocument("brev.pdf", pdf, "application/pdf"),  # streamed from the drop
    ]
    return sbd, documents, pdf.read_bytes()


def test_a_small_message_is_packed_and_opened_without_a_file(parties, tmp_path):
    sender, receiver, trust = parties
    sbd, documents, pdf = _message(tmp_path)
    work = tmp_path / "work"
    package = pack_message(sbd, documents, sender, receiver.certificate, work)
    assert isinstance(package, bytes)
    received = open_package(io.BytesIO(package), work)
    assert isinstance(received.encrypted_asic, bytes)
    contents = open_payload(received, work, tmp_path / "inbox", receiver, trust)
    assert not work.exists(), "nothing of a small message may touch the disk but its documents"
    assert received.sbd.message_id == sbd.message_id
    assert contents.main_document == "arkivmelding.xml"
    assert (tmp_path / "inbox" / "brev.pdf").read_bytes() == pdf
    assert (tmp_path / "inbox" / "arkivmelding.xml").read_bytes() == b"<arkivmelding/>"


def test_a_large_message_streams_through_files_and_opens_the_same(parties, tmp_path, monkeypatch):
    monkeypatch.setattr(pack_module, "IN_MEMORY_LIMIT", 1024)
    monkeypatch.setattr(unpack_module, "IN_MEMORY_LIMIT", 1024)
    sender, receiver, trust = parties
    sbd, documents, pdf = _message(tmp_path)
    work = tmp_path / "work"
    package = pack_message(sbd, documents, sender, receiver.certificate, work)
    assert package == work / "sbd.zip"
    assert os.listdir(work) == ["sbd.zip"], "the intermediate files are gone"
    opened = tmp_path / "opened"
    received = open_package(package, opened)
    assert received.encrypted_asic == opened / "asic.zip"
    open_payload(received, opened, tmp_path / "inbox", receiver, trust)
    assert (tmp_path / "inbox" / "brev.pdf").read_bytes() == pdf
    assert os.listdir(opened) == ["asic.zip"], "the decrypted container is not left behind"


def test_a_small_zip_bomb_is_refused_in_memory_too(tmp_path):
    sbd = new_sbd(
        sender=A, receiver=B, business_message=Arkivmelding(), process=ARKIVMELDING_PROCESS, created=datetime.now(UTC)
    )
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("sbd.json", to_json(sbd))
        archive.writestr("asic.zip", b"\0" * (3 << 20))  # under the in-memory limit, a thousandfold expansion
    package.seek(0)
    with pytest.raises(SecurityError, match="zip bomb"):
        open_package(package, tmp_path / "work")


def test_a_download_over_the_memory_limit_rolls_over_to_disk_and_is_delivered(tmp_path, monkeypatch):
    config, identity, trust, channel, message_id = one_message_setting(tmp_path)
    monkeypatch.setattr(receiver_module, "IN_MEMORY_LIMIT", 1024)
    monkeypatch.setattr(unpack_module, "IN_MEMORY_LIMIT", 1024)
    receiver, journal = _receiver(config, identity, trust, channel)
    try:
        assert receiver.take(TRANSFER)
        assert os.listdir(config.folders.inbox) == [message_id]
        assert sorted(os.listdir(config.folders.inbox / message_id)) == ["brev.pdf", "message.xml"]
        assert channel.acknowledged
        assert os.listdir(config.folders.state / "incoming" / "dpo") == [], "the download's files are cleaned up"
    finally:
        receiver.close()
        receiver.statuses.close()
        journal.close()

