"""Build the network side of the daemon (tokens, registry, channels, sender, receiver) from config."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import httpx

from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE, BrokerClient
from gateway.channels.dpo.channel import DpoChannel
from gateway.clock import Clock
from gateway.config import Config
from gateway.credentials import load_identity, load_trust
from gateway.inbound.receiver import Receiver
from gateway.inbound.status_sender import StatusSender
from gateway.journal.store import Journal
from gateway.outbound.sender import Sender
from gateway.receipts.writer import StatusWriter
from gateway.routing.registry import ServiceRegistryClient
from gateway.tokens import TokenClient

log = logging.getLogger(__name__)

SCOPES = ("eformidling:dpo", BROKER_READ_SCOPE, BROKER_WRITE_SCOPE)


@dataclass
class NetworkParts:
    http_clients: list[httpx.Client]
    sender: Sender
    receiver: Receiver
    status_sender: StatusSender

    def close(self) -> None:
        self.sender.close()
        self.receiver.close()
        self.status_sender.close()
        for http in self.http_clients:
            http.close()


def build_network(config: Config, journal: Journal, statuses: StatusWriter, clock: Clock) -> NetworkParts:
    network = config.network
    identity = load_identity(config, clock.now())
    trust = load_trust(config)
    assert network.token_url and network.service_registry_url and network.broker_url
    workers = network.max_parallel_sends
    # One connection pool per worker pool: a busy receiver never waits for a sender's connection, and
    # a small pool is cheaper per request (httpx checks every pooled connection on each request).
    send_http, receive_http, status_http = (_http_client(network.http_timeout_seconds, workers) for _ in range(3))
    http = send_http  # tokens and the registry: a few calls, shared by all
    tokens = TokenClient(
        token_url=network.token_url,
        audience=network.token_audience or network.token_url,
        client_id=network.client_id or f"efm-gateway-{config.organisation.orgnr}",
        private_key=identity.private_key,
        certificate_chain=[identity.certificate, *identity.chain],
        scopes=SCOPES,
        http=http,
        clock=clock,
    )
    registry = ServiceRegistryClient(
        network.service_registry_url, tokens, http, cache_ttl_s=network.registry_cache_seconds, clock=clock
    )

    def dpo(client: httpx.Client) -> DpoChannel:
        return DpoChannel(BrokerClient(network.broker_url, tokens, client), network.broker_resource)

    sending = dpo(send_http)
    sender = Sender(config, journal, statuses, clock, registry, {sending.name: sending}, identity)
    receiver = Receiver(config, journal, statuses, clock, dpo(receive_http), identity, trust, workers=workers)
    status_channel = dpo(status_http)
    status_sender = StatusSender(
        journal, clock, {status_channel.name: status_channel}, identity, config.organisation.orgnr, workers=workers
    )
    return NetworkParts([send_http, receive_http, status_http], sender, receiver, status_sender)


def _http_client(timeout: float, workers: int) -> httpx.Client:
    return httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=workers + 2))


class SenderLoop:
    """Sends as soon as intake accepts a drop, and every `interval` seconds for retries."""

    def __init__(self, sender: Sender, interval: float) -> None:
        self.sender = sender
        self.interval = interval
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        sender.on_free = self.wake.set

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()  # before the pass: a wake during it is kept for the next one
            try:
                self.sender.send_due()
            except Exception:
                log.exception("the send pass failed; trying again")
            self.wake.wait(timeout=self.interval)
