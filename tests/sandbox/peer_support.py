"""A test-side gateway made of the daemon's own building blocks, to talk to the automatic peer."""

from __future__ import annotations

import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509

from gateway.channels.dpo.client import DPO_RESOURCE_ID, BrokerClient
from gateway.channels.dpo.package import ASIC_ENTRY, pack_message
from gateway.channels.dpo.unpack import ReceivedPackage, open_package, open_payload
from gateway.devcerts import dev_identity
from gateway.formats.arkivmelding import ArkivmeldingFile, build_arkivmelding
from gateway.formats.asice import AsicContents, AsicDocument
from gateway.formats.keys import TrustStore
from gateway.formats.sbd import ARKIVMELDING_PROCESS, Arkivmelding, StandardBusinessDocument, new_sbd
from gateway.routing.registry import ServiceRegistryClient
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.peer import PeerEvent, small_pdf
from tests.sandbox.support import ALL_SCOPES, REGISTRY_SCOPES, Credentials, tokens_for

Tamper = Callable[[Path], None]


@dataclass(frozen=True)
class Received:
    transfer_id: str
    package: ReceivedPackage
    folder: Path

    @property
    def sbd(self) -> StandardBusinessDocument:
        return self.package.sbd


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def flip_a_byte_of_the_asic(package: Path) -> None:
    """Rewrite sbd.zip with one byte of the encrypted asic.zip inverted (in the middle: the ciphertext)."""
    with zipfile.ZipFile(package) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(package, "w") as archive:
        for info, data in entries:
            if info.filename == ASIC_ENTRY:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
            archive.writestr(info, data)


class SendingGateway:
    """Sends and receives over the sandbox broker as `orgnr`, the way the daemon does."""

    def __init__(self, network: SandboxNetwork, orgnr: str, http: httpx.Client, work: Path) -> None:
        self.orgnr = orgnr
        self.identity = dev_identity(network.pki, orgnr)
        self.trust = TrustStore.from_pem_files([network.pki.trust_bundle])
        server = network.server
        credentials = Credentials(self.identity.private_key, [self.identity.certificate])
        self.broker = BrokerClient(server.broker_url, tokens_for(server, credentials, orgnr, ALL_SCOPES, http), http)
        self.registry = ServiceRegistryClient(
            server.registry_url, tokens_for(server, credentials, orgnr, REGISTRY_SCOPES, http), http,
            signers=network.registry_signers())
        self.work = work
        self.scan_delay_s = server.broker.scan_delay_s or 0.0

    def certificate_of(self, orgnr: str, process: str = ARKIVMELDING_PROCESS) -> x509.Certificate:
        records = self.registry.lookup(orgnr, process).service_records
        pem = next(r.certificate_pem for r in records if r.service == "DPO" and r.certificate_pem)
        return x509.load_pem_x509_certificate(pem.encode("ascii"))

    def arkivmelding(
        self, receiver: str, title: str, message_id: str | None = None
    ) -> tuple[StandardBusinessDocument, list[AsicDocument]]:
        now = datetime.now(UTC)
        folder = self.work / f"documents-{uuid.uuid4()}"
        folder.mkdir(parents=True)
        pdf = folder / "vedtak.pdf"
        pdf.write_bytes(small_pdf(f"Vedtak {title}"))
        xml = folder / "arkivmelding.xml"
        xml.write_bytes(build_arkivmelding(title=title, files=[ArkivmeldingFile("vedtak.pdf", title, main=True)],
                                           created=now))
        sbd = new_sbd(sender=self.orgnr, receiver=receiver, process=ARKIVMELDING_PROCESS, created=now,
                      business_message=Arkivmelding(sikkerhetsnivaa=3, hoveddokument="vedtak.pdf"),
                      message_id=message_id)
        return sbd, [AsicDocument("vedtak.pdf", pdf, "application/pdf"),
                     AsicDocument("arkivmelding.xml", xml, "application/xml")]

    def send(
        self,
        sbd: StandardBusinessDocument,
        documents: Sequence[AsicDocument] = (),
        certificate: x509.Certificate | None = None,
        tamper: Tamper | None = None,
    ) -> str:
        if documents and certificate is None:
            certificate = self.certificate_of(sbd.receiver, sbd.process)
        work = self.work / f"out-{uuid.uuid4()}"
        package = pack_message(sbd, documents, self.identity, certificate, work)
        if tamper:
            if isinstance(package, bytes):  # packed in memory: tamper with a copy on disk
                work.mkdir(parents=True)
                (work / "sbd.zip").write_bytes(package)
                package = work / "sbd.zip"
            tamper(package)
        transfer_id = self.broker.initialise(DPO_RESOURCE_ID, f"0192:{self.orgnr}", f"0192:{sbd.receiver}",
                                             "sbd.zip", sbd.message_id)
        self.broker.upload(transfer_id, package)
        return transfer_id

    def receive_all(self) -> list[Received]:
        """Download, open and confirm everything published for us now (answers uploaded a moment ago
        included: the broker's virus scan is waited out first)."""
        time.sleep(self.scan_delay_s + 0.1)
        received = []
        for transfer_id in self.broker.list_incoming(DPO_RESOURCE_ID):
            folder = self.work / f"in-{transfer_id}"
            folder.mkdir(parents=True)
            with open(folder / "sbd.zip", "wb") as target:
                self.broker.download(transfer_id, target)
            received.append(Received(transfer_id, open_package(folder / "sbd.zip", folder / "package"), folder))
            self.broker.confirm_download(transfer_id)
        return received

    def open(self, received: Received) -> AsicContents:
        return open_payload(received.package, received.folder / "work", received.folder / "files",
                            self.identity, self.trust)


def event_for(events: list[PeerEvent], message_id: str) -> list[PeerEvent]:
    return [event for event in events if event.message_id == message_id]
