"""The checks of the sandbox correspondence service's upload form, as Altinn makes them.

`read_upload` turns a read `UploadForm` into an `UploadRequest`, or raises an `UploadProblem` with
the status, Altinn's error number (reference/api/altinn-correspondence-v1.json lists them) and words.
Field names are matched ignoring case, as ASP.NET Core (Altinn) binds them; unknown fields are
refused (Altinn would drop them silently: a typo in a client is better found here).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.channels.dpv.models import NOTIFICATION_CHANNELS, NOTIFICATION_TEMPLATES
from gateway.sandbox.correspondence_form import UploadedFile, UploadForm, bad_request

LANGUAGES = ("nb", "nn", "en")
ENUM_ECHOES = frozenset({"emailContentType", "notificationChannel", "reminderNotificationChannel"})
EMAIL_CONTENT_TYPES = ("Plain", "Html")
REFERENCE_TYPES = ("Generic", "AltinnAppInstance", "AltinnBrokerFileTransfer", "DialogportenDialogId",
                   "DialogportenProcessId")
RECIPIENT = re.compile(
    r"^(?:urn:altinn:organization:identifier-no:(?P<org>\d{9})|urn:altinn:person:identifier-no:(?P<person>\d{11})"
    r"|(?:0192:)?(?P<bare>\d{9}|\d{11}))$"
)
INDEXED = re.compile(r"^(?P<list>[a-z.]+)\[(?P<key>[^\]]+)\](?:\.(?P<member>[a-z]+))?$")
UNSAFE_FILE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")

# The plain fields of the form (the spec's names), by lower-case name.
PLAIN_FIELDS = {name.lower(): name for name in (
    "Correspondence.ResourceId", "Correspondence.Sender", "Correspondence.SendersReference",
    "Correspondence.MessageSender", "Correspondence.Content.Language", "Correspondence.Content.MessageTitle",
    "Correspondence.Content.MessageSummary", "Correspondence.Content.MessageBody",
    "Correspondence.RequestedPublishTime", "Correspondence.AllowSystemDeleteAfter", "Correspondence.DueDateTime",
    "Correspondence.IgnoreReservation", "Correspondence.Published", "Correspondence.IsConfirmationNeeded",
    "Correspondence.IsConfidential", "IdempotentKey", "Recipients", "ExistingAttachments",
    *(f"Correspondence.Notification.{name}" for name in (
        "NotificationTemplate", "EmailSubject", "EmailBody", "EmailContentType", "SmsBody", "SendReminder",
        "ReminderEmailSubject", "ReminderEmailBody", "ReminderEmailContentType", "ReminderSmsBody",
        "NotificationChannel", "ReminderNotificationChannel", "SendersReference", "RequestedSendTime",
        "CustomRecipient.EmailAddress", "CustomRecipient.MobileNumber", "CustomRecipient.OrganizationNumber",
        "CustomRecipient.NationalIdentityNumber", "CustomRecipient.IsReserved",
    )),
)}
# Indexed lists: `Name[i].Member` (or `Name[i]` for lists of strings), with the members each may have.
LIST_MEMBERS: dict[str, set[str] | None] = {
    "recipients": None,
    "existingattachments": None,
    "correspondence.content.attachments": {"filename", "displayname", "isencrypted", "checksum", "sendersreference",
                                           "id", "datalocationtype", "expirationtime"},
    "correspondence.externalreferences": {"referencetype", "referencevalue"},
    "correspondence.replyoptions": {"linkurl", "linktext"},
    "correspondence.notification.customnotificationrecipients": None,  # deprecated; taken and ignored
}
TEXT_LIMITS = {"Correspondence.Notification.EmailSubject": 128, "Correspondence.Notification.EmailBody": 1024,
               "Correspondence.Notification.SmsBody": 160, "Correspondence.Notification.ReminderEmailSubject": 128,
               "Correspondence.Notification.ReminderEmailBody": 1024,
               "Correspondence.Notification.ReminderSmsBody": 160, "Correspondence.MessageSender": 256,
               "Correspondence.SendersReference": 4096, "Correspondence.ResourceId": 255}


@dataclass(frozen=True)
class AttachmentRequest:
    file_name: str
    display_name: str | None
    senders_reference: str
    is_encrypted: bool
    data_type: str | None
    upload: UploadedFile


@dataclass(frozen=True)
class NotificationOrder:
    template: str
    channel: str
    email_subject: str | None
    email_body: str | None
    sms_body: str | None
    email_content_type: str
    send_reminder: bool
    reminder_channel: str | None
    reminder_email_subject: str | None
    reminder_email_body: str | None
    reminder_sms_body: str | None
    requested_send_time: datetime | None
    senders_reference: str | None

    def echo(self) -> dict[str, Any]:
        """The InitializeCorrespondenceNotificationExt that `/details` shows."""
        echoed = {
            "notificationTemplate": self.template, "emailSubject": self.email_subject,
            "emailBody": self.email_body, "emailContentType": self.email_content_type,
            "smsBody": self.sms_body, "sendReminder": self.send_reminder,
            "reminderEmailSubject": self.reminder_email_subject, "reminderEmailBody": self.reminder_email_body,
            "reminderSmsBody": self.reminder_sms_body, "notificationChannel": self.channel,
            "reminderNotificationChannel": self.reminder_channel, "sendersReference": self.senders_reference,
            "requestedSendTime": self.requested_send_time.isoformat() if self.requested_send_time else None,
        }
        # The description gives these enums no null (NotificationChannelExt, EmailContentType): one the upload
        # did not set is left out, where the real API may send null. A client reads both alike.
        return {key: value for key, value in echoed.items() if value is not None or key not in ENUM_ECHOES}


@dataclass(frozen=True)
class UploadRequest:
    resource_id: str
    sender: str | None  # "0192:<orgnr>" when the form gives it (deprecated field)
    senders_reference: str
    message_sender: str | None
    language: str
    title: str
    summary: str
    body: str
    recipients: list[str]  # bare organisation or national identity numbers
    attachments: list[AttachmentRequest]
    notification: NotificationOrder | None
    requested_publish_time: datetime | None
    due_date_time: datetime | None
    allow_system_delete_after: datetime | None
    external_references: list[dict[str, str]]
    property_list: dict[str, str]
    is_confirmation_needed: bool
    is_confidential: bool
    ignore_reservation: bool | None
    idempotent_key: str | None


class _Fields:
    """The plain and indexed fields of a form, by lower-case name, each given at most once."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.plain: dict[str, str] = {}
        self.lists: dict[str, dict[str, dict[str, str]]] = {}
        self.repeated: dict[str, list[str]] = {}  # form style: the same name once per value
        unknown = []
        for name, value in pairs:
            lower = name.lower()
            if lower in ("recipients", "existingattachments"):
                self.repeated.setdefault(lower, []).append(value)
            elif lower in PLAIN_FIELDS:
                if lower in self.plain:
                    raise bad_request(0, f"the form gives {PLAIN_FIELDS[lower]} more than once")
                self.plain[lower] = value
            elif lower.startswith(("correspondence.propertylist[", "correspondence.propertylist.")):
                key = name[len("correspondence.propertylist"):]
                key = key[1:-1] if key.startswith("[") and key.endswith("]") else key.removeprefix(".")
                if not key or "[" in key or "]" in key:
                    raise bad_request(0, f"{name} names no property")
                self.lists.setdefault("propertylist", {})[key] = {"": value}
            elif (match := INDEXED.match(lower)) and match["list"] in LIST_MEMBERS:
                members = LIST_MEMBERS[match["list"]]
                member = match["member"] or ""
                if (members is None) != (member == "") or (members is not None and member not in members):
                    unknown.append(name)
                    continue
                self.lists.setdefault(match["list"], {}).setdefault(match["key"], {})[member] = value
            else:
                unknown.append(name)
        if unknown:
            raise bad_request(0, f"unknown field(s): {', '.join(sorted(unknown))}")

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.plain.get(name.lower())
        if required and (value is None or not value.strip()):
            raise bad_request(0, f"{name} is required")
        limit = TEXT_LIMITS.get(name)
        if value is not None and limit is not None and len(value) > limit:
            raise bad_request(0, f"{name} may be at most {limit} characters")
        return value

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None or value == "":
            return None
        if value.lower() not in ("true", "false"):
            raise bad_request(0, f"{name} must be true or false, not {value!r}")
        return value.lower() == "true"

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise bad_request(0, f"{name} is not an ISO 8601 date and time: {value!r}") from exc
        if moment.tzinfo is None:
            raise bad_request(0, f"{name} needs a UTC offset: {value!r}")
        return moment

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.text(name)
        if not value:
            return default
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise bad_request(0, f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    def indexed(self, list_name: str) -> list[dict[str, str]]:
        """The entries of `Name[i]...` in index order (ASP.NET binds indices from 0 upwards)."""
        entries = self.lists.get(list_name.lower(), {})
        try:
            keys = sorted(entries, key=int)
        except ValueError as exc:
            raise bad_request(0, f"{list_name}[...] must be indexed with numbers") from exc
        if keys != [str(index) for index in range(len(keys))]:
            raise bad_request(0, f"{list_name}[...] must be numbered 0, 1, 2, ... without gaps")
        return [entries[key] for key in keys]


def _recipients(fields: _Fields) -> list[str]:
    given = fields.repeated.get("recipients", []) + [entry[""] for entry in fields.indexed("Recipients")]
    if not given:
        raise bad_request(0, "Recipients is required")
    recipients = []
    for value in given:
        match = RECIPIENT.match(value.strip())
        if not match:
            raise bad_request(0, f"recipient {value!r} must be urn:altinn:organization:identifier-no:<orgnr> or "
                          "urn:altinn:person:identifier-no:<national identity number>")
        recipients.append(match["org"] or match["person"] or match["bare"])
    if len(set(recipients)) != len(recipients):
        raise bad_request(1006, "Recipients must be unique")
    return recipients


def _notification(fields: _Fields) -> NotificationOrder | None:
    prefix = "Correspondence.Notification."
    if not any(name.startswith(prefix.lower()) for name in fields.plain):
        return None
    template = fields.choice(f"{prefix}NotificationTemplate", NOTIFICATION_TEMPLATES, None)
    if template is None:
        raise bad_request(0, f"{prefix}NotificationTemplate is required when a notification is given")
    channel = fields.choice(f"{prefix}NotificationChannel", NOTIFICATION_CHANNELS, "Email")
    assert channel is not None
    send_reminder = bool(fields.flag(f"{prefix}SendReminder"))
    reminder_channel = fields.choice(f"{prefix}ReminderNotificationChannel", NOTIFICATION_CHANNELS, channel)
    order = NotificationOrder(
        template=template, channel=channel,
        email_subject=fields.text(f"{prefix}EmailSubject"), email_body=fields.text(f"{prefix}EmailBody"),
        sms_body=fields.text(f"{prefix}SmsBody"),
        email_content_type=fields.choice(f"{prefix}EmailContentType", EMAIL_CONTENT_TYPES, "Plain") or "Plain",
        send_reminder=send_reminder, reminder_channel=reminder_channel if send_reminder else None,
        reminder_email_subject=fields.text(f"{prefix}ReminderEmailSubject"),
        reminder_email_body=fields.text(f"{prefix}ReminderEmailBody"),
        reminder_sms_body=fields.text(f"{prefix}ReminderSmsBody"),
        requested_send_time=fields.time(f"{prefix}RequestedSendTime"),
        senders_reference=fields.text(f"{prefix}SendersReference"),
    )
    if template == "CustomMessage":
        _texts_for(channel, order.email_subject, order.email_body, order.sms_body, (3002, 3004, 3006), "")
        if send_reminder:
            assert reminder_channel is not None
            _texts_for(reminder_channel, order.reminder_email_subject, order.reminder_email_body,
                       order.reminder_sms_body, (3003, 3005, 3007), "Reminder ")
    return order


def _texts_for(channel: str, subject: str | None, body: str | None, sms: str | None,
               codes: tuple[int, int, int], which: str) -> None:
    email_code, sms_code, both_code = codes
    if channel == "Email" and not (subject and body):
        raise bad_request(email_code,
                          f"{which}Email body and subject must be provided when sending email notifications")
    if channel == "Sms" and not sms:
        raise bad_request(sms_code, f"{which}SMS body must be provided when sending SMS notifications")
    if channel not in ("Email", "Sms") and not (subject and body and sms):
        raise bad_request(both_code, f"{which}Email body, subject and SMS body must be provided when sending "
                              f"{channel} notifications")


def _attachments(fields: _Fields, files: list[UploadedFile]) -> list[AttachmentRequest]:
    metadata = fields.indexed("Correspondence.Content.Attachments")
    by_name: dict[str, UploadedFile] = {}
    for uploaded in files:
        if not uploaded.file_name:
            raise bad_request(2010, "Filename is missing")
        if uploaded.file_name in by_name:
            raise bad_request(1005, f"Mismatch between uploaded files and attachment metadata: two files are named "
                             f"{uploaded.file_name!r}")
        by_name[uploaded.file_name] = uploaded
    attachments = []
    for index, entry in enumerate(metadata):
        where = f"Correspondence.Content.Attachments[{index}]"
        file_name = entry.get("filename", "")
        if not file_name:
            raise bad_request(2010, f"Filename is missing ({where}.FileName)")
        if len(file_name) > 255:
            raise bad_request(2011, f"Filename is too long ({where}.FileName)")
        if UNSAFE_FILE_NAME.search(file_name) or file_name in (".", ".."):
            raise bad_request(2012, f"Filename contains invalid characters ({where}.FileName: {file_name!r})")
        location = entry.get("datalocationtype", "NewCorrespondenceAttachment")
        if location.lower() not in ("newcorrespondenceattachment", "0"):
            raise bad_request(0, f"{where}.DataLocationType {location!r} is not supported by the sandbox; "
                          "upload the file with the correspondence (NewCorrespondenceAttachment)")
        senders_reference = entry.get("sendersreference", "")
        if not 1 <= len(senders_reference) <= 4096:
            raise bad_request(0, f"{where}.SendersReference is required (1 to 4096 characters)")
        uploaded = by_name.pop(file_name, None)
        if uploaded is None:
            raise bad_request(1005, f"Mismatch between uploaded files and attachment metadata: no file part named "
                             f"{file_name!r} for {where}")
        if uploaded.size == 0:
            raise bad_request(2004, f"File must have content and has a max file size of 250 MB ({file_name})")
        checksum = entry.get("checksum")
        if checksum and checksum.lower() != uploaded.md5:
            raise bad_request(2008, f"Checksum mismatch for {file_name}")
        encrypted = entry.get("isencrypted", "false").lower()
        if encrypted not in ("true", "false"):
            raise bad_request(0, f"{where}.IsEncrypted must be true or false")
        attachments.append(AttachmentRequest(file_name, entry.get("displayname"), senders_reference,
                                             encrypted == "true", uploaded.content_type, uploaded))
    if by_name:
        raise bad_request(1005, "Mismatch between uploaded files and attachment metadata: no metadata for "
                         f"{', '.join(sorted(by_name))}")
    return attachments


def read_upload(form: UploadForm, now: datetime) -> UploadRequest:
    """The upload as the service records it, or UploadProblem saying what is wrong, as Altinn would."""
    fields = _Fields(form.fields)
    if fields.repeated.get("existingattachments") or fields.indexed("ExistingAttachments"):
        raise bad_request(1007, "Existing attachment not found (the sandbox takes attachments with the upload only)")
    resource_id = fields.text("Correspondence.ResourceId", required=True)
    senders_reference = fields.text("Correspondence.SendersReference", required=True)
    for name, code in (("MessageTitle", 1020), ("MessageBody", 1021), ("MessageSummary", 1022)):
        value = fields.text(f"Correspondence.Content.{name}")
        if value is None or not value.strip():
            label = {"MessageTitle": "title", "MessageBody": "body", "MessageSummary": "summary"}[name]
            raise bad_request(code, f"Message {label} cannot be empty (Correspondence.Content.{name})")
    title = fields.text("Correspondence.Content.MessageTitle") or ""
    if MARKUP.search(title):
        raise bad_request(1002, "Message title must be plain text")
    language = fields.text("Correspondence.Content.Language", required=True) or ""
    if language not in LANGUAGES:
        raise bad_request(1023, "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and "
                         "English (en)")
    recipients = _recipients(fields)
    publish_time = fields.time("Correspondence.RequestedPublishTime")
    due = fields.time("Correspondence.DueDateTime")
    if due is not None and due.date() < now.date():
        raise bad_request(1008, "DueDateTime cannot be prior to today")
    if due is not None and publish_time is not None and due < publish_time:
        raise bad_request(1009, "DueDateTime cannot be prior to RequestedPublishTime")
    confirmation = bool(fields.flag("Correspondence.IsConfirmationNeeded"))
    if confirmation and due is None:
        raise bad_request(1016, "DueDateTime is required when confirmation is needed")
    key = fields.text("IdempotentKey")
    if key is not None:
        try:
            key = str(uuid.UUID(key))
        except ValueError as exc:
            raise bad_request(1033, "The idempotency key must be a valid non-empty GUID") from exc
    references = []
    for index, entry in enumerate(fields.indexed("Correspondence.ExternalReferences")):
        kind = next((t for t in REFERENCE_TYPES if t.lower() == entry.get("referencetype", "").lower()), None)
        if kind is None or not entry.get("referencevalue"):
            raise bad_request(0, f"Correspondence.ExternalReferences[{index}] needs a ReferenceType (one of "
                          f"{', '.join(REFERENCE_TYPES)}) and a ReferenceValue")
        references.append({"referenceType": kind, "referenceValue": entry["referencevalue"]})
    sender = fields.text("Correspondence.Sender")
    return UploadRequest(
        resource_id=resource_id or "", sender=sender or None, senders_reference=senders_reference or "",
        message_sender=fields.text("Correspondence.MessageSender"), language=language, title=title,
        summary=fields.text("Correspondence.Content.MessageSummary") or "",
        body=fields.text("Correspondence.Content.MessageBody") or "",
        recipients=recipients, attachments=_attachments(fields, form.files), notification=_notification(fields),
        requested_publish_time=publish_time, due_date_time=due,
        allow_system_delete_after=fields.time("Correspondence.AllowSystemDeleteAfter"),
        external_references=references,
        property_list={key: entry[""] for key, entry in fields.lists.get("propertylist", {}).items()},
        is_confirmation_needed=confirmation, is_confidential=bool(fields.flag("Correspondence.IsConfidential")),
        ignore_reservation=fields.flag("Correspondence.IgnoreReservation"), idempotent_key=key,
    )
