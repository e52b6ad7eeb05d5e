"""The client's upload request, field by field against the Altinn Correspondence OpenAPI spec, and
what the client makes of Altinn's answers (a function-backed transport stands in for Altinn)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.channels.dpv.client import CorrespondenceClient, parse_time
from gateway.channels.dpv.models import Attachment, NotificationRequest
from gateway.errors import PermanentChannelError, RetryableChannelError

UPLOAD = "/correspondence/api/v1/correspondence/upload"
MESSAGE_ID = "abc8849c-e281-4809-8555-7cd54952b926"


def spec(reference_dir: Path) -> dict[str, Any]:
    return json.loads((reference_dir / "api/altinn-correspondence-v1.json").read_text(encoding="utf-8"))


def parts_of(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    """(name, filename, content) of each multipart part."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True)) for part in message.iter_parts()]


def client_answering(answers: list[httpx.Response], seen: list[httpx.Request]) -> CorrespondenceClient:
    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answers.pop(0)

    http = httpx.Client(transport=httpx.MockTransport(handle))
    return CorrespondenceClient("https://altinn.test/correspondence/api/v1", lambda: "token", http)


def send(client: CorrespondenceClient, tmp_path: Path) -> str:
    main = tmp_path / "vedtak.pdf"
    main.write_bytes(b"%PDF-1.7 vedtak")
    return client.upload(
        resource_id="eformidling-dpv-administrasjon", sender="0192:910077473", recipient="910075946",
        title="Nye lysrør", summary="Nye lysrør", body="Nye lysrør", message_id=MESSAGE_ID,
        attachments=[Attachment("vedtak.pdf", "Vedtak", "application/pdf", main),
                     Attachment("test.txt", "Test", "text/plain", b"Testing 1 2 3")],
        notification=NotificationRequest(channel="EmailAndSms", email_subject="Melding mottatt i Altinn",
                                         email_body="Du har mottatt en melding", sms_body="Ny melding",
                                         send_reminder=True),
        send_date=datetime(2030, 3, 25, 12, 38, tzinfo=UTC), due_date=datetime(2030, 4, 1, 12, 38, tzinfo=UTC),
        conversation_id="45efbd4c-413d-4e2c-bbc5-257ef4a65a91", message_sender="TEST - C4",
        properties={"senderOrgNumber": "910077473"},
    )


OK = httpx.Response(200, json={"correspondences": [{"correspondenceId": "0198408f-979c-75e0-b23e-aef6e907015f",
                                                    "status": "Initialized", "recipient": "x"}],
                               "attachmentIds": []})


def test_every_field_sent_is_named_as_the_spec_names_it(tmp_path: Path, reference_dir: Path) -> None:
    seen: list[httpx.Request] = []
    assert send(client_answering([OK], seen), tmp_path) == "0198408f-979c-75e0-b23e-aef6e907015f"
    [request] = seen
    assert (request.method, request.url.path) == ("POST", UPLOAD)
    assert request.headers["authorization"] == "Bearer token"
    document = spec(reference_dir)
    form = document["paths"][UPLOAD]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    schemas = document["components"]["schemas"]
    members = {
        "Correspondence.Content.Attachments": set(schemas["InitializeCorrespondenceAttachmentExt"]["properties"]),
        "Correspondence.ExternalReferences": set(schemas["ExternalReferenceExt"]["properties"]),
    }
    parts = parts_of(request)
    fields = {name: content.decode() for name, filename, content in parts if filename is None}
    for name in fields:
        indexed = re.fullmatch(r"(.+)\[(\d+)\]\.(\w+)", name)
        if indexed:
            assert indexed[3][0].lower() + indexed[3][1:] in members[indexed[1]], name
        elif dictionary := re.fullmatch(r"(Correspondence\.PropertyList)\[\w+\]", name):
            assert dictionary[1] in form["properties"]
        else:
            assert name in form["properties"], name
    assert set(form["required"]) <= set(fields)
    assert fields["Recipients"] == "urn:altinn:organization:identifier-no:910075946"
    assert fields["IdempotentKey"] == fields["Correspondence.SendersReference"] == MESSAGE_ID
    assert fields["Correspondence.Notification.NotificationChannel"] == "EmailAndSms"
    assert fields["Correspondence.Notification.ReminderSmsBody"] == "Ny melding"
    assert fields["Correspondence.DueDateTime"] == "2030-04-01T12:38:00+00:00"
    assert fields["Correspondence.ExternalReferences[0].ReferenceValue"] == "45efbd4c-413d-4e2c-bbc5-257ef4a65a91"
    assert fields["Correspondence.PropertyList[senderOrgNumber]"] == "910077473"
    assert fields["Correspondence.Content.Attachments[1].Checksum"] == hashlib.md5(
        b"Testing 1 2 3", usedforsecurity=False).hexdigest()
    assert fields["Correspondence.Content.Attachments[0].FileName"] == "vedtak.pdf"  # the main document first
    files = [(name, filename, content) for name, filename, content in parts if filename is not None]
    assert files == [("attachments", "vedtak.pdf", b"%PDF-1.7 vedtak"), ("attachments", "test.txt", b"Testing 1 2 3")]
    assert "attachments" in form["properties"]


def test_a_conflict_on_the_idempotency_key_returns_the_correspondence_made_before(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    conflict = httpx.Response(409, json={"title": "Conflict",
                                         "detail": "A correspondence with the same idempotent key already exists"})
    found = httpx.Response(200, json={"ids": ["11111111-2222-3333-4444-555555555555"]})
    assert send(client_answering([conflict, found], seen), tmp_path) == "11111111-2222-3333-4444-555555555555"
    lookup = seen[1]
    assert lookup.url.path == "/correspondence/api/v1/correspondence"
    assert dict(lookup.url.params) == {"sendersReference": MESSAGE_ID, "role": "Sender",
                                       "resourceId": "eformidling-dpv-administrasjon"}


def test_a_conflict_not_listed_yet_and_a_server_error_are_retryable(tmp_path: Path) -> None:
    # Altinn holds a correspondence under our key: the message is there, never a FEIL; ask again later.
    conflict = httpx.Response(409, json={"title": "Conflict", "detail": "same idempotent key"})
    with pytest.raises(RetryableChannelError, match=r"already has a correspondence.*same idempotent key"):
        send(client_answering([conflict, httpx.Response(200, json={"ids": []})], []), tmp_path)
    with pytest.raises(RetryableChannelError, match="HTTP 503"):
        send(client_answering([httpx.Response(503, text="down for maintenance")], []), tmp_path)
    with pytest.raises(RetryableChannelError, match="HTTP 429"):
        send(client_answering([httpx.Response(429, json={"title": "Too Many Requests"})], []), tmp_path)
    with pytest.raises(PermanentChannelError, match="holds no correspondenceId"):
        send(client_answering([httpx.Response(200, json={"correspondences": []})], []), tmp_path)


def test_details_read_altinns_timestamps_with_and_without_an_offset() -> None:
    answer = {
        "correspondenceId": "c1", "status": "Read", "statusText": "Read", "created": "2026-03-01T10:00:00.1234567",
        "statusChanged": "2026-03-01T10:05:00+01:00", "published": "2026-03-01T10:01:00Z",
        "statusHistory": [{"status": "Published", "statusText": "p", "statusChanged": "2026-03-01T10:01:00Z"},
                          {"status": "Read", "statusText": "r", "statusChanged": "2026-03-01T10:05:00+01:00"}],
        "notifications": [{"id": "n1", "isReminder": False, "notificationChannel": "Email",
                           "requestedSendTime": "0001-01-01T00:00:00",
                           "processingStatus": {"status": "Completed"},
                           "notificationStatusDetails": {"email": {"sendStatus": {"status": "Delivered"}}}}],
    }
    client = client_answering([httpx.Response(200, json=answer)], [])
    details = client.details("c1")
    assert details.created == datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert details.reached("Read") == datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    assert details.reached("Confirmed") is None
    [notification] = details.notifications
    assert (notification.email_status, notification.sms_status, notification.requested_send_time) == (
        "Delivered", None, None)
    assert parse_time("not a time") is None
    assert parse_time("2026-03-01T10:00:00+02:00") == datetime(2026, 3, 1, 8, tzinfo=UTC)
