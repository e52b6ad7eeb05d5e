"""What goes into a correspondence and what Altinn says about it, as plain values.

Field meanings follow the Altinn 3 Correspondence API (reference/api/altinn-correspondence-v1.json):
`NotificationRequest` is InitializeCorrespondenceNotificationExt, `CorrespondenceDetails` reads both
CorrespondenceDetailsExt (`/details`) and the lighter CorrespondenceOverviewExt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_ATTACHMENT_BYTES = 250 * 1024 * 1024  # Altinn's limit per attachment (error 2004)
NOTIFICATION_CHANNELS = ("Email", "Sms", "EmailPreferred", "SmsPreferred", "EmailAndSms")
NOTIFICATION_TEMPLATES = ("CustomMessage", "GenericAltinnMessage")
# CorrespondenceStatusExt, in the order a correspondence normally passes them.
CORRESPONDENCE_STATUSES = (
    "Initialized", "ReadyForPublish", "Published", "Fetched", "Read", "Replied", "Confirmed",
    "PurgedByRecipient", "PurgedByAltinn", "Archived", "Reserved", "Failed", "AttachmentsDownloaded",
)


@dataclass(frozen=True)
class NotificationRequest:
    """The varsel Altinn sends the recipient when the correspondence is published.

    With the CustomMessage template the texts are required for the channel: email subject and body
    for Email, the SMS body for Sms, all three for EmailAndSms and the *Preferred channels. Altinn
    replaces `$correspondenceRecipientName$` in them. A reminder, if asked for, repeats the same texts.
    """

    channel: str = "EmailAndSms"
    email_subject: str | None = None
    email_body: str | None = None
    sms_body: str | None = None
    template: str = "CustomMessage"
    send_reminder: bool = False
    requested_send_time: datetime | None = None
    email_content_type: str = "Plain"

    def __post_init__(self) -> None:
        if self.channel not in NOTIFICATION_CHANNELS:
            raise ValueError(f"notification channel {self.channel!r} is not one of {', '.join(NOTIFICATION_CHANNELS)}")
        if self.template not in NOTIFICATION_TEMPLATES:
            raise ValueError(f"notification template {self.template!r} is not one of "
                             f"{', '.join(NOTIFICATION_TEMPLATES)}")


@dataclass(frozen=True)
class Attachment:
    """One document of the correspondence; `source` is streamed from disk when it is a Path."""

    file_name: str
    display_name: str
    mime_type: str
    source: Path | bytes
    senders_reference: str | None = None  # default: the file name


@dataclass(frozen=True)
class StatusEvent:
    status: str
    text: str | None
    changed: datetime | None


@dataclass(frozen=True)
class NotificationSummary:
    """One notification order of a correspondence, as `/details` reports it."""

    order_id: str | None
    is_reminder: bool
    channel: str | None
    requested_send_time: datetime | None
    processing_status: str | None  # e.g. Registered, Processing, Completed
    email_status: str | None  # e.g. New, Succeeded, Delivered, Failed
    sms_status: str | None


@dataclass(frozen=True)
class CorrespondenceDetails:
    """A correspondence's state. From `/details`: history and notifications; from the overview: `read`."""

    correspondence_id: str
    status: str
    status_text: str | None
    status_changed: datetime | None
    senders_reference: str | None
    recipient: str | None
    created: datetime | None
    published: datetime | None
    read: datetime | None
    history: tuple[StatusEvent, ...]
    notifications: tuple[NotificationSummary, ...]
    raw: dict[str, Any]

    @property
    def is_failed(self) -> bool:
        return self.status == "Failed"

    def reached(self, status: str) -> datetime | None:
        """When the correspondence first reached `status` (from the history, or published/read), else None."""
        for event in self.history:
            if event.status == status:
                return event.changed
        if status == "Published":
            return self.published
        if status == "Read":
            return self.read
        return self.status_changed if self.status == status else None
