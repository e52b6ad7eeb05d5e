"""The DPI Corner 2 client against the sandbox's Corner 2 on loopback: sending, and the status polling's rules
(a timeout on every poll, no overlapping rounds, back-off for old messages, 404/410 ending a message's polling)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509

from gateway.channels.base import SentMessage
from gateway.channels.dpi.client import Corner2Client, IncomingMessage, ReceiptPolling, StatusPolling, corner2_client
from gateway.clock import FakeClock, SystemClock
from gateway.config import Config, FoldersConfig, NetworkConfig, OrganisationConfig
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.formats.keys import OrgIdentity
from gateway.outbound_http import outbound_client
from gateway.sandbox.corner2_app import Corner2Service
from gateway.sandbox.faults import FaultRule
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import MAILBOX_PROVIDER, PERSON_WITH_MAILBOX
from gateway.tokens import TokenSource
from tests.dpi_sandbox.conftest import GATEWAY
from tests.dpi_sandbox.support import Document, asice, digital_business, encrypt, sbd, sign, wait_for, write
from tests.network_proxy.forward_proxy import ForwardProxy
from tests.sandbox.support import Credentials, authorisation_for

ADDRESS = "kari.postkasse#1AB2"
STATUSES = "/dpi/messages/out/*/statuses"


@pytest.fixture
def client(network: SandboxNetwork, dpi_tokens: TokenSource) -> Iterator[Corner2Client]:
    with httpx.Client() as http:
        yield Corner2Client(network.corner2_url, dpi_tokens, http, timeout=1.0)


@pytest.fixture(autouse=True)
def no_faults(network: SandboxNetwork) -> Iterator[None]:
    yield
    network.server.faults.clear()
    corner2(network).store.status_delay_s = 0.0


def corner2(network: SandboxNetwork) -> Corner2Service:
    assert network.corner2 is not None
    return network.corner2


def send_letter(client: Corner2Client, identity: OrgIdentity, recipient: x509.Certificate, tmp_path: Path,
                kanal: str | None = None) -> str:
    """A digital letter to Kari, sent through the client from a file; returns its messageId."""
    cms = encrypt(asice([Document("brev.pdf", b"%PDF-1.7 brev")], GATEWAY, PERSON_WITH_MAILBOX, ADDRESS), recipient)
    message_id = str(uuid.uuid4())
    document = sbd("digital", digital_business(GATEWAY, ADDRESS, client.tokens(), cms), GATEWAY, MAILBOX_PROVIDER[0],
                   message_id=message_id)
    client.send(sign(document, identity), write(tmp_path / f"{message_id}.cms", cms), kanal=kanal)
    return message_id


def test_a_sent_letter_polls_to_mottatt_once_corner2_has_handed_it_on(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    message_id = send_letter(client, identity, mailbox_certificate, tmp_path)
    assert corner2(network).providers.deliveries(message_id) == 1
    assert client.already_sent(message_id)
    polling = StatusPolling(client)
    sent = [SentMessage(message_id, message_id, SystemClock().now())]
    [update] = wait_for(lambda: polling.poll(sent), what="MOTTATT")
    assert (update.message_id, update.status, update.ends_polling) == (message_id, "MOTTATT", False)
    assert "handed the message on" in update.description


def test_the_client_refuses_an_oversize_package_before_sending_anything(
    network: SandboxNetwork, client: Corner2Client, tmp_path: Path
) -> None:
    package = tmp_path / "stor.cms"
    with open(package, "wb") as handle:
        handle.truncate(50 * 1024 * 1024 + 1)
    refused_before = len(corner2(network).store.refused)
    with pytest.raises(PermanentChannelError, match="more than DPI's limit"):
        client.send("not.sent.at-all", package)
    assert len(corner2(network).store.refused) == refused_before  # Corner 2 never saw it


def test_a_refusal_comes_back_with_corner2s_words(client: Corner2Client, tmp_path: Path) -> None:
    with pytest.raises(PermanentChannelError, match="not a JWT"):
        client.send("not-a-jwt", write(tmp_path / "small.cms", b"0"))


def test_every_status_poll_has_a_timeout(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    message_id = send_letter(client, identity, mailbox_certificate, tmp_path)
    network.server.faults.set_rules(FaultRule("stall", method="GET", path=STATUSES, stall_seconds=8.0))
    started = time.monotonic()
    with pytest.raises(RetryableChannelError):
        client.statuses(message_id)
    assert time.monotonic() - started < 5.0  # the client's 1 s, not the server's 8 s stall
    started = time.monotonic()
    with pytest.raises(RetryableChannelError):  # a round whose every poll timed out fails as a whole
        StatusPolling(client).poll([SentMessage(message_id, message_id, SystemClock().now())])
    assert time.monotonic() - started < 5.0


def test_one_message_never_has_two_polls_on_the_wire(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    first, second = (send_letter(client, identity, mailbox_certificate, tmp_path) for _ in range(2))
    store = corner2(network).store
    store.status_delay_s = 0.6
    polling = StatusPolling(client)
    now = SystemClock().now()

    def side_by_side(*batches: list[SentMessage]) -> None:
        start = threading.Barrier(len(batches))

        def one(batch: list[SentMessage]) -> None:
            start.wait()
            polling.poll(batch)

        threads = [threading.Thread(target=one, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)

    store.most_status_requests_at_once = 0
    side_by_side(*[[SentMessage(first, first, now)]] * 3)  # three overlapping calls for one message
    assert (store.status_requests[first], store.most_status_requests_at_once, polling.overlaps_skipped) == (1, 1, 2)
    # Different messages side by side (the status poller's chunks) are each asked for, at the same time.
    store.most_status_requests_at_once = 0
    side_by_side([SentMessage(first, first, now)], [SentMessage(second, second, now)])
    assert (store.status_requests[first], store.status_requests[second]) == (2, 1)
    assert store.most_status_requests_at_once == 2


def test_a_receipt_round_never_overlaps_the_one_still_running(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    kanal = f"runde{uuid.uuid4().hex[:12]}"
    message_id = send_letter(client, identity, mailbox_certificate, tmp_path, kanal=kanal)
    receipts = ReceiptPolling(client, kanal=kanal)
    handling, handled = threading.Event(), []
    overlapping: list[int] = []

    def handle(incoming: IncomingMessage) -> str:
        handled.append(incoming)
        handling.set()
        overlapping.append(receipts.poll(handle))  # a second round while this one runs
        return str(receipt_payload(incoming.forretningsmelding)["standardBusinessDocumentHeader"][
            "documentIdentification"]["instanceIdentifier"])

    assert receipts.poll(handle) == 1
    assert handling.is_set() and len(handled) == 1 and overlapping == [0] and receipts.skipped_rounds == 1
    assert receipts.poll(handle) == 0 and len(handled) == 1  # taken: not offered again
    assert [r.read for r in corner2(network).store.receipts_for(message_id)] == [True]


def test_old_messages_are_asked_for_less_often(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    old, new = (send_letter(client, identity, mailbox_certificate, tmp_path) for _ in range(2))
    clock = FakeClock(SystemClock().now())
    polling = StatusPolling(client, clock)
    sent = [SentMessage(old, old, clock.now() - timedelta(days=2)), SentMessage(new, new, clock.now())]
    asked = corner2(network).store.status_requests
    for _ in range(3):
        polling.poll(sent)
        clock.advance(60)
    assert (asked[old], asked[new]) == (1, 3)  # a two-day-old message: once per 5 minutes
    clock.advance(300)
    polling.poll(sent)
    assert (asked[old], asked[new]) == (2, 4)


def test_a_message_corner2_no_longer_has_ends_its_polling_with_annet(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    deleted = send_letter(client, identity, mailbox_certificate, tmp_path)
    assert corner2(network).store.forget(deleted)  # as the provider lets a message go: 410
    never = str(uuid.uuid4())  # 404
    gone: list[str] = []
    polling = StatusPolling(client, on_gone=gone.append)
    updates = polling.poll([SentMessage(m, m, SystemClock().now()) for m in (deleted, never)])
    assert [(u.message_id, u.status, u.ends_polling) for u in updates] == [
        (deleted, "ANNET", True), (never, "ANNET", True)]
    assert all(u.description.startswith("deleted at the provider") for u in updates)
    assert "410" in updates[0].description and "404" in updates[1].description
    assert gone == [deleted, never]
    assert client.already_sent(deleted) and not client.already_sent(never)


def test_receipts_are_listed_by_kanal_and_marked_read(
    network: SandboxNetwork, client: Corner2Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
    tmp_path: Path
) -> None:
    kanal = f"klient{uuid.uuid4().hex[:12]}"
    message_id = send_letter(client, identity, mailbox_certificate, tmp_path, kanal=kanal)
    [receipt] = client.incoming(kanal=kanal)
    assert receipt.download_url is None and receipt.forretningsmelding.count(".") == 2
    payload = receipt_payload(receipt.forretningsmelding)
    assert payload["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] == message_id
    client.mark_read(message_id)
    assert client.incoming(kanal=kanal) == []
    client.mark_read(message_id)  # nothing left under it (404): counts as done, as the reference takes it


def receipt_payload(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False})["standardBusinessDocument"])


def test_the_client_takes_the_configured_way_out_and_the_daemons_tokens(
    network: SandboxNetwork, identity: OrgIdentity, mailbox_certificate: x509.Certificate, tmp_path: Path
) -> None:
    config = Config(source=tmp_path / "config.yaml", organisation=OrganisationConfig(GATEWAY),
                    folders=FoldersConfig(*[tmp_path] * 6), network=NetworkConfig(proxy=None, no_proxy=""))
    with ForwardProxy() as proxy, outbound_client(config, 10, environ={"HTTP_PROXY": proxy.url}) as http:
        auth = authorisation_for(network.server, Credentials(identity.private_key, [identity.certificate]),
                                 GATEWAY, http)
        client = corner2_client(network.corner2_url, auth, http, GATEWAY)
        message_id = send_letter(client, identity, mailbox_certificate, tmp_path)
        assert client.statuses(message_id)[0].status == "OPPRETTET"
        # The token grant, the send and the poll all went through the proxy.
        assert proxy.requests[f"127.0.0.1:{network.server.port}"] >= 3
    assert http.headers["User-Agent"].startswith("efm-gateway/")
