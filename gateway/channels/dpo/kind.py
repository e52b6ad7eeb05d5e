"""DPO as the gateway sees it: its settings, its builder and probe, its routing answer."""

from __future__ import annotations

from typing import Any

from gateway.channels.base import Channel
from gateway.channels.dpo.channel import DpoChannel
from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE, BrokerClient
from gateway.channels.dpo.routing import ROUTING
from gateway.channels.dpo.settings import SETTINGS
from gateway.channels.kind import ChannelKind, ChannelTools
from gateway.errors import ConfigError
from gateway.identifiers import orgnr_problem
from gateway.maskinporten import SystemUser, default_system_user_name


def dpo_system_user(block: Any, orgnr: str) -> SystemUser:
    """The Altinn system user DPO's broker tokens name: channels.dpo.system_user_org (default our own) and the
    name it was created with (its externalRef)."""
    system_user_org = block.system_user_org or orgnr
    problem = orgnr_problem(system_user_org)
    if problem:
        raise ConfigError(f"channels.dpo.system_user_org: {problem}; give the system user's organisation number")
    return SystemUser(system_user_org, block.system_user_external_ref or default_system_user_name(orgnr))


def build(block: Any, tools: ChannelTools) -> Channel:
    # One Altinn token per scope, as the reference asks: reading (list, get, download, confirm) and writing
    # (initialise, upload), each naming the system user.
    system_user = dpo_system_user(block, tools.orgnr)
    broker = BrokerClient(block.broker_url, tools.auth.altinn((BROKER_READ_SCOPE,), system_user), tools.http,
                          write_tokens=tools.auth.altinn((BROKER_WRITE_SCOPE,), system_user))
    return DpoChannel(broker, block.resource, tools.identity, tools.trust, tools.clock, tools.normalise_retired_prefix,
                      party=system_user.orgnr, receivers=tools.receiver_trust())


def probe(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    system_user = dpo_system_user(block, tools.orgnr)
    broker = BrokerClient(block.broker_url, tools.auth.altinn((BROKER_READ_SCOPE,), system_user), tools.http)
    waiting = broker.list_incoming(block.resource)
    return [("channels.dpo.broker_url", block.broker_url,
             f"the broker lists {len(waiting)} incoming transfer(s) for the system user of {system_user.orgnr} "
             "(Altinn token exchanged, altinn:broker.read)")]


KIND = ChannelKind(name="DPO", key="dpo", registry_scope="eformidling:dpo", settings=SETTINGS, build=build,
                   probe=probe, routing=ROUTING, encrypted_to_registered_certificate=True)
