"""Incoming messages that fail verification are quarantined with a clear status, and the next
message still reaches the inbox."""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.devcerts import create_dev_pki, dev_identity
from gateway.formats.asice import write_asice
from gateway.formats.cms import encrypt_file
from gateway.formats.sbd import to_json
from gateway.sandbox.network import start_network
from tests.sandbox.peer_support import DPO_RESOURCE_ID, SendingGateway

from .network import FAST, A, B, Gateway, wait
from .statusfiles import NS


def _rewrite_zip(source: Path, target: Path, change) -> None:
    """Copy a zip entry by entry, letting `change(name, data)` return new (name, data) pairs."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as rewritten:
        for info in original.infolist():
            for name, data in change(info.filename, original.read(info)):
                rewritten.writestr(zipfile.ZipInfo(name), data, compress_type=info.compress_type)


def _package(sbd, asic: Path, recipient_cert, work: Path) -> Path:
    encrypted = work / "asic.zip"
    encrypt_file(asic, encrypted, recipient_cert)
    package = work / "sbd.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("sbd.json", to_json(sbd))
        archive.write(encrypted, "asic.zip")
    return package


@pytest.fixture
def setting(tmp_path):
    network = start_network(tmp_path / "sandbox", peers=())
    http = httpx.Client(timeout=30)
    b_root = tmp_path / "b"
    b_root.mkdir()
    settings = network.config_snippet(B)
    config = {
        **settings,
        "network": {**settings["network"], **FAST["network"]},
        "folders": {
            "create_missing": True,
            **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")},
        },
        "intake": FAST["intake"],
    }
    (b_root / "config.yaml").write_text(yaml.safe_dump(config))
    b = Gateway(b_root, b_root / "config.yaml").start()
    a = SendingGateway(network, A, http, tmp_path / "a-work")
    try:
        yield network, a, b, tmp_path
    finally:
        b.process.stop()
        http.close()
        network.stop()


def _send_raw(a: SendingGateway, sbd, package: Path) -> None:
    transfer = a.broker.initialise(DPO_RESOURCE_ID, f"0192:{A}", f"0192:{B}", "sbd.zip", sbd.message_id)
    a.broker.upload(transfer, package)


def _status_description(b: Gateway, message_id: str) -> tuple[str | None, str]:
    from lxml import etree

    path = b.status / f"in.{message_id}.xml"
    if not path.exists():
        return None, ""
    root = etree.parse(str(path)).getroot()
    descriptions = " | ".join(d.text or "" for d in root.findall("s:history/s:status/s:description", NS))
    return root.findtext("s:current", namespaces=NS), descriptions


def test_bad_incoming_messages_are_quarantined_and_the_next_one_arrives(setting):
    _network, a, b, tmp = setting
    b_cert = a.certificate_of(B)
    expected: dict[str, str] = {}

    def fresh(label: str):
        work = tmp / f"case-{label}"
        work.mkdir()
        sbd, documents = a.arkivmelding(B, label, message_id=str(uuid.uuid4()))
        plain = work / "asic.asice"
        return sbd, documents, plain, work

    # 1. Signed with a certificate from a CA that B does not trust.
    sbd, documents, plain, work = fresh("untrusted")
    stranger = dev_identity(create_dev_pki(tmp / "stranger-pki", {A: "Falsk avsender"}), A)
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, A, B, stranger)
    _send_raw(a, sbd, _package(sbd, plain, b_cert, work))
    expected[sbd.message_id] = "untrusted"

    # 2. A document changed after signing: its digest no longer matches the manifest.
    sbd, documents, plain, work = fresh("digest")
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, A, B, a.identity)
    changed = work / "changed.asice"
    _rewrite_zip(plain, changed, lambda n, d: [(n, d + b"tampered" if n == "vedtak.pdf" else d)])
    _send_raw(a, sbd, _package(sbd, changed, b_cert, work))
    expected[sbd.message_id] = "digest"

    # 3. An entry that climbs out of the folder it is extracted to.
    sbd, documents, plain, work = fresh("traversal")
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, A, B, a.identity)
    climbing = work / "climbing.asice"
    _rewrite_zip(plain, climbing, lambda n, d: [(n, d)] + ([("../evil.pdf", d)] if n == "vedtak.pdf" else []))
    _send_raw(a, sbd, _package(sbd, climbing, b_cert, work))
    expected[sbd.message_id] = ".."

    # 4. Encrypted to another organisation's certificate.
    sbd, documents, plain, work = fresh("wrong-recipient")
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, A, B, a.identity)
    _send_raw(a, sbd, _package(sbd, plain, a.identity.certificate, work))
    expected[sbd.message_id] = "another certificate"

    # Then a good message: it must not be held up by the bad ones.
    good, good_documents = a.arkivmelding(B, "good", message_id=str(uuid.uuid4()))
    a.send(good, good_documents)

    wait(lambda: (b.inbox / good.message_id).is_dir(), 60, message="the good message in B's inbox")
    wait(lambda: all(_status_description(b, m)[0] == "FEIL" for m in expected), 30, message="FEIL for every bad one")
    assert os.listdir(b.inbox) == [good.message_id]
    for message_id, words in expected.items():
        current, descriptions = _status_description(b, message_id)
        assert current == "FEIL"
        assert "quarantined" in descriptions and words in descriptions, (words, descriptions)
    kept = os.listdir(b.var / "state" / "quarantine")
    assert sorted(name.split(".")[0] for name in kept) == sorted(expected)
