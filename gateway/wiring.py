"""Build the network side of the daemon from config: tokens, the service registry, the enabled
channels, and the parts that use them (sender, one receiver per two-way channel, one status poller
per polling channel, the status sender, the inbox watcher).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from gateway.channels.base import Channel
from gateway.channels.registry import ChannelTools, build_channels
from gateway.clock import Clock
from gateway.config import Config
from gateway.credentials import load_identity, load_trust, token_client_for
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import Receiver
from gateway.inbound.status_sender import StatusSender
from gateway.journal.store import Journal
from gateway.ops.httpwatch import HttpOutcomes, WatchedTransport
from gateway.outbound.circuit import Circuits
from gateway.outbound.sender import Sender
from gateway.outbound.status_poller import StatusPoller
from gateway.receipts.writer import StatusWriter
from gateway.routing.registry import ServiceRegistryClient

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PollingJob:
    """A job the daemon schedules: what to call, how often, and its name in the log."""

    name: str
    seconds: float
    run: object
    config_key: str = ""  # the setting its interval comes from (a SIGHUP reschedules it)


@dataclass
class NetworkParts:
    http_clients: list[httpx.Client]
    sender: Sender
    inbox: Inbox
    receivers: list[Receiver]
    status_sender: StatusSender
    status_pollers: list[StatusPoller]
    jobs: list[PollingJob] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)
    registry: ServiceRegistryClient | None = None

    def close(self) -> None:
        self.sender.close()
        for receiver in self.receivers:
            receiver.close()
        self.status_sender.close()
        for http in self.http_clients:
            http.close()


def build_network(
    config: Config, journal: Journal, statuses: StatusWriter, clock: Clock, http_outcomes: HttpOutcomes | None = None
) -> NetworkParts:
    network = config.network
    identity = load_identity(config, clock.now())
    trust = load_trust(config)
    assert network.token_url and network.service_registry_url
    blocks = config.channels.enabled()
    # Each channel's requests on the wire at once, for each kind of work (sends, downloads, status
    # messages, status look-ups). One connection pool per kind: a busy receiver never waits for a
    # sender's connection.
    connections = sum(block.max_in_flight for block in blocks.values()) + network.max_parallel_sends
    send_http, receive_http, status_http = (
        _http_client(network.http_timeout_seconds, connections, http_outcomes) for _ in range(3)
    )
    http = send_http  # tokens and the registry: a few calls, shared by all
    tokens = token_client_for(config, identity, http, clock)
    registry = ServiceRegistryClient(
        network.service_registry_url, tokens, http, cache_ttl_s=network.registry_cache_seconds, clock=clock
    )

    def channels_on(client: httpx.Client) -> dict[str, Channel]:
        tools = ChannelTools(
            orgnr=config.organisation.orgnr, identity=identity, trust=trust, tokens=tokens, http=client, clock=clock,
            normalise_retired_prefix=config.messages.normalise_retired_prefix,
            organisation_name=config.organisation.name,
        )
        return build_channels(blocks, tools)

    sending, receiving, status_channels = channels_on(send_http), channels_on(receive_http), channels_on(status_http)
    key_by_channel = {channel.name: key for key, channel in zip(blocks, sending.values(), strict=True)}
    blocks_by_channel = {name: blocks[key] for name, key in key_by_channel.items()}
    in_flight = {name: block.max_in_flight for name, block in blocks_by_channel.items()}
    # One per channel, shared by everything that calls it: a pause the peer asks for holds for every call.
    circuits = Circuits(clock)
    sender = Sender(config, journal, statuses, clock, registry, sending, circuits=circuits, in_flight=in_flight)
    inbox = Inbox(config, journal, statuses)
    receivers = [
        Receiver(config, journal, statuses, clock, channel, inbox, workers=in_flight[channel.name],
                 circuit=circuits[channel.name])
        for channel in receiving.values() if channel.capabilities.two_way
    ]
    carrying = [in_flight[name] for name, channel in status_channels.items()
                if channel.capabilities.carries_status_messages]
    status_sender = StatusSender(
        journal, clock, status_channels, config.organisation.orgnr, workers=max(carrying, default=4),
        circuits=circuits,
    )
    pollers = [
        StatusPoller(journal, statuses, clock, channel, batch=blocks_by_channel[name].status_batch,
                     in_flight=in_flight[name], circuit=circuits[name])
        for name, channel in status_channels.items() if channel.capabilities.statuses_by_polling
    ]
    jobs = [
        PollingJob(f"inbound-{receiver.channel.name}", blocks_by_channel[receiver.channel.name].inbound_poll_seconds,
                   receiver.poll, f"channels.{key_by_channel[receiver.channel.name]}.inbound_poll_seconds")
        for receiver in receivers
    ] + [
        PollingJob(f"status-poll-{poller.channel.name}", blocks_by_channel[poller.channel.name].status_poll_seconds,
                   poller.poll, f"channels.{key_by_channel[poller.channel.name]}.status_poll_seconds")
        for poller in pollers
    ]
    return NetworkParts(
        [send_http, receive_http, status_http], sender, inbox, receivers, status_sender, pollers, jobs, sending,
        registry,
    )


def _http_client(timeout: float, connections: int, outcomes: HttpOutcomes | None = None) -> httpx.Client:
    limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections + 2)
    if outcomes is None:
        return httpx.Client(timeout=timeout, limits=limits)
    return httpx.Client(timeout=timeout, transport=WatchedTransport(httpx.HTTPTransport(limits=limits), outcomes))


class SenderLoop:
    """Sends as soon as intake accepts a drop, and every `interval` seconds for retries."""

    def __init__(self, sender: Sender, interval: float) -> None:
        self.sender = sender
        self.interval = interval
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        sender.on_free = self.wake.set
        self.on_round: Callable[[], None] | None = None  # called after every pass: the worker's heartbeat

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
            if self.on_round is not None:
                self.on_round()
            self.wake.wait(timeout=self.interval)
