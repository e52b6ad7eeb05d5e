"""The sandbox correspondence service's upload form (`POST /correspondence/upload`), read as it streams in.

`UploadForm` takes the multipart body chunk by chunk: small fields into memory, each `attachments`
file part straight into its own file (size-capped, MD5 on the way). `read_upload` then checks the
fields as Altinn does and gives an `UploadRequest`, or an `UploadProblem` with the status, Altinn's
error number and words. Field names are matched ignoring case, as ASP.NET Core (Altinn) binds them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from python_multipart.multipart import parse_options_header

from gateway.channels.dpv.models import NOTIFICATION_CHANNELS, NOTIFICATION_TEMPLATES

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_ATTACHMENT_SIZE = 250 * 1024 * 1024  # DPV's limit: 250 MB per file (error 2004)
MAX_FORM_FIELDS = 256
MAX_FORM_FIELD_BYTES = 16384  # above any valid value (a sendersReference is at most 4096)
MAX_FILES = 100
FILE_FIELD = "attachments"
LANGUAGES = ("nb", "nn", "en")
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


class UploadProblem(Exception):
    """The upload is refused: HTTP `status`, Altinn's error number `code` (0: ours) and the words."""

    def __init__(self, status: int, code: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _bad(code: int, detail: str) -> UploadProblem:
    return UploadProblem(400, code, detail)


@dataclass
class UploadedFile:
    """One `attachments` part, already on disk at `path`."""

    path: Path
    file_name: str | None
    content_type: str | None
    size: int = 0
    digest: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))

    @property
    def md5(self) -> str:
        return str(self.digest.hexdigest())


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
        return {
            "notificationTemplate": self.template, "emailSubject": self.email_subject,
            "emailBody": self.email_body, "emailContentType": self.email_content_type,
            "smsBody": self.sms_body, "sendReminder": self.send_reminder,
            "reminderEmailSubject": self.reminder_email_subject, "reminderEmailBody": self.reminder_email_body,
            "reminderSmsBody": self.reminder_sms_body, "notificationChannel": self.channel,
            "reminderNotificationChannel": self.reminder_channel, "sendersReference": self.senders_reference,
            "requestedSendTime": self.requested_send_time.isoformat() if self.requested_send_time else None,
        }


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


class UploadForm:
    """Hand `callbacks()` to a python-multipart MultipartParser; `discard()` removes every file written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fields: list[tuple[str, str]] = []
        self.files: list[UploadedFile] = []
        self.complete = False
        self._current: UploadedFile | None = None
        self._handle: BinaryIO | None = None
        self._name = ""
        self._value = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._current, self._name, self._headers = None, "", {}
        self._value.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _bad(0, "every part of the form needs a name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name.lower() == FILE_FIELD:
            if len(self.files) >= MAX_FILES:
                raise _bad(0, f"the form holds more than {MAX_FILES} attachments")
            file_name = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
            content_type = self._headers.get(b"content-type", b"").decode("latin-1") or None
            self._current = UploadedFile(self.folder / f"{uuid.uuid4()}.part", file_name, content_type)
            self.files.append(self._current)
            self._handle = open(self._current.path, "wb")  # noqa: SIM115 - closed in _part_end or discard()
        elif len(self.fields) >= MAX_FORM_FIELDS:
            raise _bad(0, f"the form holds more than {MAX_FORM_FIELDS} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._current is not None:
            assert self._handle is not None
            self._current.size += len(chunk)
            if self._current.size > MAX_ATTACHMENT_SIZE:
                raise _bad(2004, "File must have content and has a max file size of 250 MB")
            self._current.digest.update(chunk)
            self._handle.write(chunk)
            return
        self._value.extend(chunk)
        if len(self._value) > MAX_FORM_FIELD_BYTES:
            raise _bad(0, f"the form field {self._name} is longer than {MAX_FORM_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._current is not None:
            assert self._handle is not None
            self._handle.close()
            self._handle, self._current = None, None
            return
        try:
            self.fields.append((self._name, self._value.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise _bad(0, f"the form field {self._name} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.complete = True

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for uploaded in self.files:
            uploaded.path.unlink(missing_ok=True)


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
                    raise _bad(0, f"the form gives {PLAIN_FIELDS[lower]} more than once")
                self.plain[lower] = value
            elif lower.startswith("correspondence.propertylist"):
                key = name[len("correspondence.propertylist"):]
                key = key[1:-1] if key.startswith("[") and key.endswith("]") else key.removeprefix(".")
                if not key:
                    raise _bad(0, f"{name} names no property")
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
            raise _bad(0, f"unknown field(s): {', '.join(sorted(unknown))}")

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.plain.get(name.lower())
        if required and (value is None or not value.strip()):
            raise _bad(0, f"{name} is required")
        limit = TEXT_LIMITS.get(name)
        if value is not None and limit is not None and len(value) > limit:
            raise _bad(0, f"{name} may be at most {limit} characters")
        return value

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None or value == "":
            return None
        if value.lower() not in ("true", "false"):
            raise _bad(0, f"{name} must be true or false, not {value!r}")
        return value.lower() == "true"

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise _bad(0, f"{name} is not an ISO 8601 date and time: {value!r}") from exc
        if moment.tzinfo is None:
            raise _bad(0, f"{name} needs a UTC offset: {value!r}")
        return moment

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.text(name)
        if not value:
            return default
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise _bad(0, f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    def indexed(self, list_name: str) -> list[dict[str, str]]:
        """The entries of `Name[i]...` in index order (ASP.NET binds indices from 0 upwards)."""
        entries = self.lists.get(list_name.lower(), {})
        try:
            keys = sorted(entries, key=int)
        except ValueError as exc:
            raise _bad(0, f"{list_name}[...] must be indexed with numbers") from exc
        if keys != [str(index) for index in range(len(keys))]:
            raise _bad(0, f"{list_name}[...] must be numbered 0, 1, 2, ... without gaps")
        return [entries[key] for key in keys]


def _recipients(fields: _Fields) -> list[str]:
    given = fields.repeated.get("recipients", []) + [entry[""] for entry in fields.indexed("Recipients")]
    if not given:
        raise _bad(0, "Recipients is required")
    recipients = []
    for value in given:
        match = RECIPIENT.match(value.strip())
        if not match:
            raise _bad(0, f"recipient {value!r} must be urn:altinn:organization:identifier-no:<orgnr> or "
                          "urn:altinn:person:identifier-no:<national identity number>")
        recipients.append(match["org"] or match["person"] or match["bare"])
    if len(set(recipients)) != len(recipients):
        raise _bad(1006, "Recipients must be unique")
    return recipients


def _notification(fields: _Fields) -> NotificationOrder | None:
    prefix = "Correspondence.Notification."
    if not any(name.startswith(prefix.lower()) for name in fields.plain):
        return None
    template = fields.choice(f"{prefix}NotificationTemplate", NOTIFICATION_TEMPLATES, None)
    if template is None:
        raise _bad(0, f"{prefix}NotificationTemplate is required when a notification is given")
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
        raise _bad(email_code, f"{which}Email body and subject must be provided when sending email notifications")
    if channel == "Sms" and not sms:
        raise _bad(sms_code, f"{which}SMS body must be provided when sending SMS notifications")
    if channel not in ("Email", "Sms") and not (subject and body and sms):
        raise _bad(both_code, f"{which}Email body, subject and SMS body must be provided when sending "
                              f"{channel} notifications")


def _attachments(fields: _Fields, files: list[UploadedFile]) -> list[AttachmentRequest]:
    metadata = fields.indexed("Correspondence.Content.Attachments")
    by_name: dict[str, UploadedFile] = {}
    for uploaded in files:
        if not uploaded.file_name:
            raise _bad(2010, "Filename is missing")
        if uploaded.file_name in by_name:
            raise _bad(1005, f"Mismatch between uploaded files and attachment metadata: two files are named "
                             f"{uploaded.file_name!r}")
        by_name[uploaded.file_name] = uploaded
    attachments = []
    for index, entry in enumerate(metadata):
        where = f"Correspondence.Content.Attachments[{index}]"
        file_name = entry.get("filename", "")
        if not file_name:
            raise _bad(2010, f"Filename is missing ({where}.FileName)")
        if len(file_name) > 255:
            raise _bad(2011, f"Filename is too long ({where}.FileName)")
        if UNSAFE_FILE_NAME.search(file_name) or file_name in (".", ".."):
            raise _bad(2012, f"Filename contains invalid characters ({where}.FileName: {file_name!r})")
        location = entry.get("datalocationtype", "NewCorrespondenceAttachment")
        if location.lower() not in ("newcorrespondenceattachment", "0"):
            raise _bad(0, f"{where}.DataLocationType {location!r} is not supported by the sandbox; "
                          "upload the file with the correspondence (NewCorrespondenceAttachment)")
        senders_reference = entry.get("sendersreference", "")
        if not 1 <= len(senders_reference) <= 4096:
            raise _bad(0, f"{where}.SendersReference is required (1 to 4096 characters)")
        uploaded = by_name.pop(file_name, None)
        if uploaded is None:
            raise _bad(1005, f"Mismatch between uploaded files and attachment metadata: no file part named "
                             f"{file_name!r} for {where}")
        if uploaded.size == 0:
            raise _bad(2004, f"File must have content and has a max file size of 250 MB ({file_name})")
        checksum = entry.get("checksum")
        if checksum and checksum.lower() != uploaded.md5:
            raise _bad(2008, f"Checksum mismatch for {file_name}")
        encrypted = entry.get("isencrypted", "false").lower()
        if encrypted not in ("true", "false"):
            raise _bad(0, f"{where}.IsEncrypted must be true or false")
        attachments.append(AttachmentRequest(file_name, entry.get("displayname"), senders_reference,
                                             encrypted == "true", uploaded.content_type, uploaded))
    if by_name:
        raise _bad(1005, "Mismatch between uploaded files and attachment metadata: no metadata for "
                         f"{', '.join(sorted(by_name))}")
    return attachments


def read_upload(form: UploadForm, now: datetime) -> UploadRequest:
    """The upload as the service records it, or UploadProblem saying what is wrong, as Altinn would."""
    fields = _Fields(form.fields)
    if fields.repeated.get("existingattachments") or fields.indexed("ExistingAttachments"):
        raise _bad(1007, "Existing attachment not found (the sandbox takes attachments with the upload only)")
    resource_id = fields.text("Correspondence.ResourceId", required=True)
    senders_reference = fields.text("Correspondence.SendersReference", required=True)
    for name, code in (("MessageTitle", 1020), ("MessageBody", 1021), ("MessageSummary", 1022)):
        value = fields.text(f"Correspondence.Content.{name}")
        if value is None or not value.strip():
            label = {"MessageTitle": "title", "MessageBody": "body", "MessageSummary": "summary"}[name]
            raise _bad(code, f"Message {label} cannot be empty (Correspondence.Content.{name})")
    title = fields.text("Correspondence.Content.MessageTitle") or ""
    if MARKUP.search(title):
        raise _bad(1002, "Message title must be plain text")
    language = fields.text("Correspondence.Content.Language", required=True) or ""
    if language not in LANGUAGES:
        raise _bad(1023, "Invalid language chosen. Supported languages is Norsk bokmål (nb), Nynorsk (nn) and "
                         "English (en)")
    recipients = _recipients(fields)
    publish_time = fields.time("Correspondence.RequestedPublishTime")
    due = fields.time("Correspondence.DueDateTime")
    if due is not None and due.date() < now.date():
        raise _bad(1008, "DueDateTime cannot be prior to today")
    if due is not None and publish_time is not None and due < publish_time:
        raise _bad(1009, "DueDateTime cannot be prior to RequestedPublishTime")
    confirmation = bool(fields.flag("Correspondence.IsConfirmationNeeded"))
    if confirmation and due is None:
        raise _bad(1016, "DueDateTime is required when confirmation is needed")
    key = fields.text("IdempotentKey")
    if key is not None:
        try:
            key = str(uuid.UUID(key))
        except ValueError as exc:
            raise _bad(1033, "The idempotency key must be a valid non-empty GUID") from exc
    references = []
    for index, entry in enumerate(fields.indexed("Correspondence.ExternalReferences")):
        kind = next((t for t in REFERENCE_TYPES if t.lower() == entry.get("referencetype", "").lower()), None)
        if kind is None or not entry.get("referencevalue"):
            raise _bad(0, f"Correspondence.ExternalReferences[{index}] needs a ReferenceType (one of "
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
