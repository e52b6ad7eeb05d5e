"""DPV on the wire: CorrespondenceClient against the sandbox's Altinn 3 Correspondence service.

The sandbox runs on a fake clock that the token clients share, so publishing, notifications and the
automatic read happen exactly when a test moves the clock, with no sleeping.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.channels.dpv.client import (
    CORRESPONDENCE_READ_SCOPE,
    CORRESPONDENCE_WRITE_SCOPE,
    CorrespondenceClient,
    CorrespondenceNotFound,
    idempotency_key,
)
from gateway.channels.dpv.models import Attachment, NotificationRequest
from gateway.clock import FakeClock
from gateway.errors import PermanentChannelError
from gateway.sandbox import SandboxCatalogue, SandboxServer
from gateway.sandbox.correspondence_app import CorrespondenceService
from gateway.sandbox.correspondence_records import CorrespondenceOptions
from gateway.tokens import TokenSource
from tests.sandbox.support import DPF_RECEIVER, DPO_RECEIVER, DPV_RECEIVER, SENDER, Pki, authorisation_for, tokens_for

RESOURCE = "eformidling-dpv-administrasjon"
FAILING = DPF_RECEIVER  # correspondences to it fail on this sandbox
FAILURE_REASON = "the recipient's mailbox is closed (test)"
SCOPES = (CORRESPONDENCE_WRITE_SCOPE, CORRESPONDENCE_READ_SCOPE)
NOTIFICATION = NotificationRequest(
    channel="EmailAndSms",
    email_subject="Melding mottatt i Altinn",
    email_body="$correspondenceRecipientName$: Du har mottatt en melding fra Avsender etat.",
    sms_body="$correspondenceRecipientName$: Ny melding i Altinn.",
)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def service() -> Iterator[CorrespondenceService]:
    service = CorrespondenceService(CorrespondenceOptions(
        publish_delay_s=0, read_delay_s=3.0, failing_recipients={FAILING: FAILURE_REASON}
    ))
    yield service
    service.close()


@pytest.fixture(scope="module")
def dpv_sandbox(tmp_path_factory: pytest.TempPathFactory, catalogue: SandboxCatalogue, clock: FakeClock,
                service: CorrespondenceService) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path_factory.mktemp("dpv-sandbox"), catalogue, clock=clock,
                       extra_apps={"/correspondence": service}) as server:
        yield server


def api_url(sandbox: SandboxServer) -> str:
    return f"{sandbox.url}/correspondence/api/v1"


@pytest.fixture
def tokens(dpv_sandbox: SandboxServer, pki: Pki, http: httpx.Client, clock: FakeClock):  # type: ignore[no-untyped-def]
    def build(orgnr: str, scopes: tuple[str, ...] = SCOPES) -> TokenSource:
        return tokens_for(dpv_sandbox, pki.orgs[orgnr], orgnr, scopes, http, system_user=False, clock=clock)

    return build


@pytest.fixture
def sender(dpv_sandbox: SandboxServer, tokens, http: httpx.Client) -> CorrespondenceClient:  # type: ignore[no-untyped-def]
    return CorrespondenceClient(api_url(dpv_sandbox), tokens(SENDER), http)


@pytest.fixture
def recipient(dpv_sandbox: SandboxServer, tokens, http: httpx.Client) -> CorrespondenceClient:  # type: ignore[no-untyped-def]
    return CorrespondenceClient(api_url(dpv_sandbox), tokens(DPO_RECEIVER, (CORRESPONDENCE_READ_SCOPE,)), http)


def documents(tmp_path: Path) -> list[Attachment]:
    main = tmp_path / "vedtak.pdf"
    main.write_bytes(b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024 + 3))
    return [
        Attachment("vedtak.pdf", "Vedtak om tilskudd", "application/pdf", main),
        Attachment("vedlegg-æøå.txt", "Vedlegg: søknaden", "text/plain", "Søknad om tilskudd\n".encode()),
    ]


def upload(client: CorrespondenceClient, message_id: str, to: str = DPO_RECEIVER,
           attachments: list[Attachment] | None = None, **overrides: object) -> str:
    arguments: dict[str, object] = dict(
        resource_id=RESOURCE, sender=SENDER, recipient=to, title="Vedtak om tilskudd",
        summary="Vedtak i sak 2026/17", body="Se vedlagt vedtak.", attachments=attachments or [],
        message_id=message_id, notification=NOTIFICATION, conversation_id="4f3a9b52-6a8e-4bfa-9a55-0e6f2d1b7c11",
    )
    arguments.update(overrides)
    return client.upload(**arguments)  # type: ignore[arg-type]


def new_id() -> str:
    return str(uuid.uuid4())


def test_an_upload_with_two_attachments_is_published_with_the_files_byte_for_byte(
    sender: CorrespondenceClient, recipient: CorrespondenceClient, service: CorrespondenceService,
    tmp_path: Path, http: httpx.Client, tokens,  # type: ignore[no-untyped-def]
) -> None:
    attachments = documents(tmp_path)
    message_id = new_id()
    correspondence_id = upload(sender, message_id, attachments=attachments)

    details = sender.details(correspondence_id)
    assert details.status == "Published"
    assert [event.status for event in details.history] == ["Initialized", "ReadyForPublish", "Published"]
    assert details.senders_reference == message_id
    assert details.recipient == f"urn:altinn:organization:identifier-no:{DPO_RECEIVER}"
    assert details.published is not None and details.reached("Published") == details.published
    content = details.raw["content"]
    assert content["messageTitle"] == "Vedtak om tilskudd"
    assert [a["fileName"] for a in content["attachments"]] == ["vedtak.pdf", "vedlegg-æøå.txt"]
    assert [a["displayName"] for a in content["attachments"]] == ["Vedtak om tilskudd", "Vedlegg: søknaden"]
    assert details.raw["externalReferences"] == [
        {"referenceType": "Generic", "referenceValue": "4f3a9b52-6a8e-4bfa-9a55-0e6f2d1b7c11"}]

    stored = service.store.get(correspondence_id)
    assert stored is not None
    originals = [a.source.read_bytes() if isinstance(a.source, Path) else a.source for a in attachments]
    assert [a.path.read_bytes() for a in stored.attachments] == originals
    assert [a.data_type for a in stored.attachments] == ["application/pdf", "text/plain"]
    assert [a.checksum for a in stored.attachments] == [hashlib.md5(o, usedforsecurity=False).hexdigest()
                                                        for o in originals]
    # The recipient downloads the same bytes through the API.
    token = tokens(DPO_RECEIVER, (CORRESPONDENCE_READ_SCOPE,)).access_token()
    main_id = content["attachments"][0]["id"]
    download = http.get(f"{sender.base_url}/correspondence/{correspondence_id}/attachment/{main_id}/download",
                        headers={"Authorization": f"Bearer {token}"})
    assert download.status_code == 200 and download.content == originals[0]
    assert recipient.overview(correspondence_id).status == "Published"


def test_the_notification_is_recorded_with_its_texts_and_channel(
    sender: CorrespondenceClient, service: CorrespondenceService, dpv_sandbox: SandboxServer, http: httpx.Client
) -> None:
    correspondence_id = upload(sender, new_id())
    [sent] = [n for n in service.store.notifications(DPO_RECEIVER) if n.correspondence_id == correspondence_id]
    assert sent.channel == "EmailAndSms"
    assert sent.email_subject == "Melding mottatt i Altinn"
    assert sent.email_body == "Mottaker kommune: Du har mottatt en melding fra Avsender etat."
    assert sent.sms_body == "Mottaker kommune: Ny melding i Altinn."
    assert sent.recipient == DPO_RECEIVER and not sent.is_reminder and sent.sent is not None
    listed = http.get(f"{dpv_sandbox.url}/correspondence/_sandbox/notifications",
                      params={"recipient": DPO_RECEIVER}).json()
    assert sent.as_json() in listed
    [summary] = sender.details(correspondence_id).notifications
    assert (summary.channel, summary.processing_status, summary.email_status, summary.sms_status) == (
        "EmailAndSms", "Completed", "Succeeded", "Accepted")


def test_a_notification_waits_for_its_requested_send_time_and_a_reminder_for_a_week(
    sender: CorrespondenceClient, service: CorrespondenceService, clock: FakeClock
) -> None:
    later = clock.now() + timedelta(minutes=5)
    notification = NotificationRequest(channel="Sms", sms_body="Ny melding", send_reminder=True,
                                       requested_send_time=later)
    correspondence_id = upload(sender, new_id(), to=DPO_RECEIVER, notification=notification)
    orders = [n for n in service.store.notifications(sent_only=False) if n.correspondence_id == correspondence_id]
    assert [(n.is_reminder, n.sent) for n in orders] == [(False, None), (True, None)]
    clock.advance(301)
    [main] = [n for n in service.store.notifications(DPO_RECEIVER) if n.correspondence_id == correspondence_id]
    assert main.channel == "Sms" and main.sms_body == "Ny melding" and main.sent == later.isoformat()
    # Read (automatically, 3 s after publishing) long before the reminder was due: it is cancelled.
    clock.advance(7 * 24 * 3600)
    reminder = [n for n in service.store.notifications(sent_only=False)
                if n.correspondence_id == correspondence_id and n.is_reminder]
    assert reminder[0].sent is None and reminder[0].cancelled is not None


def test_markasread_by_the_recipient_makes_it_read(
    sender: CorrespondenceClient, recipient: CorrespondenceClient
) -> None:
    correspondence_id = upload(sender, new_id())
    recipient.mark_as_read(correspondence_id)
    details = sender.details(correspondence_id)
    assert details.status == "Read"
    assert [event.status for event in details.history][-2:] == ["Published", "Read"]
    assert sender.overview(correspondence_id).read == details.status_changed


def test_a_published_correspondence_is_read_by_itself_after_the_delay(
    sender: CorrespondenceClient, clock: FakeClock
) -> None:
    correspondence_id = upload(sender, new_id())
    published = sender.details(correspondence_id).published
    assert published is not None
    clock.advance(2.9)
    assert sender.overview(correspondence_id).status == "Published"
    clock.advance(0.2)
    overview = sender.overview(correspondence_id)
    assert overview.status == "Read"
    assert overview.read == published + timedelta(seconds=3)


def test_a_failed_correspondence_shows_failed_with_its_reason(
    sender: CorrespondenceClient, service: CorrespondenceService, dpv_sandbox: SandboxServer, http: httpx.Client,
    clock: FakeClock,
) -> None:
    to_failing = upload(sender, new_id(), to=FAILING)
    details = sender.details(to_failing)
    assert (details.status, details.status_text, details.is_failed) == ("Failed", FAILURE_REASON, True)
    assert details.published is None
    assert [n for n in service.store.notifications(FAILING)] == []  # no varsel for what was never published

    made_to_fail = upload(sender, new_id())
    answer = http.post(f"{dpv_sandbox.url}/correspondence/_sandbox/correspondences/{made_to_fail}/fail",
                       json={"reason": "virus found in vedtak.pdf"})
    assert answer.status_code == 200
    details = sender.details(made_to_fail)
    assert (details.status, details.status_text) == ("Failed", "virus found in vedtak.pdf")
    clock.advance(10)
    assert sender.overview(made_to_fail).status == "Failed"  # not read later on


def test_a_retried_upload_makes_no_second_correspondence(
    sender: CorrespondenceClient, service: CorrespondenceService, tmp_path: Path
) -> None:
    message_id = new_id()
    first = upload(sender, message_id, attachments=documents(tmp_path))
    again = upload(sender, message_id, attachments=documents(tmp_path))
    assert again == first
    assert sender.find_by_senders_reference(message_id, RESOURCE) == [first]
    assert [c["correspondenceId"] for c in service.store.summary() if c["sendersReference"] == message_id] == [first]
    assert service.store.by_idempotent_key(SENDER, idempotency_key(message_id)) == [first]


def test_a_message_id_that_is_no_uuid_still_gives_a_stable_key() -> None:
    assert idempotency_key("melding-17") == idempotency_key("melding-17") != idempotency_key("melding-18")
    uuid_id = "abc8849c-e281-4809-8555-7cd54952b926"
    assert idempotency_key(uuid_id) == uuid_id


def test_without_a_token_401_and_without_the_scope_403(
    dpv_sandbox: SandboxServer, tokens, http: httpx.Client, sender: CorrespondenceClient  # type: ignore[no-untyped-def]
) -> None:
    url = f"{api_url(dpv_sandbox)}/correspondence/upload"
    answer = http.post(url, files={"attachments": ("a.txt", b"x")})
    # ProblemDetails as application/json: the media type the OpenAPI description gives every error
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/json"
    reader = CorrespondenceClient(api_url(dpv_sandbox), tokens(SENDER, (CORRESPONDENCE_READ_SCOPE,)), http)
    with pytest.raises(PermanentChannelError, match=r"HTTP 403.*altinn:correspondence.write"):
        upload(reader, new_id())
    broker_only = CorrespondenceClient(api_url(dpv_sandbox), tokens(SENDER, ("altinn:broker.read",)), http)
    correspondence_id = upload(sender, new_id())
    with pytest.raises(PermanentChannelError, match="HTTP 403"):
        broker_only.details(correspondence_id)


def test_a_bad_request_is_a_permanent_error_in_altinns_words(
    sender: CorrespondenceClient, service: CorrespondenceService, tmp_path: Path
) -> None:
    before = len(service.store.summary())
    with pytest.raises(PermanentChannelError, match=r"HTTP 400.*Message title cannot be empty"):
        upload(sender, new_id(), title="  ")
    with pytest.raises(PermanentChannelError, match=r"HTTP 400.*Email body and subject must be provided"):
        upload(sender, new_id(), notification=NotificationRequest(channel="Email", sms_body="only an SMS text"))
    with pytest.raises(PermanentChannelError, match=r"HTTP 400.*DueDateTime cannot be prior to today"):
        upload(sender, new_id(), due_date=datetime.now(UTC) - timedelta(days=3))
    with pytest.raises(PermanentChannelError, match=r"HTTP 404.*Could not find partyId.*974720760"):
        upload(sender, new_id(), to="974720760")  # a valid number, but nobody on the sandbox network
    with pytest.raises(PermanentChannelError, match=r"HTTP 403.*Resource not whitelisted"):
        upload(sender, new_id(), resource_id="eformidling-dpo-meldingsutveksling")
    assert len(service.store.summary()) == before
    assert list(service.store.incoming.iterdir()) == []  # nothing half-written left behind


def test_the_form_is_checked_field_by_field(
    dpv_sandbox: SandboxServer, tokens, http: httpx.Client  # type: ignore[no-untyped-def]
) -> None:
    token = tokens(SENDER).access_token()
    url = f"{api_url(dpv_sandbox)}/correspondence/upload"
    base = {
        "Recipients": f"urn:altinn:organization:identifier-no:{DPO_RECEIVER}",
        "Correspondence.ResourceId": RESOURCE, "Correspondence.SendersReference": "ref-form",
        "Correspondence.Content.Language": "nb", "Correspondence.Content.MessageTitle": "Tittel",
        "Correspondence.Content.MessageSummary": "Sammendrag", "Correspondence.Content.MessageBody": "Tekst",
        "Correspondence.Content.Attachments[0].FileName": "a.txt",
        "Correspondence.Content.Attachments[0].SendersReference": "a",
    }

    def post(fields: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]) -> httpx.Response:
        return http.post(url, data=fields, files=files, headers={"Authorization": f"Bearer {token}"})

    a_file = [("attachments", ("a.txt", b"hei", "text/plain"))]
    assert post(base, a_file).status_code == 200
    cases = [
        ({k: v for k, v in base.items() if k != "Correspondence.ResourceId"}, a_file,
         "Correspondence.ResourceId is required"),
        (base, [("attachments", ("b.txt", b"hei", "text/plain"))], "Mismatch between uploaded files"),
        (base | {"Correspondence.Content.Attachments[0].Checksum": "0" * 32}, a_file, "Checksum mismatch"),
        (base, [("attachments", ("a.txt", b"", "text/plain"))], "File must have content"),
        (base | {"Correspondence.Content.Language": "sv"}, a_file, "Invalid language"),
        (base | {"Correspondence.Content.MessageTitel": "typo"}, a_file, "unknown field"),
        (base | {"IdempotentKey": "not-a-guid"}, a_file, "valid non-empty GUID"),
        (base | {"Recipients": "urn:altinn:organization:identifier-no:12345"}, a_file, "must be urn:altinn"),
        (base | {"Correspondence.Notification.NotificationChannel": "Email"}, a_file,
         "NotificationTemplate is required"),
    ]
    for fields, files, words in cases:
        answer = post(fields, files)
        assert answer.status_code == 400, (words, answer.text)
        assert words in answer.json()["detail"], answer.text


def test_a_correspondence_is_not_shown_to_others_and_an_unknown_id_is_not_found(
    sender: CorrespondenceClient, dpv_sandbox: SandboxServer, tokens, http: httpx.Client  # type: ignore[no-untyped-def]
) -> None:
    correspondence_id = upload(sender, new_id())
    stranger = CorrespondenceClient(api_url(dpv_sandbox), tokens(DPF_RECEIVER), http)
    with pytest.raises(CorrespondenceNotFound, match=r"HTTP 404.*was not found"):
        stranger.details(correspondence_id)
    with pytest.raises(CorrespondenceNotFound):
        sender.details(new_id())
    assert stranger.find_by_senders_reference(sender.details(correspondence_id).senders_reference or "") == []


def test_a_large_attachment_streams_through_client_and_sandbox(
    sender: CorrespondenceClient, service: CorrespondenceService, tmp_path: Path
) -> None:
    size = 120 * 1024 * 1024
    payload = tmp_path / "stor.pdf"
    with open(payload, "wb") as handle:
        handle.truncate(size)  # zeros that take no disk
    process = psutil.Process()
    before = process.memory_info().rss
    correspondence_id = upload(sender, new_id(), attachments=[Attachment("stor.pdf", "Stor", "application/pdf",
                                                                         payload)])
    grown = process.memory_info().rss - before
    stored = service.store.get(correspondence_id)
    assert stored is not None and stored.attachments[0].size == size
    assert stored.attachments[0].checksum == hashlib.md5(bytes(size), usedforsecurity=False).hexdigest()
    assert grown < 40 * 1024 * 1024, f"client and sandbox together grew by {grown // 2**20} MB"


def test_the_dpv_only_receiver_can_be_reached(sender: CorrespondenceClient) -> None:
    correspondence_id = upload(sender, new_id(), to=DPV_RECEIVER)
    assert sender.details(correspondence_id).status == "Published"


class _FrozenCache:
    """The shared fake wall clock, but a monotonic clock that stands still: the token client keeps
    its token past the time the sandbox says it expired."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return 0.0


def test_an_upload_refused_for_an_expired_token_is_sent_again_whole_with_a_fresh_one(
    dpv_sandbox: SandboxServer, pki: Pki, http: httpx.Client, clock: FakeClock, service: CorrespondenceService,
    tmp_path: Path,
) -> None:
    credentials = pki.orgs[SENDER]
    auth = authorisation_for(dpv_sandbox, credentials, SENDER, http, _FrozenCache(clock))  # type: ignore[arg-type]
    stale = auth.altinn(SCOPES)
    client = CorrespondenceClient(api_url(dpv_sandbox), stale, http)
    upload(client, new_id())
    clock.advance(31 * 60)  # past the Altinn token's 30 minutes
    attachments = documents(tmp_path)
    correspondence_id = upload(client, new_id(), attachments=attachments)
    assert stale.exchanges_made == 2
    stored = service.store.get(correspondence_id)
    assert stored is not None
    assert stored.attachments[0].path.read_bytes() == attachments[0].source.read_bytes()  # type: ignore[union-attr]


def test_the_recipient_lists_reads_and_confirms_what_it_received(
    sender: CorrespondenceClient, dpv_sandbox: SandboxServer, tokens, http: httpx.Client  # type: ignore[no-untyped-def]
) -> None:
    message_id = new_id()
    correspondence_id = upload(sender, message_id)
    token = tokens(DPO_RECEIVER, (CORRESPONDENCE_READ_SCOPE,)).access_token()
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{api_url(dpv_sandbox)}/correspondence"
    listed = http.get(base, params={"role": "Recipient", "sendersReference": message_id}, headers=headers)
    assert listed.json() == {"ids": [correspondence_id]}
    assert http.get(base, params={"role": "Sender", "sendersReference": message_id}, headers=headers).json() == {
        "ids": []}
    early = http.post(f"{base}/{correspondence_id}/confirm", headers=headers)
    assert early.status_code == 400 and "must be read" in early.json()["detail"]
    # The sandbox's own hook stands in for someone at the recipient opening it.
    assert http.post(f"{dpv_sandbox.url}/correspondence/_sandbox/correspondences/{correspondence_id}/markasread"
                     ).status_code == 200
    assert http.post(f"{base}/{correspondence_id}/confirm", headers=headers).status_code == 200
    assert [e.status for e in sender.details(correspondence_id).history][-2:] == ["Read", "Confirmed"]


def test_a_restarted_sandbox_keeps_its_correspondences(
    tmp_path: Path, catalogue: SandboxCatalogue, pki: Pki, http: httpx.Client
) -> None:
    def client_of(server: SandboxServer) -> CorrespondenceClient:
        credentials = pki.orgs[SENDER]
        return CorrespondenceClient(api_url(server), tokens_for(server, credentials, SENDER, SCOPES, http,
                                                                system_user=False), http)

    first_service = CorrespondenceService(CorrespondenceOptions(read_delay_s=None))
    with SandboxServer(tmp_path, catalogue, extra_apps={"/correspondence": first_service}) as server:
        correspondence_id = upload(client_of(server), new_id(),
                                   attachments=[Attachment("a.txt", "A", "text/plain", b"kept")])
    first_service.close()
    second_service = CorrespondenceService(CorrespondenceOptions(read_delay_s=None))
    with SandboxServer(tmp_path, catalogue, extra_apps={"/correspondence": second_service}) as server:
        details = client_of(server).details(correspondence_id)
        assert details.status == "Published"
        stored = second_service.store.get(correspondence_id)
        assert stored is not None and stored.attachments[0].path.read_bytes() == b"kept"
    second_service.close()
