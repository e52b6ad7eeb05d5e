"""The one-shot upload (`POST /broker/api/v1/filetransfer/upload`, multipart/form-data) on the sandbox
broker and in BrokerClient; and the sandbox's downloads, small ones served from memory."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.responses import FileResponse

from gateway.channels.dpo.client import DPO_RESOURCE_ID, BrokerClient
from gateway.clock import FakeClock
from gateway.errors import PermanentChannelError, SecurityError
from gateway.maskinporten import GrantKey, TokenClient
from gateway.sandbox import SandboxServer, broker_form
from gateway.sandbox import broker_app as broker_module
from tests.sandbox.support import ALL_SCOPES, DPF_RECEIVER, DPO_RECEIVER, SENDER, Pki, TokenFactory

A, B = f"0192:{SENDER}", f"0192:{DPO_RECEIVER}"


@pytest.fixture
def alice(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return BrokerClient(sandbox.broker_url, token_client(SENDER), http)


@pytest.fixture
def bob(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return BrokerClient(sandbox.broker_url, token_client(DPO_RECEIVER), http)


def stats(sandbox: SandboxServer, http: httpx.Client) -> dict[str, Any]:
    return http.get(f"{sandbox.url}/broker/_sandbox/stats").json()


def leftovers(sandbox: SandboxServer) -> list[str]:
    return sorted(path.name for path in (sandbox.data_dir / "broker" / "files").glob("*.part"))


def received(bob: BrokerClient, transfer_id: str) -> bytes:
    bob.wait_while_processing(transfer_id, 10)  # the virus scan, as on the real broker
    target = io.BytesIO()
    bob.download(transfer_id, target)
    return target.getvalue()


def test_a_one_shot_upload_is_published_once_and_downloads_byte_for_byte(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient, bob: BrokerClient, tmp_path: Path
) -> None:
    payload = tmp_path / "sbd.zip"
    payload.write_bytes(os.urandom(3 * 1024 * 1024 + 5))  # above the small-download size: streamed back
    checksum = hashlib.md5(payload.read_bytes(), usedforsecurity=False).hexdigest()

    transfer_id = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-one-shot", payload,
                                              properties={"kind": "status"}, checksum=checksum.upper())

    assert bob.overview(transfer_id)["fileTransferStatus"] == "UploadProcessing"
    assert bob.wait_while_processing(transfer_id, 10)["fileTransferStatus"] == "Published"
    assert transfer_id in bob.list_incoming(DPO_RESOURCE_ID)
    overview = bob.overview(transfer_id)
    assert overview["fileTransferStatus"] == "Published"
    assert overview["fileTransferSize"] == payload.stat().st_size
    assert overview["checksum"].lower() == checksum
    assert overview["sender"] == A
    assert overview["fileName"] == "sbd.zip"
    assert overview["sendersFileTransferReference"] == "ref-one-shot"
    assert overview["propertyList"] == {"kind": "status"}
    assert [r["recipient"] for r in overview["recipients"]] == [B]
    assert received(bob, transfer_id) == payload.read_bytes()
    counts = stats(sandbox, http)
    assert counts["initialisedByReference"]["ref-one-shot"] == 1
    assert counts["uploadsByReference"]["ref-one-shot"] == 1
    bob.confirm_download(transfer_id)
    assert alice.overview(transfer_id)["fileTransferStatus"] == "AllConfirmedDownloaded"
    assert leftovers(sandbox) == []


def test_bytes_held_in_memory_go_on_either_path(alice: BrokerClient, bob: BrokerClient) -> None:
    one_shot = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-bytes-1", b"one request")
    two_step = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-bytes-2")
    alice.upload(two_step, b"two requests")
    assert received(bob, one_shot) == b"one request"
    assert received(bob, two_step) == b"two requests"


def test_the_answer_is_the_bare_id_as_the_api_gives_it(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    response = http.post(
        f"{sandbox.broker_url}/filetransfer/upload",
        headers={"Authorization": f"Bearer {token_client(SENDER)()}"},
        data={"Metadata.FileName": "sbd.zip", "Metadata.ResourceId": DPO_RESOURCE_ID, "Metadata.Sender": A,
              "Metadata.Recipients": [B]},
        files={"FileTransfer": ("sbd.zip", b"content", "application/octet-stream")},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json(), str) and len(response.json()) == 36


def test_a_sender_cannot_speak_for_another_organisation(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient
) -> None:
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*not for the sender"):
        alice.initialise_and_upload(DPO_RESOURCE_ID, B, A, "sbd.zip", "ref-one-shot-impostor", b"forged")
    assert "ref-one-shot-impostor" not in stats(sandbox, http)["initialisedByReference"]
    assert leftovers(sandbox) == []


def test_a_reader_without_the_write_scope_cannot_send(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    read_only = BrokerClient(sandbox.broker_url, token_client(SENDER, scopes=("altinn:broker.read",)), http)
    with pytest.raises(PermanentChannelError, match=r"HTTP 403.*altinn:broker.write"):
        read_only.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-one-shot-scope", b"x")


def test_a_checksum_mismatch_fails_the_transfer(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    with pytest.raises(PermanentChannelError, match=r"HTTP 400.*checksum of uploaded file did not match"):
        alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-one-shot-md5", b"content",
                                    checksum="0" * 32)
    counts = stats(sandbox, http)
    assert "ref-one-shot-md5" not in counts["uploadsByReference"]
    assert counts["initialisedByReference"]["ref-one-shot-md5"] == 1  # as in Altinn: initialised, then failed
    assert counts["fileTransfersByStatus"]["Failed"] >= 1
    assert not any(bob.overview(t)["sendersFileTransferReference"] == "ref-one-shot-md5"
                   for t in bob.list_incoming(DPO_RESOURCE_ID))
    assert leftovers(sandbox) == []


Part = tuple[str, str | None, bytes]  # name, filename (a file part) or None, content
BOUNDARY = "one-shot-test-boundary"
GOOD: list[Part] = [
    ("Metadata.FileName", None, b"sbd.zip"),
    ("Metadata.ResourceId", None, DPO_RESOURCE_ID.encode()),
    ("Metadata.SendersFileTransferReference", None, b"ref-one-shot-bad-form"),
    ("Metadata.Sender", None, A.encode()),
    ("Metadata.Recipients", None, B.encode()),
    ("FileTransfer", "sbd.zip", b"content"),
]


def multipart(parts: list[Part], closed: bool = True) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


def without(name: str) -> list[Part]:
    return [part for part in GOOD if part[0] != name]


def post_form(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, body: bytes,
              content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> httpx.Response:
    return http.post(f"{sandbox.broker_url}/filetransfer/upload", content=body,
                     headers={"Authorization": f"Bearer {token_client(SENDER)()}", "Content-Type": content_type})


def test_a_well_formed_hand_made_form_is_accepted(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, bob: BrokerClient
) -> None:
    """The shape the tests below break one field at a time; ASP.NET binds names ignoring case."""
    parts = [(name.lower(), filename, content) for name, filename, content in GOOD]
    parts[2] = ("Metadata.SendersFileTransferReference", None, b"ref-one-shot-hand-made")
    parts.insert(4, ("Metadata.Recipients[1]", None, f"0192:{DPF_RECEIVER}".encode()))
    response = post_form(sandbox, token_client, http, multipart(parts))
    assert response.status_code == 200, response.text
    assert received(bob, response.json()) == b"content"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (without("Metadata.FileName"), "Metadata.FileName is required"),
        (without("Metadata.ResourceId"), "Metadata.ResourceId is required"),
        (without("Metadata.Sender"), "Metadata.Sender is required"),
        (without("Metadata.Recipients"), "Metadata.Recipients must list at least one recipient"),
        (without("FileTransfer"), "FileTransfer is required"),
        ([*without("FileTransfer"), ("FileTransfer", None, b"not a file")], "FileTransfer must be a file part"),
        ([*GOOD, ("FileTransfer", "b.zip", b"more")], "more than one FileTransfer"),
        ([*GOOD, ("Metadata.Colour", None, b"blue")], "unknown field.*Metadata.Colour"),
        ([*without("Metadata.FileName"), ("fileName", None, b"sbd.zip")], r"unknown field\(s\): fileName"),
        ([*GOOD, ("metadata.filename", None, b"other.zip")], "Metadata.FileName more than once"),
        ([*GOOD, ("Metadata.DisableVirusScan", None, b"maybe")], "DisableVirusScan must be true or false"),
        ([*GOOD, ("Metadata.Recipients", None, b"0192:123")], "must look like 0192:<orgnr>"),
        ([*GOOD, ("Metadata.PropertyList[k]", None, b"v" * 301)], "Metadata.PropertyList holds at most"),
        ([*GOOD, ("Metadata.Checksum", None, b"c" * 9000)], "longer than 8192 bytes"),
        ([*GOOD, ("Metadata.Checksum", None, b"\xff\xfe")], "not UTF-8"),
    ],
)
def test_a_form_lacking_or_spoiling_a_field_is_refused_with_400(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, parts: list[Part], expected: str
) -> None:
    response = post_form(sandbox, token_client, http, multipart(parts))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json", "the description's media type for errors"
    assert re.search(expected, response.json()["detail"]), response.json()["detail"]
    assert "ref-one-shot-bad-form" not in stats(sandbox, http)["initialisedByReference"]
    assert leftovers(sandbox) == []


def test_a_body_cut_short_or_not_multipart_is_refused(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    cut = post_form(sandbox, token_client, http, multipart(GOOD, closed=False))
    assert cut.status_code == 400
    assert "closing boundary" in cut.json()["detail"]
    assert post_form(sandbox, token_client, http, b'{"fileName": "sbd.zip"}', "application/json").status_code == 415
    assert post_form(sandbox, token_client, http, multipart(GOOD), "multipart/form-data").status_code == 415
    assert http.post(f"{sandbox.broker_url}/filetransfer/upload", content=multipart(GOOD),
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}).status_code == 401
    assert "ref-one-shot-bad-form" not in stats(sandbox, http)["initialisedByReference"]
    assert leftovers(sandbox) == []


def test_a_file_over_the_size_limit_is_refused_while_it_streams(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_form, "MAX_FILE_TRANSFER_SIZE", 1000)
    with pytest.raises(PermanentChannelError, match="File size exceeds maximum"):
        alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-one-shot-big", bytes(1001))
    assert "ref-one-shot-big" not in stats(sandbox, http)["initialisedByReference"]
    assert leftovers(sandbox) == []


def test_memory_does_not_grow_with_the_file_size(alice: BrokerClient, bob: BrokerClient, tmp_path: Path) -> None:
    size = 96 * 1024 * 1024
    payload = tmp_path / "sparse.zip"
    with open(payload, "wb") as handle:
        handle.truncate(size)  # zeros that take no disk
    process = psutil.Process()
    before = process.memory_info().rss
    transfer_id = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-one-shot-large", payload)
    grown = process.memory_info().rss - before
    assert bob.overview(transfer_id)["fileTransferSize"] == size
    assert bob.overview(transfer_id)["checksum"] == hashlib.md5(bytes(size), usedforsecurity=False).hexdigest()
    assert grown < 40 * 1024 * 1024, f"client and sandbox together grew by {grown // 2**20} MB"


def _mock_broker(pki: Pki, answer: Any) -> tuple[httpx.Client, BrokerClient, list[tuple[str, bytes]]]:
    issued: list[str] = []
    requests: list[tuple[str, bytes]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(f"token-{len(issued) + 1}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 120})
        requests.append((request.headers["authorization"], request.read()))
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401, json={"title": "Unauthorized", "detail": "the access token has expired"})
        return httpx.Response(200, json=answer)

    http = httpx.Client(transport=httpx.MockTransport(handle))
    token_http = httpx.Client(transport=httpx.MockTransport(handle))  # `http` stays unopened for the test's `with`
    credentials = pki.orgs[SENDER]
    clock = FakeClock()
    tokens = TokenClient("http://broker.test/token", "aud", "c", GrantKey(credentials.key,
                         certificate=credentials.chain[0]),
                         ALL_SCOPES, token_http, clock=clock)
    tokens()  # token-1, fetched long enough ago to have been revoked: a 401 to it earns one new token
    clock.advance(60)
    return http, BrokerClient("http://broker.test/api/v1", tokens, http), requests


@pytest.mark.parametrize("from_file", [True, False])
def test_a_one_shot_refused_for_a_stale_token_is_sent_again_whole(pki: Pki, tmp_path: Path, from_file: bool) -> None:
    source = tmp_path / "sbd.zip"
    source.write_bytes(b"the whole file")
    http, broker, requests = _mock_broker(pki, "f-1")
    with http:
        transfer_id = broker.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref",
                                                   source if from_file else b"the whole file")
    assert transfer_id == "f-1"
    assert [authorization for authorization, _ in requests] == ["Bearer token-1", "Bearer token-2"]
    first, again = (body.replace(body.split(b"\r\n", 1)[0], b"--boundary") for _, body in requests)
    assert first == again  # each request makes its own boundary; the rest is alike
    assert again.count(b"the whole file") == 1
    assert b'name="Metadata.Recipients"\r\n\r\n' + B.encode() in again


def test_a_bytes_upload_refused_for_a_stale_token_is_sent_again_whole(pki: Pki) -> None:
    http, broker, requests = _mock_broker(pki, {"fileTransferId": "f"})
    with http:
        broker.upload("f", b"the whole file")
    assert requests == [("Bearer token-1", b"the whole file"), ("Bearer token-2", b"the whole file")]


@pytest.mark.parametrize(("answer", "expected"), [({"fileTransferId": "f-2"}, "f-2"), ("f-3", "f-3")])
def test_the_client_takes_the_id_bare_or_in_an_object(pki: Pki, answer: Any, expected: str) -> None:
    http, broker, _ = _mock_broker(pki, answer)
    with http:
        assert broker.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref", b"x") == expected


@pytest.mark.parametrize("answer", [{"id": "f"}, "", 42, ["f"]])
def test_an_answer_without_an_id_is_a_permanent_error(pki: Pki, answer: Any) -> None:
    http, broker, _ = _mock_broker(pki, answer)
    with http, pytest.raises(PermanentChannelError, match="no fileTransferId"):
        broker.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref", b"x")


@pytest.mark.parametrize("size", [0, 10, 1024 * 1024, 1024 * 1024 + 1])
def test_small_and_large_downloads_answer_alike(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, alice: BrokerClient, size: int
) -> None:
    content = os.urandom(size)
    transfer_id = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", f"ref-download-{size}")
    alice.upload(transfer_id, content)
    alice.wait_while_processing(transfer_id, 10)
    response = http.get(f"{sandbox.broker_url}/filetransfer/{transfer_id}/download",
                        headers={"Authorization": f"Bearer {token_client(DPO_RECEIVER)()}"})
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(size)
    assert response.headers["content-disposition"] == 'attachment; filename="sbd.zip"'


@pytest.mark.parametrize("file_name", ["sbd.zip", "æøå melding.zip", 'quote".zip'])
def test_the_content_disposition_is_the_one_file_response_sends(tmp_path: Path, file_name: str) -> None:
    expected = FileResponse(tmp_path, filename=file_name).headers["content-disposition"]
    assert broker_module._content_disposition(file_name) == expected


def test_a_download_larger_than_the_channel_carries_is_refused_as_it_streams(
    alice: BrokerClient, bob: BrokerClient
) -> None:
    transfer_id = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-too-large", bytes(300_000))
    alice.wait_while_processing(transfer_id, 10)
    target = io.BytesIO()
    with pytest.raises(SecurityError, match="larger than 100000 bytes"):
        bob.download(transfer_id, target, max_bytes=100_000)
    assert target.tell() <= 100_000, "nothing past the limit is written"
    assert bob.download(transfer_id, io.BytesIO(), max_bytes=300_000) == 300_000


def test_a_list_holds_the_100_newest_transfers_newest_first_as_altinn_does(alice: BrokerClient, bob: BrokerClient):
    resource = "test-list-limit"
    sent = [
        alice.initialise_and_upload(resource, A, B, "sbd.zip", f"ref-list-{index}", b"x") for index in range(105)
    ]
    bob.wait_while_processing(sent[-1], 10)
    listed = bob.list_incoming(resource)
    assert listed == sent[5:][::-1], "the 100 last published, newest first"
    for transfer_id in listed:
        bob.download(transfer_id, io.BytesIO())
        bob.confirm_download(transfer_id)
    assert bob.list_incoming(resource) == sent[:5][::-1], "confirmed ones leave the list; the older ones show"
