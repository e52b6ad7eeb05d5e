"""Trust end to end, with real gateway daemons on a sandbox network whose dev CA answers CRL and OCSP.

Outgoing: receivers whose registry records serve a bad certificate end in FEIL with the reason, and nothing
goes to the broker for them; the good one goes. Incoming: messages signed by a revoked certificate, by a CA
certificate, or by one without digitalSignature are quarantined with the reason; the good one arrives.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from lxml import etree

from gateway.devcerts import DevPki, create_dev_pki, dev_identity, issue_identity, key_usage, revoke
from gateway.formats.asice import write_asice
from gateway.sandbox.catalogue import SandboxOrganisation
from gateway.sandbox.network import DPO_PROCESSES, SandboxNetwork, start_network
from gateway.sandbox.observer import Exchange
from tests.dpo.network import FAST, A, B, Gateway, wait
from tests.dpo.statusfiles import NS, current, status_of
from tests.dpo.test_quarantine import _package, _send_raw
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.sandbox.peer_support import SendingGateway

pytestmark = pytest.mark.slow

OTHER_ORG, EXPIRED, REVOKED, UNCHAINED = "944444440", "944444459", "944444467", "944444475"


def _pem(certificate) -> str:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def bad_receivers(stranger: Path) -> object:
    """Registry entries, made with the network's PKI, whose records serve a certificate that must be refused."""

    def make(pki: DevPki) -> list[SandboxOrganisation]:
        now = datetime.now(UTC)
        revoked = issue_identity(pki, REVOKED, "Tilbakekalt AS").certificate
        revoke(pki, revoked)
        served = {
            OTHER_ORG: dev_identity(pki, B).certificate,  # B's certificate in another organisation's record
            EXPIRED: issue_identity(pki, EXPIRED, "Utgått AS", not_before=now - timedelta(days=400),
                                    not_after=now - timedelta(days=2)).certificate,
            REVOKED: revoked,
            UNCHAINED: dev_identity(create_dev_pki(stranger, {UNCHAINED: "Fremmed CA AS"}), UNCHAINED).certificate,
        }
        return [SandboxOrganisation(orgnr, f"Mottaker {orgnr}", _pem(cert), {"DPO": set(DPO_PROCESSES)})
                for orgnr, cert in served.items()]

    return make


def daemon(network: SandboxNetwork, root: Path, orgnr: str) -> Gateway:
    root.mkdir(parents=True, exist_ok=True)
    settings = network.config_snippet(orgnr)
    config = {
        **settings,
        "network": {**settings["network"], **FAST["network"]},
        "folders": {"create_missing": True,
                    **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")}},
        "intake": FAST["intake"],
        "channels": {"dpo": {**settings["channels"]["dpo"], **FAST["channels"]["dpo"]}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return Gateway(root, root / "config.yaml").start()


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[SandboxNetwork, Path]]:
    network = start_network(tmp_path / "sandbox", extra_organisations=bad_receivers(tmp_path / "stranger"))  # type: ignore[arg-type]
    try:
        yield network, tmp_path
    finally:
        network.stop()


def _reason(folder: Path, message_id: str) -> str:
    root = status_of(folder, message_id)
    assert root is not None
    return " | ".join(e.text or "" for e in root.iter() if etree.QName(e).localname in ("description", "reason"))


def test_bad_receiver_certificates_end_in_feil_before_anything_is_sent_and_the_good_one_goes(setting) -> None:
    network, tmp = setting
    initialised: list[bytes] = []

    def watch(exchange: Exchange) -> None:
        if exchange.method == "POST" and exchange.path.endswith("/filetransfer"):
            initialised.append(exchange.request_body)

    network.server.observe(watch)
    a = daemon(network, tmp / "a", A)
    try:
        expected = {OTHER_ORG: f"the registry gave a certificate for {B}, not the receiver {OTHER_ORG}",
                    EXPIRED: "has expired", REVOKED: "is revoked", UNCHAINED: "untrusted issuer"}
        ids = {}
        for receiver in [*expected, "910075918"]:
            ids[receiver] = str(uuid.uuid4())
            sidecar = sidecar_xml(receiver=receiver, extra=f"<messageId>{ids[receiver]}</messageId>",
                                  documents=[{"file": "vedtak.pdf", "main": True, "mime": "application/pdf"}])
            make_folder_drop(a.outbox, f"til-{receiver}", files={"vedtak.pdf": pdf_bytes(receiver)},
                             sidecar=sidecar, staging=a.root / "staging")
        good = ids.pop("910075918")
        wait(lambda: current(a.status, good) in ("SENDT", "MOTTATT", "LEVERT"), 60, message="the good one sent")
        wait(lambda: all(current(a.status, m) == "FEIL" for m in ids.values()), 30, message="FEIL for each bad one")
        for receiver, words in expected.items():
            reason = _reason(a.status, ids[receiver])
            assert "refused before encrypting" in reason and words in reason, reason
            assert not any(ids[receiver].encode() in body for body in initialised)  # never reached the broker
        assert any(good.encode() in body for body in initialised)
        # Whose certificate the good one was encrypted to is in its status file.
        assert "encrypted to 910075918's own certificate" in _reason(a.status, good)
    finally:
        network.server.observe(None)
        a.process.stop()


def test_incoming_signers_revoked_ca_or_without_digital_signature_are_quarantined(setting) -> None:
    network, tmp = setting
    b = daemon(network, tmp / "b", B)
    http = httpx.Client(timeout=30)
    try:
        sender = SendingGateway(network, A, http, tmp / "a-work")
        b_cert = sender.certificate_of(B)
        revoked = issue_identity(network.pki, A, "Avsender med tilbakekalt sertifikat")
        revoke(network.pki, revoked.certificate)
        signers = {
            "is revoked": revoked,
            "is a CA certificate": issue_identity(
                network.pki, A, "Avsender CA", ca=True,
                usage=key_usage(digital_signature=True, key_encipherment=True, key_cert_sign=True)),
            "keyUsage lacks digitalSignature": issue_identity(
                network.pki, A, "Avsender uten signering", usage=key_usage(key_encipherment=True,
                                                                          content_commitment=True)),
        }
        expected = {}
        for words, identity in signers.items():
            work = tmp / f"case-{len(expected)}"
            work.mkdir()
            sbd, documents = sender.arkivmelding(B, words, message_id=str(uuid.uuid4()))
            plain = work / "asic.asice"
            with open(plain, "w+b") as handle:
                write_asice(handle, documents, A, B, identity)
            _send_raw(sender, sbd, _package(sbd, plain, b_cert, work))
            expected[sbd.message_id] = words
        good, good_documents = sender.arkivmelding(B, "good", message_id=str(uuid.uuid4()))
        sender.send(good, good_documents)

        wait(lambda: (b.inbox / good.message_id).is_dir(), 60, message="the good message in B's inbox")
        wait(lambda: all(current_in(b, m) == "FEIL" for m in expected), 30, message="FEIL for every bad one")
        assert os.listdir(b.inbox) == [good.message_id]
        for message_id, words in expected.items():
            assert words in _reason_in(b, message_id), _reason_in(b, message_id)
    finally:
        http.close()
        b.process.stop()


def current_in(gateway: Gateway, message_id: str) -> str | None:
    path = gateway.status / f"in.{message_id}.xml"
    if not path.exists():
        return None
    return etree.parse(str(path)).getroot().findtext("s:current", namespaces=NS)


def _reason_in(gateway: Gateway, message_id: str) -> str:
    root = etree.parse(str(gateway.status / f"in.{message_id}.xml")).getroot()
    return " | ".join(d.text or "" for d in root.findall("s:history/s:status/s:description", NS))


