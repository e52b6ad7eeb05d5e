"""DpoChannel.send against the sandbox broker: a repeatable package (a status message) goes in one
request; a business message keeps the two steps that make it exactly-once. Packages may be files
or bytes held in memory."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.channels.base import Package
from gateway.channels.dpo.channel import DpoChannel
from gateway.channels.dpo.client import DPO_RESOURCE_ID, BrokerClient
from gateway.clock import SystemClock
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.sandbox import SandboxCatalogue, SandboxOrganisation, SandboxServer
from gateway.sandbox.catalogue import ARKIVMELDING_PROCESSES
from gateway.tokens import TokenClient
from tests.sandbox.support import (
    ALL_SCOPES,
    DPO_RECEIVER,
    SENDER,
    Credentials,
    make_ca,
    make_enterprise_certificate,
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
        key, chain = self.credentials[orgnr].key, self.credentials[orgnr].chain
        tokens = TokenClient(self.server.token_url, self.server.token_audience, f"client-{orgnr}", key, chain,
                             ALL_SCOPES, self.http)  # token grants are not broker requests
        tokens()
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

    assert network.broker_requests == ["POST /broker/api/v1/filetransfer/upload"]
    assert journaled == [reference]
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
        journaled.append((reference, channel.broker.overview(reference)["fileTransferStatus"]))

    reference = channel.send(Package(message_id, SENDER, DPO_RECEIVER, package_in(form, tmp_path, content)),
                             None, journal)

    assert journaled == [(reference, "Initialized")]
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
    assert network.received(held) == b"status"
