"""The sandbox DPO broker (in its default, real-broker mode) and BrokerClient: a whole transfer A -> B,
access rules, persistence."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.channels.dpo.client import BROKER_WRITE_SCOPE, DPO_RESOURCE_ID, BrokerClient
from gateway.clock import FakeClock
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.maskinporten import GrantKey, TokenClient
from gateway.sandbox import SandboxCatalogue, SandboxServer
from gateway.tokens import TokenSource
from tests.sandbox.support import ALL_SCOPES, DPF_RECEIVER, DPO_RECEIVER, SENDER, Pki, TokenFactory, tokens_for

A, B = f"0192:{SENDER}", f"0192:{DPO_RECEIVER}"


def broker_for(sandbox: SandboxServer, token_client: TokenFactory, orgnr: str,
               http: httpx.Client) -> BrokerClient:
    return BrokerClient(sandbox.broker_url, token_client(orgnr), http)


@pytest.fixture
def alice(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return broker_for(sandbox, token_client, SENDER, http)


@pytest.fixture
def bob(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return broker_for(sandbox, token_client, DPO_RECEIVER, http)


def send(alice: BrokerClient, reference: str, content: bytes | Path) -> str:
    """Initialise, upload, and wait out the virus scan: the transfer is Published."""
    transfer_id = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", reference)
    alice.upload(transfer_id, content if isinstance(content, Path) else io.BytesIO(content))
    assert alice.wait_while_processing(transfer_id, 10)["fileTransferStatus"] == "Published"
    return transfer_id


def test_a_few_megabytes_go_from_a_to_b_and_leave_the_list_once_confirmed(
    alice: BrokerClient, bob: BrokerClient, tmp_path: Path
) -> None:
    payload = tmp_path / "sbd.zip"
    payload.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    transfer_id = send(alice, "ref-full-cycle", payload)

    assert transfer_id in bob.list_incoming(DPO_RESOURCE_ID)
    overview = bob.overview(transfer_id)
    assert overview["fileTransferStatus"] == "Published"
    assert overview["fileTransferSize"] == payload.stat().st_size
    assert overview["checksum"] == hashlib.md5(payload.read_bytes(), usedforsecurity=False).hexdigest()
    assert overview["sender"] == A
    assert overview["sendersFileTransferReference"] == "ref-full-cycle"
    assert [r["recipient"] for r in overview["recipients"]] == [B]

    received = tmp_path / "received.zip"
    with open(received, "wb") as target:
        assert bob.download(transfer_id, target) == payload.stat().st_size
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(payload.read_bytes()).digest()
    assert bob.overview(transfer_id)["recipients"][0]["currentRecipientFileTransferStatusCode"] == "DownloadStarted"

    bob.confirm_download(transfer_id)
    bob.confirm_download(transfer_id)  # a retry after a crash is harmless (the broker's 400 is understood)
    assert transfer_id not in bob.list_incoming(DPO_RESOURCE_ID)
    assert alice.overview(transfer_id)["fileTransferStatus"] == "AllConfirmedDownloaded"


def test_only_recipients_may_download_or_confirm(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, alice: BrokerClient
) -> None:
    transfer_id = send(alice, "ref-access", b"for bob only")
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*system user with access"):
        alice.download(transfer_id, io.BytesIO())
    stranger = broker_for(sandbox, token_client, DPF_RECEIVER, http)
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*not a recipient"):
        stranger.download(transfer_id, io.BytesIO())
    with pytest.raises(PermanentChannelError, match="HTTP 401"):
        stranger.confirm_download(transfer_id)
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*neither sender nor recipient"):
        stranger.overview(transfer_id)
    assert transfer_id not in stranger.list_incoming(DPO_RESOURCE_ID)
    assert transfer_id not in alice.list_incoming(DPO_RESOURCE_ID)


def test_requests_without_a_valid_token_get_401(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert http.get(f"{sandbox.broker_url}/filetransfer", params={"resourceId": DPO_RESOURCE_ID}).status_code == 401
    forged = http.get(f"{sandbox.broker_url}/filetransfer", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401


def test_a_sender_cannot_speak_for_another_organisation(alice: BrokerClient) -> None:
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*not for the sender"):
        alice.initialise(DPO_RESOURCE_ID, B, A, "sbd.zip", "ref-impostor")


def test_a_reader_without_the_write_scope_cannot_send(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    read_only = BrokerClient(sandbox.broker_url, token_client(SENDER, scopes=("altinn:broker.read",)), http)
    with pytest.raises(PermanentChannelError, match=BROKER_WRITE_SCOPE):
        read_only.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-scope")


def test_a_second_upload_to_the_same_transfer_is_refused(alice: BrokerClient) -> None:
    transfer_id = send(alice, "ref-twice", b"once")
    with pytest.raises(PermanentChannelError, match="HTTP 409"):
        alice.upload(transfer_id, io.BytesIO(b"twice"))


def test_a_checksum_mismatch_fails_the_transfer(alice: BrokerClient, bob: BrokerClient) -> None:
    transfer_id = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-md5", checksum="0" * 32)
    with pytest.raises(PermanentChannelError, match="checksum"):
        alice.upload(transfer_id, io.BytesIO(b"content"))
    assert alice.overview(transfer_id)["fileTransferStatus"] == "Failed"
    assert transfer_id not in bob.list_incoming(DPO_RESOURCE_ID)


def test_stats_count_uploads_per_reference(sandbox: SandboxServer, alice: BrokerClient, http: httpx.Client) -> None:
    send(alice, "ref-stats", b"one")
    send(alice, "ref-stats", b"two")
    alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-stats")  # initialised, never uploaded
    stats = http.get(f"{sandbox.url}/broker/_sandbox/stats").json()
    assert stats["uploadsByReference"]["ref-stats"] == 2
    assert stats["initialisedByReference"]["ref-stats"] == 3
    assert stats["totalUploads"] >= 2


def test_transfers_survive_a_restart_of_the_sandbox(
    tmp_path: Path, catalogue: SandboxCatalogue, pki: Pki, token_client: TokenFactory
) -> None:
    data_dir = tmp_path / "sandbox"
    with SandboxServer(data_dir, catalogue) as first, httpx.Client(timeout=10) as http:
        first_alice = BrokerClient(first.broker_url, _tokens(first, pki, SENDER, http), http)
        transfer_id = send(first_alice, "ref-restart", b"still here after a restart")
        kid_before = http.get(f"{first.registry_url}/jwk").json()["keys"][0]["kid"]
    with SandboxServer(data_dir, catalogue) as second, httpx.Client(timeout=10) as http:
        second_bob = BrokerClient(second.broker_url, _tokens(second, pki, DPO_RECEIVER, http), http)
        assert second_bob.list_incoming(DPO_RESOURCE_ID) == [transfer_id]
        target = io.BytesIO()
        second_bob.download(transfer_id, target)
        assert target.getvalue() == b"still here after a restart"
        assert http.get(f"{second.registry_url}/jwk").json()["keys"][0]["kid"] == kid_before
        assert http.get(f"{second.url}/broker/_sandbox/stats").json()["uploadsByReference"] == {"ref-restart": 1}


def test_an_unreachable_broker_is_retryable(http: httpx.Client) -> None:
    broker = BrokerClient("http://127.0.0.1:9/broker/api/v1", lambda: "token", http)
    with pytest.raises(RetryableChannelError):
        broker.list_incoming(DPO_RESOURCE_ID)
    with pytest.raises(RetryableChannelError):
        broker.upload("00000000-0000-0000-0000-000000000000", io.BytesIO(b"x"))


def _tokens(server: SandboxServer, pki: Pki, orgnr: str, http: httpx.Client) -> TokenSource:
    return tokens_for(server, pki.orgs[orgnr], orgnr, ALL_SCOPES, http)


class _Zeros(io.RawIOBase):
    """`size` zero bytes, made on demand: a big file that costs no memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        self.digest.update(data)
        return len(data)


def test_memory_does_not_grow_with_the_file_size(alice: BrokerClient, bob: BrokerClient) -> None:
    size = 96 * 1024 * 1024
    process = psutil.Process()
    before = process.memory_info().rss
    transfer_id = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-big")
    alice.upload(transfer_id, _Zeros(size))  # type: ignore[arg-type]
    alice.wait_while_processing(transfer_id, 10)
    sink = _Sink()
    assert bob.download(transfer_id, sink) == size  # type: ignore[arg-type]
    grown = process.memory_info().rss - before
    assert sink.digest.digest() == hashlib.sha256(bytes(size)).digest()
    assert grown < 40 * 1024 * 1024, f"client and sandbox together grew by {grown // 2**20} MB"


def _refusing_broker(pki: Pki, refuse: set[str]) -> tuple[BrokerClient, TokenClient, list, FakeClock, httpx.Client]:
    """A broker (MockTransport) answering 401 to the tokens in `refuse`, and a token endpoint counting grants."""
    issued: list[str] = []
    uploads: list[tuple[str, bytes]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(f"token-{len(issued) + 1}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 120})
        uploads.append((request.headers["authorization"], request.read()))
        if request.headers["authorization"].removeprefix("Bearer ") in refuse:
            return httpx.Response(401, json={"title": "Unauthorized", "detail": "no access"})
        return httpx.Response(200, json={"fileTransferId": "f"})

    clock = FakeClock()
    http = httpx.Client(transport=httpx.MockTransport(handle))
    credentials = pki.orgs[SENDER]
    tokens = TokenClient("http://broker.test/token", "aud", "c", GrantKey(credentials.key,
                         certificate=credentials.chain[0]), ALL_SCOPES, http, clock=clock)
    return BrokerClient("http://broker.test/api/v1", tokens, http), tokens, uploads, clock, http


def test_an_upload_refused_for_a_stale_token_is_sent_again_whole_with_a_fresh_one(pki: Pki) -> None:
    broker, tokens, uploads, clock, http = _refusing_broker(pki, {"token-1"})
    with http:
        tokens()  # token-1, fetched a while before the upload: it may have been revoked meanwhile
        clock.advance(60)
        broker.upload("f", io.BytesIO(b"the whole file"))
    assert uploads == [("Bearer token-1", b"the whole file"), ("Bearer token-2", b"the whole file")]


def test_a_refusal_costs_at_most_one_new_token_per_token_lifetime(pki: Pki) -> None:
    broker, tokens, _uploads, clock, http = _refusing_broker(pki, {"token-1", "token-2", "token-3", "token-4"})
    with http:
        for _ in range(3):
            with pytest.raises(PermanentChannelError, match=r"refused access.*system user"):
                broker.upload("f", io.BytesIO(b"x"))
            with pytest.raises(PermanentChannelError, match=r"refused access.*HTTP 401"):
                broker.overview("f")
        assert tokens.grants_made == 2, "one new token after the first refusal, then the refusal stands"
        clock.advance(100)  # the second token's lifetime is over: a new one, and once more one after a refusal
        with pytest.raises(PermanentChannelError, match="refused access"):
            broker.overview("f")
        assert tokens.grants_made == 4
