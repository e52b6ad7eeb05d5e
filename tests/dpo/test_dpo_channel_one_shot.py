"""DpoChannel.send against the sandbox broker (as the real one: system users, a virus scan): a
repeatable package (a status message) goes in one request; a business message keeps the two steps
that make it exactly-once. Packages may be files or bytes held in memory. `send` returns once the
broker has Published the transfer; a failed scan is a permanent error with the broker's reason, a
scan still running a retryable one whose retry does not upload again."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DpoChannel
from gateway.channels.dpo.client import DPO_RESOURCE_ID, BrokerClient, md5_hex
from gateway.clock import SystemClock
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.sandbox import SandboxCatalogue, SandboxOrganisation, SandboxServer
from gateway.sandbox.catalogue import ARKIVMELDING_PROCESSES
from tests.sandbox.support import (
    ALL_SCOPES,
    DPO_RECEIVER,
    SENDER,
    Credentials,
    make_ca,
    make_enterprise_certificate,
    tokens_for,
)


class Network:
    """A sandbox on loopback with two DPO organisations, and broker requests counted per client."""

    def __init__(self, server: SandboxServer, credentials: dict[str, Credentials], http: httpx.Client) -> None:
        self.server = server
        self.credentials = credentials
        self.http = http
        self.broker_requests: list[str] = []

    def broker(self, orgnr: str) -> BrokerClient:
        def count(request: httpx.Request) -> None:
            self.broker_requests.append(f"{request.method} {request.url.path}")

        http = httpx.Client(timeout=10, event_hooks={"request": [count]})
        tokens = tokens_for(self.server, self.credentials[orgnr], orgnr, ALL_SCOPES, self.http)
        tokens()  # token grants and exchanges are not broker requests
        return BrokerClient(self.server.broker_url, tokens, http)

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.server.url}/broker/_sandbox/stats").json()

    def received(self, transfer_id: str) -> bytes:
        target = io.BytesIO()
        self.broker(DPO_RECEIVER).download(transfer_id, target)
        return target.getvalue()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = make_ca("DPO one-shot test root CA")
    credentials = {orgnr: make_enterprise_certificate(root, orgnr, name)
                   for orgnr, name in ((SENDER, "Avsender etat"), (DPO_RECEIVER, "Mottaker kommune"))}
    dpo = {"DPO": set(ARKIVMELDING_PROCESSES)}
    catalogue = SandboxCatalogue(
        organisations=[SandboxOrganisation(orgnr, f"org {orgnr}", c.pem, dpo) for orgnr, c in credentials.items()],
        trusted_ca_pems=[root.pem],
    )
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), catalogue) as server, \
            httpx.Client(timeout=10) as http:
        yield Network(server, credentials, http)


@pytest.fixture
def channel(network: Network) -> DpoChannel:
    network.broker_requests.clear()
    sender = network.credentials[SENDER]
    identity = OrgIdentity(SENDER, sender.key, sender.chain[0], tuple(sender.chain[1:]))
    trust = TrustStore([sender.chain[-1]])
    return DpoChannel(network.broker(SENDER), DPO_RESOURCE_ID, identity, trust, SystemClock())


def package_in(form: str, tmp_path: Path, content: bytes) -> Path | bytes:
    if form == "bytes":
        return content
    path = tmp_path / "sbd.zip"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("form", ["file", "bytes"])
def test_a_repeatable_package_goes_in_one_request(
    network: Network, channel: DpoChannel, tmp_path: Path, form: str
) -> None:
    content = os.urandom(20_000)
    message_id = f"status-one-shot-{form}"
    journaled: list[str] = []

    reference = channel.send(
        Package(message_id, SENDER, DPO_RECEIVER, package_in(form, tmp_path, content), repeatable=True),
        None, journaled.append,
    )

    assert network.broker_requests == ["POST /broker/api/v1/filetransfer/upload"], "one request, no scan waited for"
    assert journaled == [reference]
    assert channel.broker.wait_while_processing(reference, 10)["fileTransferStatus"] == "Published"
    stats = network.stats()
    assert stats["initialisedByReference"][message_id] == 1
    assert stats["uploadsByReference"][message_id] == 1
    assert network.received(reference) == content


@pytest.mark.parametrize("form", ["file", "bytes"])
def test_a_business_message_keeps_its_two_steps_with_the_reference_journaled_first(
    network: Network, channel: DpoChannel, tmp_path: Path, form: str
) -> None:
    content = os.urandom(20_000)
    message_id = f"business-two-step-{form}"
    journaled: list[tuple[str, str]] = []

    def journal(reference: str) -> None:  # the transfer exists, its file not yet
        overview = channel.broker.overview(reference)
        journaled.append((reference, overview["fileTransferStatus"], overview["checksum"]))

    reference = channel.send(Package(message_id, SENDER, DPO_RECEIVER, package_in(form, tmp_path, content)),
                             None, journal)

    # The checksum goes with the initialisation (lowercase MD5 hex, as the spec says), for the broker to check.
    assert journaled == [(reference, "Initialized", hashlib.md5(content, usedforsecurity=False).hexdigest())]
    assert channel.broker.overview(reference)["fileTransferStatus"] == "Published", "SENDT only once Published"
    assert [line for line in network.broker_requests if "upload" in line or line.endswith("filetransfer")] == [
        "POST /broker/api/v1/filetransfer", f"POST /broker/api/v1/filetransfer/{reference}/upload",
    ]
    stats = network.stats()
    assert stats["initialisedByReference"][message_id] == 1
    assert stats["uploadsByReference"][message_id] == 1
    assert network.received(reference) == content


def test_a_repeatable_package_with_a_reference_held_finishes_that_transfer(
    network: Network, channel: DpoChannel
) -> None:
    held = channel.broker.initialise(DPO_RESOURCE_ID, f"0192:{SENDER}", f"0192:{DPO_RECEIVER}", "sbd.zip",
                                     "status-held")
    network.broker_requests.clear()
    package = Package("status-held", SENDER, DPO_RECEIVER, b"status", repeatable=True)

    assert channel.send(package, held, lambda reference: pytest.fail("nothing new to journal")) == held
    assert channel.send(package, held, lambda reference: pytest.fail("nothing new to journal")) == held  # not again

    stats = network.stats()
    assert stats["initialisedByReference"]["status-held"] == 1
    assert stats["uploadsByReference"]["status-held"] == 1
    channel.broker.wait_while_processing(held, 10)
    assert network.received(held) == b"status"


def test_a_retry_with_a_repacked_package_gets_a_transfer_of_its_own_not_a_checksum_refusal(
    network: Network, channel: DpoChannel
) -> None:
    # The first attempt initialised a transfer for its package, then the upload broke. Packing again
    # signs and encrypts anew: the retry's package has another checksum than the one the broker holds.
    first = md5_hex(b"the first attempt's package")
    held = channel.broker.initialise(DPO_RESOURCE_ID, f"0192:{SENDER}", f"0192:{DPO_RECEIVER}", "sbd.zip",
                                     "repacked", checksum=first)
    journaled: list[str] = []
    package = Package("repacked", SENDER, DPO_RECEIVER, b"the retry's package")

    reference = channel.send(package, held, journaled.append)

    assert reference != held and journaled == [reference], "a transfer of its own, journaled before its upload"
    assert network.received(reference) == b"the retry's package"
    assert channel.broker.overview(held)["fileTransferStatus"] == "Initialized", "the old one never got a file"


def scan(network: Network, **settings: Any) -> None:
    response = network.http.post(f"{network.server.url}/broker/_sandbox/scan", json=settings)
    assert response.status_code == 200, response.text


def test_a_transfer_whose_scan_finds_malware_is_refused_with_the_brokers_reason(
    network: Network, channel: DpoChannel
) -> None:
    scan(network, failReferences=["business-infected"])
    package = Package("business-infected", SENDER, DPO_RECEIVER, b"not a virus, but the scan says so")
    journaled: list[str] = []
    with pytest.raises(PermanentChannelError, match=r"refused transfer .*Failed: Malware scan failed: Malicious"):
        channel.send(package, None, journaled.append)
    # Retried (after a crash, say) with the journaled reference: refused again, never uploaded a second time.
    with pytest.raises(PermanentChannelError, match="Malware scan failed"):
        channel.send(package, journaled[0], lambda reference: pytest.fail("no new transfer"))
    assert not channel.already_sent(journaled[0])
    assert network.stats()["uploadsByReference"]["business-infected"] == 1


def test_a_scan_still_running_is_retried_by_looking_again_not_by_uploading_again(
    network: Network, channel: DpoChannel
) -> None:
    scan(network, delaySeconds=1.5)
    try:
        channel.scan_wait_s = 0.3
        package = Package("business-slow-scan", SENDER, DPO_RECEIVER, b"a slow scan")
        journaled: list[str] = []
        with pytest.raises(RetryableChannelError, match="still processing"):
            channel.send(package, None, journaled.append)
        assert not channel.already_sent(journaled[0]), "UploadProcessing is not sent yet"
        channel.scan_wait_s = 5
        assert channel.send(package, journaled[0], lambda reference: pytest.fail("no new transfer")) == journaled[0]
        assert channel.already_sent(journaled[0])
        assert network.stats()["uploadsByReference"]["business-slow-scan"] == 1
    finally:
        scan(network, delaySeconds=0.2)


def test_a_look_at_the_scan_that_fails_on_the_way_is_looked_again_not_a_failed_send(
    network: Network, channel: DpoChannel
) -> None:
    scan(network, delaySeconds=0.5)
    fault = network.http.post(f"{network.server.url}/_faults", json={"rules": [
        {"fault": "error", "method": "GET", "path": "/broker/api/v1/filetransfer/*", "status": 502, "times": 2},
    ]})
    assert fault.status_code == 200, fault.text
    try:
        reference = channel.send(Package("scan-glitch", SENDER, DPO_RECEIVER, b"scanned"), None, lambda _r: None)
    finally:
        network.http.delete(f"{network.server.url}/_faults")
        scan(network, delaySeconds=0.2)
    assert network.received(reference) == b"scanned"
