"""HTTP client for the Altinn 3 Correspondence API (the DPV transport), production or sandbox alike.

`base_url` is the API root: `https://platform.altinn.no/correspondence/api/v1` in production (or
Digdir's altinn-proxy in front of it), `<sandbox>/correspondence/api/v1` on loopback. A
correspondence is created with its attachments in one multipart request (`upload`); attachments
stream from disk. The upload carries an idempotency key made from the messageId, so a retry after a
lost answer makes no second correspondence: Altinn answers 409, and the client finds the first one
by its sendersReference (the messageId too). Errors: network, 429 and 5xx are
RetryableChannelError; other 4xx PermanentChannelError with Altinn's own words.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.channels.dpv.models import (
    Attachment,
    CorrespondenceDetails,
    NotificationRequest,
    NotificationSummary,
    StatusEvent,
)
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.tokens import TokenSource, bearer_request, check_response, server_words

log = logging.getLogger(__name__)

# The Altinn scopes of the API (each endpoint's description in the spec names them).
CORRESPONDENCE_WRITE_SCOPE = "altinn:correspondence.write"  # senders: upload, and read their own
CORRESPONDENCE_READ_SCOPE = "altinn:correspondence.read"  # recipients: list, read, markasread, confirm
# The Maskinporten scope the reference implementation asks for when it goes through Digdir's
# altinn-proxy, which holds the two above on its side.
DPV_PROXY_SCOPE = "eformidling:dpv"
ORGANISATION_URN = "urn:altinn:organization:identifier-no:"
PERSON_URN = "urn:altinn:person:identifier-no:"
# Makes a stable UUID idempotency key from a messageId that is not itself a UUID.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f6c1a8e-6d2b-4d53-9b53-2f3f0d1f5e21")
MD5_CHUNK = 1 << 20


class CorrespondenceNotFound(PermanentChannelError):
    """Altinn has no such correspondence (404, or 410): never made, not ours, or deleted."""


def recipient_urn(identifier: str) -> str:
    """`urn:altinn:organization:identifier-no:<orgnr>` or, for 11 digits, the person URN."""
    bare = identifier.removeprefix("0192:")
    if bare.startswith(("urn:altinn:organization:", "urn:altinn:person:")):
        return bare
    return f"{PERSON_URN if len(bare) == 11 else ORGANISATION_URN}{bare}"


def idempotency_key(message_id: str) -> str:
    """The upload's IdempotentKey: the messageId when it is a UUID (as the reference sends it)."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, message_id))


def parse_time(value: Any) -> datetime | None:
    """An Altinn timestamp; Altinn sometimes leaves the offset out (it means UTC) and writes
    .NET's empty DateTime (year 1) for "never"."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.year <= 1:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("correspondence times must be timezone-aware")
    return moment.isoformat()


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _md5_of(source: Path | bytes) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(source, bytes):
        digest.update(source)
    else:
        with open(source, "rb") as handle:
            while chunk := handle.read(MD5_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _notification_fields(notification: NotificationRequest) -> dict[str, str]:
    prefix = "Correspondence.Notification."
    fields = {
        f"{prefix}NotificationTemplate": notification.template,
        f"{prefix}NotificationChannel": notification.channel,
        f"{prefix}EmailContentType": notification.email_content_type,
        f"{prefix}SendReminder": _boolean(notification.send_reminder),
    }
    texts = {"EmailSubject": notification.email_subject, "EmailBody": notification.email_body,
             "SmsBody": notification.sms_body}
    if notification.send_reminder:
        fields[f"{prefix}ReminderNotificationChannel"] = notification.channel
        fields[f"{prefix}ReminderEmailContentType"] = notification.email_content_type
        texts |= {"ReminderEmailSubject": notification.email_subject,
                  "ReminderEmailBody": notification.email_body, "ReminderSmsBody": notification.sms_body}
    fields |= {f"{prefix}{name}": text for name, text in texts.items() if text is not None}
    if notification.requested_send_time is not None:
        fields[f"{prefix}RequestedSendTime"] = _format_time(notification.requested_send_time)
    return fields


def _details_from(answer: Any, what: str) -> CorrespondenceDetails:
    if not isinstance(answer, dict) or not answer.get("correspondenceId") or not answer.get("status"):
        raise PermanentChannelError(f"{what}: Altinn's answer holds no correspondenceId and status")
    history = tuple(
        StatusEvent(str(event.get("status")), event.get("statusText"), parse_time(event.get("statusChanged")))
        for event in answer.get("statusHistory") or [] if isinstance(event, dict)
    )
    notifications = []
    for order in answer.get("notifications") or []:
        if not isinstance(order, dict):
            continue
        details = order.get("notificationStatusDetails") or {}
        email, sms = details.get("email") or {}, details.get("sms") or {}
        notifications.append(NotificationSummary(
            order_id=order.get("id") or order.get("notificationOrderId"),
            is_reminder=bool(order.get("isReminder")),
            channel=order.get("notificationChannel"),
            requested_send_time=parse_time(order.get("requestedSendTime")),
            processing_status=(order.get("processingStatus") or {}).get("status"),
            email_status=(email.get("sendStatus") or {}).get("status"),
            sms_status=(sms.get("sendStatus") or {}).get("status"),
        ))
    return CorrespondenceDetails(
        correspondence_id=str(answer["correspondenceId"]),
        status=str(answer["status"]),
        status_text=answer.get("statusText"),
        status_changed=parse_time(answer.get("statusChanged")),
        senders_reference=answer.get("sendersReference"),
        recipient=answer.get("recipient"),
        created=parse_time(answer.get("created")),
        published=parse_time(answer.get("published")),
        read=parse_time(answer.get("read")),
        history=history,
        notifications=tuple(notifications),
        raw=answer,
    )


class CorrespondenceClient:
    """One organisation's calls to the Correspondence API; `tokens` carries the Altinn scopes above."""

    def __init__(self, base_url: str, tokens: TokenSource, http: httpx.Client) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http

    def _request(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        return bearer_request(self.http, self.tokens, what, method, f"{self.base_url}{path}",
                              headers=headers, **kwargs)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentChannelError(f"{what}: Altinn's answer is not JSON") from exc

    def upload(
        self,
        *,
        resource_id: str,
        sender: str,
        recipient: str,
        title: str,
        summary: str,
        body: str,
        attachments: Sequence[Attachment],
        message_id: str,
        notification: NotificationRequest | None = None,
        send_date: datetime | None = None,
        due_date: datetime | None = None,
        conversation_id: str | None = None,
        message_sender: str | None = None,
        language: str = "nb",
        is_confidential: bool = False,
        properties: Mapping[str, str] | None = None,
    ) -> str:
        """Create a correspondence with its attachments (in this order) in one request; returns its id.

        `sender` and `recipient` are organisation numbers (`0192:` allowed; 11 digits: a person).
        `message_id` is the sendersReference and makes the idempotency key: when Altinn already has
        a correspondence under that key (a retry after a lost answer), its id is returned. On a 401
        the request is sent once more, files from the start, with a fresh token.
        """
        fields: dict[str, str | list[str]] = {
            "Recipients": [recipient_urn(recipient)],
            "Correspondence.ResourceId": resource_id,
            "Correspondence.Sender": f"0192:{sender.removeprefix('0192:')}",  # deprecated, still read
            "Correspondence.SendersReference": message_id,
            "Correspondence.Content.Language": language,
            "Correspondence.Content.MessageTitle": title,
            "Correspondence.Content.MessageSummary": summary,
            "Correspondence.Content.MessageBody": body,
            "Correspondence.IsConfirmationNeeded": "false",
            "Correspondence.IsConfidential": _boolean(is_confidential),
            "IdempotentKey": idempotency_key(message_id),
        }
        if message_sender:
            fields["Correspondence.MessageSender"] = message_sender
        if send_date is not None:
            fields["Correspondence.RequestedPublishTime"] = _format_time(send_date)
        if due_date is not None:
            fields["Correspondence.DueDateTime"] = _format_time(due_date)
        if conversation_id:
            fields["Correspondence.ExternalReferences[0].ReferenceType"] = "Generic"
            fields["Correspondence.ExternalReferences[0].ReferenceValue"] = conversation_id
        # ASP.NET Core (Altinn) binds a dictionary from `Name[key]` fields.
        for key, value in (properties or {}).items():
            fields[f"Correspondence.PropertyList[{key}]"] = value
        if notification is not None:
            fields |= _notification_fields(notification)
        for index, attachment in enumerate(attachments):
            prefix = f"Correspondence.Content.Attachments[{index}]."
            fields[f"{prefix}FileName"] = attachment.file_name
            fields[f"{prefix}DisplayName"] = attachment.display_name
            fields[f"{prefix}SendersReference"] = attachment.senders_reference or attachment.file_name
            fields[f"{prefix}IsEncrypted"] = "false"
            fields[f"{prefix}DataLocationType"] = "NewCorrespondenceAttachment"
            fields[f"{prefix}Checksum"] = _md5_of(attachment.source)

        what = f"uploading the correspondence for {message_id}"
        with contextlib.ExitStack() as stack:
            # httpx rewinds each file part when it renders the body again (the 401 retry).
            files = [
                ("attachments", (
                    attachment.file_name,
                    stack.enter_context(open(attachment.source, "rb"))
                    if isinstance(attachment.source, Path) else attachment.source,
                    attachment.mime_type,
                ))
                for attachment in attachments
            ]
            # The fields go as parts without a filename: httpx would send fields alone url-encoded.
            form: list[tuple[str, Any]] = [
                (name, (None, value)) for name, values in fields.items()
                for value in (values if isinstance(values, list) else [values])
            ]
            response = self._request(what, "POST", "/correspondence/upload", files=form + files)
        if response.status_code == 409:
            return self._already_uploaded(message_id, resource_id, response, what)
        answer = self._json(check_response(response, what), what)
        try:
            return str(answer["correspondences"][0]["correspondenceId"])
        except (KeyError, IndexError, TypeError) as exc:
            raise PermanentChannelError(f"{what}: Altinn's answer holds no correspondenceId") from exc

    def _already_uploaded(self, message_id: str, resource_id: str, conflict: httpx.Response, what: str) -> str:
        existing = self.find_by_senders_reference(message_id, resource_id)
        if not existing:
            # Altinn holds a correspondence under our key, but does not list it yet (still being made):
            # the message is there; ask again later rather than call it failed.
            raise RetryableChannelError(
                f"{what}: Altinn already has a correspondence under this message's idempotency key "
                f"({server_words(conflict)}), but does not list it yet; asking again later"
            )
        log.info("correspondence for %s was already uploaded (idempotency key known): %s", message_id, existing[0])
        return existing[0]

    def find_by_senders_reference(self, senders_reference: str, resource_id: str | None = None) -> list[str]:
        """Ids of the correspondences we sent under `senders_reference` (our messageId), oldest first."""
        what = f"looking up correspondences with sendersReference {senders_reference}"
        params = {"sendersReference": senders_reference, "role": "Sender"}
        if resource_id:
            params["resourceId"] = resource_id
        response = check_response(self._request(what, "GET", "/correspondence", params=params), what)
        answer = self._json(response, what)
        ids = answer.get("ids") if isinstance(answer, dict) else None
        if not isinstance(ids, list):
            raise PermanentChannelError(f"{what}: Altinn's answer holds no list of ids")
        return [str(found) for found in ids]

    def _read(self, correspondence_id: str, path: str, what: str) -> CorrespondenceDetails:
        response = self._request(what, "GET", path)
        if response.status_code in (404, 410):
            raise CorrespondenceNotFound(f"{what}: HTTP {response.status_code} from {response.request.url.host}: "
                                         f"{server_words(response)}")
        return _details_from(self._json(check_response(response, what), what), what)

    def details(self, correspondence_id: str) -> CorrespondenceDetails:
        """Status, its history and the notifications (`/details`; Altinn calls it a heavy request)."""
        return self._read(correspondence_id, f"/correspondence/{correspondence_id}/details",
                          f"reading the details of correspondence {correspondence_id}")

    def overview(self, correspondence_id: str) -> CorrespondenceDetails:
        """Status with the published and read times, no history (the light request, for polling)."""
        return self._read(correspondence_id, f"/correspondence/{correspondence_id}",
                          f"reading correspondence {correspondence_id}")

    def mark_as_read(self, correspondence_id: str) -> None:
        """As the recipient (read scope): mark the correspondence read."""
        what = f"marking correspondence {correspondence_id} as read"
        check_response(self._request(what, "POST", f"/correspondence/{correspondence_id}/markasread"), what)
