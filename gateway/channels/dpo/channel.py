"""DPO: messages between integration points over the Altinn 3 Broker (sbd.zip uploads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from gateway.channels.dpo.client import BrokerClient
from gateway.channels.base import OutgoingPackage
from gateway.errors import PermanentChannelError
from gateway.identifiers import to_party_value

DPO_MAX_BYTES = 1_000_000_000
# A received package: the documents, with room for the SBD, the signature and the encryption.
DPO_MAX_PACKAGE_BYTES = 1_100_000_000
DPO_MESSAGE_TYPES = frozenset({"arkivmelding", "arkivmelding_kvittering", "avtalt", "status"})
UPLOADED_STATES = frozenset({"UploadProcessing", "Published", "AllConfirmedDownloaded", "Purged"})
UPLOAD_FILE_NAME = "sbd.zip"


class DpoChannel:
    name = "DPO"

    def __init__(self, broker: BrokerClient, resource_id: str) -> None:
        self.broker = broker
        self.resource_id = resource_id

    def validate(self, message_type: str, total_bytes: int) -> list[str]:
        problems = []
        if message_type not in DPO_MESSAGE_TYPES:
            problems.append(f"DPO does not carry {message_type} messages; they go to persons through DPI")
        if total_bytes > DPO_MAX_BYTES:
            problems.append(
                f"the documents add up to {total_bytes} bytes, more than the {DPO_MAX_BYTES} DPO carries; "
                "split the message"
            )
        return problems

    def send(self, package: OutgoingPackage, on_reference: Callable[[str], None]) -> str:
        reference = package.reference
        if reference is not None:
            # An earlier attempt got this far; if its upload finished, it must not be sent twice.
            status = self._status(reference)
            if status in UPLOADED_STATES:
                return reference
            if status != "Initialized":
                reference = None
        if reference is None and package.repeatable:
            # A duplicate is harmless here, so one request does the work of two; the reference can only
            # be journaled afterwards (a crash in between at worst sends the package once more).
            reference = self.broker.initialise_and_upload(
                resource_id=self.resource_id,
                sender=to_party_value(package.sender),
                recipient=to_party_value(package.receiver),
                file_name=UPLOAD_FILE_NAME,
                senders_reference=package.message_id,
                source=package.package,
            )
            on_reference(reference)
            return reference
        if reference is None:
            reference = self.broker.initialise(
                resource_id=self.resource_id,
                sender=to_party_value(package.sender),
                recipient=to_party_value(package.receiver),
                file_name=UPLOAD_FILE_NAME,
                senders_reference=package.message_id,
            )
            on_reference(reference)
        self.broker.upload(reference, package.package)
        return reference

    def already_sent(self, reference: str) -> bool:
        return self._status(reference) in UPLOADED_STATES

    def _status(self, reference: str) -> str | None:
        try:
            return self.broker.overview(reference).get("fileTransferStatus")
        except PermanentChannelError as exc:
            raise PermanentChannelError(
                f"the broker no longer knows transfer {reference} of this message ({exc}); it may have been "
                "delivered: check with the receiver before sending it again"
            ) from exc

    def poll_inbound(self) -> list[str]:
        return self.broker.list_published(self.resource_id)

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        return self.broker.download(reference, target, max_bytes=DPO_MAX_PACKAGE_BYTES)

    def acknowledge_inbound(self, reference: str) -> None:
        self.broker.confirm_download(reference)
