"""What the sandbox correspondence service records: its options, and correspondences, attachments
and notifications as read back from its store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.sandbox.correspondence_rules import UploadRequest


@dataclass(frozen=True)
class CorrespondenceOptions:
    """How the sandbox's Altinn behaves; the defaults let a sample drop reach LEST on its own."""

    publish_delay_s: float = 0.0
    read_delay_s: float | None = 3.0  # None: only markasread reads a correspondence
    failing_recipients: Mapping[str, str] = field(default_factory=dict)  # orgnr -> reason for Failed


@dataclass(frozen=True)
class StoredAttachment:
    id: str
    file_name: str
    display_name: str | None
    senders_reference: str
    data_type: str | None
    is_encrypted: bool
    checksum: str  # MD5, hex
    size: int
    created: str
    path: Path


@dataclass(frozen=True)
class RecordedNotification:
    """A varsel the sandbox sent (or will send): what Altinn would put in the recipient's email or SMS."""

    id: str
    correspondence_id: str
    recipient: str  # bare orgnr (or national identity number)
    is_reminder: bool
    channel: str  # Email, Sms, EmailAndSms, EmailPreferred, SmsPreferred
    template: str
    email_subject: str | None
    email_body: str | None  # with $correspondenceRecipientName$ filled in
    sms_body: str | None
    requested_send_time: str
    created: str
    sent: str | None
    cancelled: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "correspondenceId": self.correspondence_id, "recipient": self.recipient,
            "isReminder": self.is_reminder, "notificationChannel": self.channel,
            "notificationTemplate": self.template, "emailSubject": self.email_subject,
            "emailBody": self.email_body, "smsBody": self.sms_body,
            "requestedSendTime": self.requested_send_time, "created": self.created, "sent": self.sent,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class StoredCorrespondence:
    id: str
    sender: str
    recipient: str
    resource_id: str
    senders_reference: str
    request: dict[str, Any]
    created: str
    status: str
    status_text: str
    status_changed: str
    published: str | None
    read: str | None
    history: list[tuple[str, str, str]]  # (status, text, at), oldest first
    attachments: list[StoredAttachment]
    notifications: list[RecordedNotification]


def request_echo(upload: UploadRequest) -> dict[str, Any]:
    def stamp(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "resourceId": upload.resource_id, "sendersReference": upload.senders_reference,
        "messageSender": upload.message_sender,
        "content": {"language": upload.language, "messageTitle": upload.title,
                    "messageSummary": upload.summary, "messageBody": upload.body},
        "requestedPublishTime": stamp(upload.requested_publish_time),
        "allowSystemDeleteAfter": stamp(upload.allow_system_delete_after),
        "dueDateTime": stamp(upload.due_date_time), "externalReferences": upload.external_references,
        "propertyList": upload.property_list, "replyOptions": [],
        "notification": upload.notification.echo() if upload.notification else None,
        "ignoreReservation": upload.ignore_reservation, "isConfirmationNeeded": upload.is_confirmation_needed,
        "isConfidential": upload.is_confidential,
    }
