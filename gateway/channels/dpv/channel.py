"""DPV: a message to an organisation's Altinn mailbox, as an Altinn 3 correspondence with a
notification (varsel). One-way; statuses by polling the correspondence.

The documents become the correspondence's attachments (main document first, with their titles);
the arkivmelding stays behind, as the receiver reads the message in Altinn, not in an archive. The
notification texts come from the message's `dpv` block, else from config; a message on the
`taushetsbelagt` process gets the sensitive text, which names no content. Statuses: Published (and
what follows it) → LEVERT, Read → LEST, Failed → FEIL with Altinn's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from gateway.channels.dpv.business import dpv_settings
from gateway.channels.dpv.client import CorrespondenceClient, CorrespondenceNotFound
from gateway.channels.dpv.models import MAX_ATTACHMENT_BYTES, Attachment, CorrespondenceDetails, NotificationRequest
from gateway.channels.records import ServiceRecord
from gateway.channels.status_rounds import poll_each
from gateway.clock import Clock
from gateway.errors import PermanentChannelError
from gateway.formats.sbd import StandardBusinessDocument

log = logging.getLogger(__name__)

DPV_MAX_BYTES = 250_000_000  # the domain's limit for DPV, for the documents together
ARKIVMELDING_NAME = "arkivmelding.xml"
SENSITIVE_PROCESS = "urn:no:difi:profile:arkivmelding:taushetsbelagt:ver1.0"
# The statuses a correspondence reaches once it is in the recipient's mailbox.
DELIVERED_STATUSES = frozenset({
    "Published", "Fetched", "Read", "Replied", "Confirmed", "AttachmentsDownloaded", "Archived",
    "PurgedByRecipient",
})
READ_STATUSES = frozenset({"Read", "Replied", "Confirmed"})
# Never delivered: the recipient has reserved itself against digital post (KRR), or Altinn failed it.
UNDELIVERABLE_STATUSES = frozenset({"Reserved", "Failed"})
PENDING = "pending:"  # a reference journaled before Altinn named the correspondence
# The arkivmelding's varselTransportType, as the reference's senders write it.
TRANSPORT_CHANNELS = {"EPOST": "Email", "SMS": "Sms", "EPOST_OG_SMS": "EmailAndSms", "EPOSTOGSMS": "EmailAndSms"}
CHANNEL_WORDS = {
    "Email": "notified by e-mail", "Sms": "notified by SMS", "EmailAndSms": "notified by e-mail and SMS",
    "EmailPreferred": "notified by e-mail (else SMS)", "SmsPreferred": "notified by SMS (else e-mail)",
}

DPV_CAPABILITIES = Capabilities(
    two_way=False,
    statuses_by_polling=True,
    receipt_types=frozenset({"arkivmelding", "digital"}),  # LEST comes when the receiver reads it in Altinn
    max_bytes=DPV_MAX_BYTES,
    security_levels=frozenset({3}),
    # A digital letter to a person the registry sends to the Altinn mailbox (no active digital mailbox) goes as
    # the reference sends it there: its documents, under its title.
    message_types=frozenset({"arkivmelding", "digital"}),
)


@dataclass(frozen=True)
class NotificationDefaults:
    """The varsel when the message says nothing of it (config: channels.dpv)."""

    channel: str = "EmailAndSms"
    text: str = "Du har mottatt en melding i Altinn."
    sensitive_text: str = "Du har mottatt en taushetsbelagt melding i Altinn. Logg inn for å lese den."
    email_subject: str = "Ny melding i Altinn"
    days_to_reply: int | None = None


@dataclass(frozen=True)
class Correspondence:
    """A prepared correspondence: everything the upload needs."""

    resource_id: str
    title: str
    summary: str
    body: str
    attachments: tuple[Attachment, ...]
    notification: NotificationRequest
    due_date: datetime | None
    conversation_id: str
    confidential: bool

    @property
    def note(self) -> str:
        return CHANNEL_WORDS.get(self.notification.channel, f"notified by {self.notification.channel}")


class DpvChannel:
    name = "DPV"
    capabilities = DPV_CAPABILITIES

    def __init__(self, client: CorrespondenceClient, defaults: NotificationDefaults, clock: Clock) -> None:
        self.client = client
        self.defaults = defaults
        self.clock = clock

    # ---- sending ---------------------------------------------------------------------------------
    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        problems = []
        message_type = message.sbd.message_type
        if message_type not in DPV_CAPABILITIES.message_types:
            problems.append(f"DPV (the Altinn mailbox) does not carry {message_type} messages")
        attachments = [document for document in message.documents if document.name != ARKIVMELDING_NAME]
        if message_type in DPV_CAPABILITIES.message_types and not attachments:
            problems.append("a DPV message needs at least one document to show in the receiver's Altinn mailbox")
        total = sum(document.size() for document in attachments)
        if total > DPV_MAX_BYTES:
            problems.append(
                f"the documents add up to {total} bytes, more than the {DPV_MAX_BYTES} DPV (the Altinn mailbox) "
                "carries; split the message or send it by another channel"
            )
        for document in attachments:
            if document.size() > MAX_ATTACHMENT_BYTES:
                problems.append(f"{document.name} is {document.size()} bytes, more than the {MAX_ATTACHMENT_BYTES} "
                                "Altinn takes in one attachment")
        if service is None or not service.resource:
            problems.append("the service registry's DPV record for the receiver names no Altinn resource")
        return problems

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        assert service is not None and service.resource
        sbd = message.sbd
        settings = dpv_settings(sbd.business_message)
        sensitive = sbd.process == SENSITIVE_PROCESS
        text = self._notification_text(settings, sensitive)
        asked = (settings.varsel_transport_type or "").upper() if settings else ""
        transport = TRANSPORT_CHANNELS.get(asked, self.defaults.channel)
        days = (settings.dager_til_svarfrist if settings else None) or self.defaults.days_to_reply
        title = message.title or "Melding"
        correspondence = Correspondence(
            resource_id=service.resource,
            title=title,
            summary=title if not sensitive else "Taushetsbelagt melding",
            body=f"{title}\n\nSe vedlagte dokumenter.",
            attachments=tuple(
                Attachment(
                    file_name=document.name,
                    display_name=message.titles.get(document.name, document.name),
                    mime_type=document.mime_type,
                    source=document.source,
                )
                for document in message.documents if document.name != ARKIVMELDING_NAME
            ),
            notification=NotificationRequest(
                channel=transport,
                email_subject=self.defaults.email_subject,
                email_body=text,
                sms_body=text,
            ),
            due_date=self.clock.now() + timedelta(days=days) if days else None,
            conversation_id=sbd.conversation_id,
            confidential=sensitive,
        )
        return Package(sbd.message_id, sbd.sender, sbd.receiver, correspondence)

    def _notification_text(self, settings: object, sensitive: bool) -> str:
        if sensitive:
            given = getattr(settings, "taushetsbelagt_varsel_tekst", None)
            return given or self.defaults.sensitive_text
        return getattr(settings, "varsel_tekst", None) or self.defaults.text

    def describe(self, package: Package) -> str:
        """How the package goes, for the route's reason in the status file."""
        return package.content.note if isinstance(package.content, Correspondence) else ""

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        if reference is not None and not reference.startswith(PENDING):
            return reference  # the correspondence exists
        correspondence: Correspondence = package.content
        # Altinn names the correspondence only in its answer. Journal "pending" first, so the message
        # is known to be under way (SENDING: never expired behind the upload's back); a crash or a lost
        # answer uploads again with the same idempotency key, and Altinn answers with the first one.
        on_reference(f"{PENDING}{package.message_id}")
        correspondence_id = self.client.upload(
            resource_id=correspondence.resource_id,
            sender=package.sender,
            recipient=package.receiver,
            title=correspondence.title,
            summary=correspondence.summary,
            body=correspondence.body,
            attachments=correspondence.attachments,
            message_id=package.message_id,
            notification=correspondence.notification,
            due_date=correspondence.due_date,
            conversation_id=correspondence.conversation_id,
            is_confidential=correspondence.confidential,
        )
        on_reference(correspondence_id)
        return correspondence_id

    def already_sent(self, reference: str) -> bool:
        if not reference.startswith(PENDING):
            return True  # Altinn's own id: the correspondence exists
        return bool(self.client.find_by_senders_reference(reference.removeprefix(PENDING)))

    def _correspondence_id(self, reference: str) -> str | None:
        """Altinn's id for a reference; a pending one (an upload cut off) is looked up by our messageId."""
        if not reference.startswith(PENDING):
            return reference
        found = self.client.find_by_senders_reference(reference.removeprefix(PENDING))
        return found[0] if found else None

    # ---- statuses --------------------------------------------------------------------------------
    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        """Asked per correspondence under `poll_each`'s rule. A correspondence Altinn no longer has
        (404, 410) ends that message's polling."""
        return poll_each(sent, self._status_of, "DPV")

    def _status_of(self, message: SentMessage) -> list[StatusUpdate]:
        try:
            correspondence_id = self._correspondence_id(message.reference)
            if correspondence_id is None:
                return []  # the upload was cut off before Altinn had it; the sender sends it again
            details = self.client.overview(correspondence_id)
        except CorrespondenceNotFound as exc:
            return [StatusUpdate(message.message_id, "ANNET", None, deleted_at_altinn(exc), ends_polling=True)]
        return _updates_from(message.message_id, details)

    # ---- one-way: nothing comes in -----------------------------------------------------------------
    def list_inbound(self) -> list[str]:
        return []

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        raise PermanentChannelError("DPV is one-way: nothing is received on it")

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        raise PermanentChannelError("DPV is one-way: nothing is received on it")

    def acknowledge_inbound(self, reference: str) -> None:
        raise PermanentChannelError("DPV is one-way: nothing is received on it")

    def reject_inbound(self, reference: str, reason: str) -> None:
        raise PermanentChannelError("DPV is one-way: nothing is received on it")

    def send_status(self, sbd: StandardBusinessDocument) -> None:
        raise PermanentChannelError("DPV carries no status messages")


def deleted_at_altinn(not_found: CorrespondenceNotFound) -> str:
    """ANNET's words for a correspondence Altinn no longer has."""
    return (f"deleted at the provider: Altinn no longer has the correspondence ({not_found}); no further status "
            "can come, so the gateway has stopped asking for it")


def _updates_from(message_id: str, details: CorrespondenceDetails) -> list[StatusUpdate]:
    where = f"correspondence {details.correspondence_id}"
    if details.is_failed or details.status in UNDELIVERABLE_STATUSES:
        reason = details.status_text or details.status
        return [StatusUpdate(message_id, "FEIL", details.status_changed, f"Altinn could not deliver {where}: {reason}")]
    updates = []
    if details.status in DELIVERED_STATUSES or details.read is not None:
        published = details.reached("Published") or details.status_changed
        description = f"published in the receiver's Altinn mailbox ({where})"
        updates.append(StatusUpdate(message_id, "LEVERT", published, description))
    if details.status in READ_STATUSES or details.read is not None:
        read = details.reached("Read") or details.status_changed
        updates.append(StatusUpdate(message_id, "LEST", read, f"read in Altinn ({where})"))
    return updates
