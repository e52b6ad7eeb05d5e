"""`efm-gateway validate`'s route: ask the service registry (read-only) which channel the daemon would
use for a drop, and why, or why none fits; the same choice the sender makes (routing.route)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from gateway.channels.registry import kind_named, registry_scopes
from gateway.clock import Clock
from gateway.config import Config
from gateway.credentials import authorisation_for, load_identity, load_trust, registry_signers
from gateway.errors import GatewayError, PermanentChannelError, RetryableChannelError
from gateway.intake.validate import AcceptedDrop
from gateway.operator.actions import daemon_pid
from gateway.outbound_http import outbound_client
from gateway.routing.registry import ServiceRegistryClient
from gateway.routing.resolver import route_for

SANDBOX_NETWORK_FILE = "network.yaml"
Joiner = Callable[[Config, dict[str, Any]], Config]
# What came of the question (RouteAnswer.outcome): a channel fits; the registry offers one this gateway has not
# enabled; none fits; there is no network to ask (none configured, or the daemon's own sandbox is not running);
# the network could not be asked (the registry did not answer, or its answer could not be used).
OUTCOMES = ("found", "not_enabled", "none", "no_network", "not_asked")


@dataclass(frozen=True)
class RouteAnswer:
    """The route validate shows: the outcome, the channel and its reason where one was found, where the answer
    came from, and the lines that say it."""

    outcome: str
    lines: list[str]
    channel: str | None = None
    reason: str | None = None
    source: str | None = None

    @property
    def fits(self) -> bool:
        return self.outcome not in ("none", "not_enabled")


def network_for(config: Config, join: Joiner) -> tuple[Config | None, str]:
    """The configuration to ask the registry with, and where its network comes from; None (and why)
    when no network is configured. `join` puts a sandbox's settings into a configuration (the
    command line's own, as `efm-gateway run` does)."""
    if config.network_configured:
        return config, f"the network in {config.source}"
    if config.sandbox.enabled:
        data = config.sandbox.data or config.folders.state.parent / "sandbox"
        network_file = data / SANDBOX_NETWORK_FILE
        # The daemon's own sandbox listens only while that daemon runs (its port may be any free one).
        if network_file.exists() and daemon_pid(config.folders.lock_path) is not None:
            settings = yaml.safe_load(network_file.read_text(encoding="utf-8"))
            snippet = settings.get("gateways", {}).get(config.organisation.orgnr)
            if snippet:
                return join(config, snippet), f"the running daemon's sandbox ({network_file})"
        return None, (
            "the sandbox network runs inside the daemon (sandbox.enabled) and the daemon is not running: start it "
            "(`efm-gateway run`) and validate again to see the route"
        )
    return None, (
        f"no network is configured in {config.source} (network.service_registry_url, token_url and a channel): "
        "the daemon would accept the drop but not send it"
    )


def explain_route(config: Config, accepted: AcceptedDrop, clock: Clock, join: Joiner) -> RouteAnswer:
    """Which channel the daemon would use for `accepted`, and why; or why none fits, or why it was not asked."""
    joined, source = network_for(config, join)
    if joined is None:  # no network configured, or the daemon's own sandbox network is down with the daemon
        return RouteAnswer("no_network", [f"route: not looked up: {source}"])
    sidecar = accepted.sidecar
    network = joined.network
    assert network.token_url and network.service_registry_url
    blocks = joined.channels.enabled()
    identity = load_identity(joined, clock.now())
    with outbound_client(joined, network.http_timeout_seconds) as http:
        tokens = authorisation_for(joined, identity, http, clock).maskinporten(
            registry_scopes(joined.channels.enabled()))
        registry = ServiceRegistryClient(network.service_registry_url, tokens, http, cache_ttl_s=0, clock=clock,
                                         signers=registry_signers(joined, load_trust(joined, revocation_http=http)))
        try:
            route, _answer = route_for(
                registry, sidecar.receiver, accepted.process, sidecar.message_type, sidecar.security_level,
                accepted.conversation_id, pinned=sidecar.channel, preferences=joined.routing, options=sidecar.options,
            )
        except RetryableChannelError as exc:
            return RouteAnswer("not_asked", [
                f"route: the service registry could not be asked ({exc}); the daemon decides the route when it sends"
            ], source=source)
        except PermanentChannelError as exc:
            return RouteAnswer(
                "none", [f"route: none fits: {exc}", "  the daemon would accept the drop, then fail it (FEIL)"],
                source=source,
            )
        except GatewayError as exc:
            return RouteAnswer("not_asked", [f"route: not looked up: {exc}"], source=source)
    kind = kind_named(route.channel)
    lines = [f"route: {route.channel}: {route.reason}", f"  asked {source}"]
    if kind is None or kind.key not in blocks or kind.build is None:
        fix = (f"enable channels.{kind.key} or agree another channel with the receiver"
               if kind is not None and kind.settings is not None
               else "this gateway has no such channel yet: agree another channel with the receiver")
        lines.append(
            f"  but {route.channel} is not enabled in this gateway (channels section): the daemon would fail the "
            f"message; {fix}"
        )
        return RouteAnswer("not_enabled", lines, route.channel, route.reason, source)
    return RouteAnswer("found", lines, route.channel, route.reason, source)

