"""DPO: messages between integration points over the Altinn 3 Broker (sbd.zip uploads).

Statuses come as the receiver's own `status` messages and kvitteringer (through the receiver), so
`poll_statuses` has nothing to do; we owe senders the same status messages in return.

The broker virus-scans every upload (UploadProcessing) before it is Published or Failed, so `send`
returns (and the pipeline records SENDT) only once the transfer is Published: it waits a bounded
while, in short polls of the transfer; a scan still running then is a RetryableChannelError, and the
retry, given the journaled reference, looks again instead of uploading twice. A transfer the broker
fails after its upload (a virus found) is a PermanentChannelError with the broker's reason: sending
the same package again would fail the same way. Status messages (repeatable packages: no status
file, duplicates harmless) are not waited for: a scan of seconds would hold up every MOTTATT/LEVERT
we owe, for a package of JSON that no scan refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from gateway.channels.base import (
    Capabilities,
    InboundMessage,
    OutgoingMessage,
    Package,
    SentMessage,
    StatusUpdate,
)
from gateway.channels.dpo.client import PROCESSING_STATES, BrokerClient, md5_hex
from gateway.channels.dpo.package import pack_in_memory, pack_message
from gateway.channels.dpo.unpack import ReceivedPackage, open_package, open_payload
from gateway.channels.records import ServiceRecord
from gateway.clock import Clock
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.formats.asice import AsicContents, AsicLimits
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.formats.sbd import StandardBusinessDocument
from gateway.identifiers import to_party_value
from gateway.trust.receivers import ReceiverTrust

DPO_MAX_BYTES = 1_000_000_000
# A received package: the documents, with room for the SBD, the signature and the encryption.
DPO_MAX_PACKAGE_BYTES = 1_100_000_000
DPO_MESSAGE_TYPES = frozenset({"arkivmelding", "arkivmelding_kvittering", "avtalt", "status"})
PUBLISHED_STATES = frozenset({"Published", "AllConfirmedDownloaded"})
UPLOAD_FILE_NAME = "sbd.zip"
SCAN_WAIT_S = 10.0  # how long one send waits for the broker's virus scan before it tries again later
MALWARE_REFUSAL = "malware"  # the real broker's Failed text for a scan that found something starts so

DPO_CAPABILITIES = Capabilities(
    two_way=True,
    statuses_by_polling=False,
    receipt_types=frozenset({"arkivmelding"}),  # an arkivmelding_kvittering follows an arkivmelding
    max_bytes=DPO_MAX_BYTES,
    security_levels=frozenset({3, 4}),
    message_types=DPO_MESSAGE_TYPES,
    carries_status_messages=True,
)


class DpoChannel:
    name = "DPO"
    capabilities = DPO_CAPABILITIES

    def __init__(
        self,
        broker: BrokerClient,
        resource_id: str,
        identity: OrgIdentity,
        trust: TrustStore,
        clock: Clock,
        normalise_retired_prefix: bool = False,
        limits: AsicLimits | None = None,
        scan_wait_s: float = SCAN_WAIT_S,
        party: str | None = None,
        receivers: ReceiverTrust | None = None,
    ) -> None:
        self.broker = broker
        self.scan_wait_s = scan_wait_s
        # Who the broker takes us for: the system user's organisation, or our own.
        own = party or identity.orgnr
        self.party = to_party_value(own) if own else None
        self.resource_id = resource_id
        self.identity = identity
        self.trust = trust
        self.receivers = receivers or ReceiverTrust(trust)
        self.clock = clock
        self.normalise_retired_prefix = normalise_retired_prefix
        self.limits = limits or AsicLimits()

    # ---- sending ---------------------------------------------------------------------------------
    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        problems = []
        message_type = message.sbd.message_type
        if message_type not in DPO_MESSAGE_TYPES:
            problems.append(f"DPO does not carry {message_type} messages; they go to persons through DPI")
        total = message.total_bytes()
        if total > DPO_MAX_BYTES:
            problems.append(
                f"the documents add up to {total} bytes, more than the {DPO_MAX_BYTES} DPO carries; split the message"
            )
        if message.documents and (service is None or not service.certificate_pem):
            problems.append("the service registry gave no certificate for the receiver to encrypt the message to")
        return problems

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        certificate, note = None, ""
        if message.documents:
            assert service is not None
            # Chain, validity, revocation, key usage and whose it is: checked before a byte is encrypted.
            checked = self.receivers.check(message.sbd.receiver, service.certificate_pem, service.organisation_number)
            certificate, note = checked.certificate, checked.note
        content = pack_message(message.sbd, message.documents, self.identity, certificate, work)
        return Package(message.sbd.message_id, message.sbd.sender, message.sbd.receiver, content, note=note)

    def describe(self, package: Package) -> str:
        return package.note

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        if reference is not None:
            # An earlier attempt got this far: look at what the broker made of it before sending anything.
            overview = self._overview(reference)
            state = overview.get("fileTransferStatus")
            if state == "Initialized":
                held = (overview.get("checksum") or "").lower()
                if not held or held == md5_hex(package.content):
                    return self._upload(reference, package)
                # The transfer was made for the package of an earlier attempt (packing again signs and
                # encrypts anew, so its checksum differs): it never got a file and is left unused; the
                # new package goes in a transfer of its own.
                reference = None
        if reference is not None:
            failed = state in ("Failed", "Cancelled")
            if package.repeatable and not failed:
                return reference  # uploaded: what becomes of a status message is not waited for
            if state in PROCESSING_STATES:
                return self._outcome(reference, self._scanned(reference))
            if not failed or self._refused_for_content(overview):
                return self._outcome(reference, overview)
            reference = None  # the upload failed on the way (not for what it held): a new transfer
        sender, receiver = to_party_value(package.sender), to_party_value(package.receiver)
        checksum = md5_hex(package.content)
        if package.repeatable:
            # A duplicate is harmless here, so one request does the work of two; the reference can only
            # be journaled afterwards (a crash in between at worst sends the package once more).
            reference = self.broker.initialise_and_upload(
                resource_id=self.resource_id, sender=sender, recipient=receiver, file_name=UPLOAD_FILE_NAME,
                senders_reference=package.message_id, source=package.content, checksum=checksum,
            )
            on_reference(reference)
            return reference
        reference = self.broker.initialise(
            resource_id=self.resource_id, sender=sender, recipient=receiver, file_name=UPLOAD_FILE_NAME,
            senders_reference=package.message_id, checksum=checksum,
        )
        on_reference(reference)
        return self._upload(reference, package)

    def _upload(self, reference: str, package: Package) -> str:
        self.broker.upload(reference, package.content)
        if package.repeatable:
            return reference
        return self._outcome(reference, self._scanned(reference))

    def _scanned(self, reference: str) -> dict:
        return self.broker.wait_while_processing(reference, self.scan_wait_s)

    def _outcome(self, reference: str, overview: dict) -> str:
        """`reference` when the transfer is Published; else the error that says what became of it."""
        state = overview.get("fileTransferStatus")
        reason = overview.get("fileTransferStatusText") or state
        if state in PUBLISHED_STATES or (state == "Purged" and _downloaded(overview)):
            return reference
        if state in PROCESSING_STATES:
            raise RetryableChannelError(
                f"the broker is still processing (virus-scanning) transfer {reference} after "
                f"{self.scan_wait_s:g} s; it is looked at again, not uploaded again"
            )
        raise PermanentChannelError(
            f"the broker refused transfer {reference} after its upload ({state}: {reason}); the message was "
            "not delivered, and sending the same package again would be refused the same way"
        )

    @staticmethod
    def _refused_for_content(overview: dict) -> bool:
        """A Failed transfer the broker refused for what it holds (its scan), not for a broken upload."""
        return MALWARE_REFUSAL in str(overview.get("fileTransferStatusText") or "").lower()

    def already_sent(self, reference: str) -> bool:
        overview = self._overview(reference)
        state = overview.get("fileTransferStatus")
        return state in PUBLISHED_STATES or (state == "Purged" and _downloaded(overview))

    def _overview(self, reference: str) -> dict:
        try:
            return self.broker.overview(reference)
        except PermanentChannelError as exc:
            raise PermanentChannelError(
                f"the broker no longer knows transfer {reference} of this message ({exc}); it may have been "
                "delivered: check with the receiver before sending it again"
            ) from exc

    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        return []  # the receiver's status messages bring DPO statuses

    def send_status(self, sbd: StandardBusinessDocument) -> None:
        package = Package(sbd.message_id, sbd.sender, sbd.receiver, pack_in_memory(sbd, [], self.identity, None),
                          repeatable=True)
        # A duplicate status is harmless (receivers keep statuses as a set): one request, not two.
        self.send(package, None, lambda _reference: None)

    # ---- receiving -------------------------------------------------------------------------------
    def list_inbound(self) -> list[str]:
        return self.broker.list_incoming(self.resource_id)

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        return self.broker.download(reference, target, max_bytes=DPO_MAX_PACKAGE_BYTES)

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        received = open_package(download, work, self.normalise_retired_prefix)

        def extract(target: Path, durable: bool) -> AsicContents:
            return self._extract(received, work, target, durable)

        return InboundMessage(
            received.sbd,
            extract if received.encrypted_asic is not None else None,
            transport_sender=self.transport_sender(reference),
        )

    def transport_sender(self, reference: str) -> str | None:
        """Who the broker says sent the transfer (bare orgnr): the link the SBD and the signature must match."""
        sender = self.broker.overview(reference).get("sender")
        return sender.removeprefix("0192:") if isinstance(sender, str) and sender else None

    def _extract(self, received: ReceivedPackage, work: Path, target: Path, durable: bool) -> AsicContents:
        return open_payload(received, work, target, self.identity, self.trust, self.limits, self.clock.now(), durable)

    def acknowledge_inbound(self, reference: str) -> None:
        self.broker.confirm_download(reference, self.party)

    def reject_inbound(self, reference: str, reason: str) -> None:
        # The broker has no "refused" answer: confirming takes the transfer off our list, and the
        # quarantine keeps the package and the reason.
        self.broker.confirm_download(reference, self.party)


def _downloaded(overview: dict) -> bool:
    """Whether a recipient has taken the transfer (a purged one was published, then)."""
    return any(row.get("currentRecipientFileTransferStatusCode") in ("DownloadStarted", "DownloadConfirmed")
               for row in overview.get("recipients") or [])

