"""Build the network side of the daemon from config: tokens, the service registry, the enabled
channels, and the parts that use them (sender, one receiver per two-way channel, one status poller
per polling channel, the status sender, the inbox watcher).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from gateway.authorisation import Authorisation
from gateway.channels.base import Channel
from gateway.channels.registry import ChannelTools, build_channels, registry_scopes
from gateway.clock import Clock
from gateway.config import Config
from gateway.credentials import authorisation_for, load_identity, load_trust, receiver_trust, registry_signers
from gateway.delivery.circuit import Circuits
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.inbound.inbox import Inbox
from gateway.inbound.receiver import Receiver
from gateway.inbound.shared_takes import SharedTakes
from gateway.inbound.status_sender import StatusSender
from gateway.journal.claims import HeldClaims
from gateway.journal.item_claims import ItemClaims
from gateway.journal.store import Journal
from gateway.ops.httpwatch import HttpOutcomes, WatchedTransport
from gateway.outbound.sender import Sender
from gateway.outbound.status_poller import StatusPoller
from gateway.outbound_http import outbound_client
from gateway.progress import running_as
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
    once: bool = True  # run on one node at a time where nodes share the journal (else on every node)


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
    # What the start-up's online checks ask with: the daemon's own tokens, identity and trust.
    auth: Authorisation | None = None
    identity: OrgIdentity | None = None
    trust: TrustStore | None = None

    def close(self) -> None:
        self.sender.close()
        for receiver in self.receivers:
            receiver.close()
        self.status_sender.close()
        for http in self.http_clients:
            http.close()


def build_network(
    config: Config, journal: Journal, statuses: StatusWriter, clock: Clock, http_outcomes: HttpOutcomes | None = None,
    held: HeldClaims | None = None,
) -> NetworkParts:
    """`held`: this node's claims where nodes share the journal (PostgreSQL), None on SQLite."""
    network = config.network
    identity = load_identity(config, clock.now())
    assert network.token_url and network.service_registry_url
    blocks = config.channels.enabled()
    # Each channel's requests on the wire at once, for each kind of work (sends, downloads, status
    # messages, status look-ups). One connection pool per kind: a busy receiver never waits for a
    # sender's connection.
    connections = sum(block.max_in_flight for block in blocks.values()) + network.max_parallel_sends
    send_http, receive_http, status_http = (_http_client(config, connections, http_outcomes) for _ in range(3))
    http = send_http  # tokens, the registry and revocation look-ups: a few calls, shared by all
    trust = load_trust(config, revocation_http=http)
    auth = authorisation_for(config, identity, http, clock)
    registry = ServiceRegistryClient(
        network.service_registry_url, auth.maskinporten(registry_scopes(blocks)), http,
        cache_ttl_s=network.registry_cache_seconds, clock=clock, signers=registry_signers(config, trust),
    )
    receivers = receiver_trust(config, trust)

    def channels_on(client: httpx.Client) -> dict[str, Channel]:
        tools = ChannelTools(
            orgnr=config.organisation.orgnr, identity=identity, trust=trust, auth=auth, http=client, clock=clock,
            receivers=receivers, normalise_retired_prefix=config.messages.normalise_retired_prefix,
            organisation_name=config.organisation.name, journal=journal,
        )
        return build_channels(blocks, tools)

    sending, receiving, status_channels = channels_on(send_http), channels_on(receive_http), channels_on(status_http)
    key_by_channel = {channel.name: key for key, channel in zip(blocks, sending.values(), strict=True)}
    blocks_by_channel = {name: blocks[key] for name, key in key_by_channel.items()}
    in_flight = {name: block.max_in_flight for name, block in blocks_by_channel.items()}
    # One per channel, shared by everything that calls it: a pause the peer asks for holds for every call.
    circuits = Circuits(clock)
    sender = Sender(config, journal, statuses, clock, registry, sending, circuits=circuits, in_flight=in_flight,
                    held=held)
    inbox = Inbox(config, journal, statuses)
    # Where nodes share the journal, takes, status sends and status polls are claimed item by item by every node.
    items = ItemClaims(held) if held is not None else None
    receivers = [
        Receiver(config, journal, statuses, clock, channel, inbox, workers=in_flight[channel.name],
                 circuit=circuits[channel.name])
        for channel in receiving.values() if channel.capabilities.two_way
    ]
    carrying = [in_flight[name] for name, channel in status_channels.items()
                if channel.capabilities.carries_status_messages]
    status_sender = StatusSender(
        journal, clock, status_channels, config.organisation.orgnr, workers=max(carrying, default=4),
        circuits=circuits, items=items,
    )
    pollers = [
        StatusPoller(journal, statuses, clock, channel, batch=blocks_by_channel[name].status_batch,
                     in_flight=in_flight[name], circuit=circuits[name], items=items)
        for name, channel in status_channels.items() if channel.capabilities.statuses_by_polling
    ]
    jobs = []
    for receiver in receivers:
        name, key = receiver.channel.name, f"channels.{key_by_channel[receiver.channel.name]}.inbound_poll_seconds"
        seconds = blocks_by_channel[name].inbound_poll_seconds
        if items is None:
            jobs.append(PollingJob(f"inbound-{name}", seconds, receiver.poll, key))
        else:  # one node lists (the channel's listing, by lease); every node takes what the listings found
            shared = SharedTakes(receiver, items)
            jobs += [PollingJob(f"inbound-{name}", seconds, shared.list, key),
                     PollingJob(f"take-{name}", seconds, shared.take, key, once=False)]
    jobs += [
        PollingJob(f"status-poll-{poller.channel.name}", blocks_by_channel[poller.channel.name].status_poll_seconds,
                   poller.poll, f"channels.{key_by_channel[poller.channel.name]}.status_poll_seconds",
                   once=items is None)
        for poller in pollers
    ]
    return NetworkParts(
        [send_http, receive_http, status_http], sender, inbox, receivers, status_sender, pollers, jobs, sending,
        registry, auth, identity, trust,
    )


def _http_client(config: Config, connections: int, outcomes: HttpOutcomes | None = None) -> httpx.Client:
    """One of the daemon's clients: its proxy, trust and User-Agent from outbound_http; the metrics' watch
    wraps the whole routed transport, so a proxied request is seen as any other."""
    wrap = None if outcomes is None else partial(WatchedTransport, outcomes=outcomes)
    return outbound_client(config, config.network.http_timeout_seconds, connections, wrap=wrap)


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
        self.held: Callable[[], bool] = lambda: False  # True while no new sends may start (the journal is down)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # A long pass that moves on (one message after another) is not a hung one.
        with running_as(lambda: self.on_round() if self.on_round is not None else None):
            self._passes()

    def _passes(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()  # before the pass: a wake during it is kept for the next one
            try:
                if not self.held():
                    self.sender.send_due()
            except Exception:
                log.exception("the send pass failed; trying again")
            if self.on_round is not None:
                self.on_round()
            self.wake.wait(timeout=self.interval)
