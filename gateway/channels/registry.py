"""The channels this gateway uses, built from their config blocks: `{name: adapter}`.

Each channel package names its token scopes and a builder; the wiring hands every enabled block (an
object with the channel's settings as attributes) and the shared tools. By convention a block of a
two-way channel has `inbound_poll_seconds`, and one of a channel whose statuses come by polling has
`status_poll_seconds` and `status_batch`: the wiring schedules those jobs from them. Adding a channel adds one
entry here, its package beside the others, its config block and its sandbox service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.channels.base import Channel
from gateway.channels.dpf.channel import DpfChannel
from gateway.channels.dpf.client import (
    FIKS_SCOPE,
    SvarInnClient,
    SvarInnCredentials,
    SvarUtClient,
    SvarUtCredentials,
)
from gateway.channels.dpo.channel import DpoChannel
from gateway.channels.dpo.client import BROKER_READ_SCOPE, BROKER_WRITE_SCOPE, BrokerClient
from gateway.channels.dpv.channel import DpvChannel, NotificationDefaults
from gateway.channels.dpv.client import CORRESPONDENCE_WRITE_SCOPE, CorrespondenceClient
from gateway.clock import Clock
from gateway.errors import ConfigError
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.identifiers import orgnr_problem
from gateway.tokens import TokenClient


@dataclass(frozen=True)
class ChannelTools:
    """What every channel may use: our identity, the trusted CAs, tokens, an HTTP pool and the clock."""

    orgnr: str
    identity: OrgIdentity
    trust: TrustStore
    tokens: TokenClient
    http: httpx.Client
    clock: Clock
    normalise_retired_prefix: bool = False
    organisation_name: str = ""  # ours, as receivers' systems show it


@dataclass(frozen=True)
class ChannelKind:
    name: str  # DPO, DPV, ... as in service records and status files
    scopes: tuple[str, ...]
    build: Callable[[Any, ChannelTools], Channel]


def _build_dpo(block: Any, tools: ChannelTools) -> Channel:
    tokens = tools.tokens
    if block.system_user_org:
        problem = orgnr_problem(block.system_user_org)
        if problem:
            raise ConfigError(f"channels.dpo.system_user_org: {problem}; give the system user's organisation number")
        # The broker's tokens name the system user; the service registry's stay plain.
        tokens = tokens.for_system_user(
            block.system_user_org, block.system_user_external_ref, (BROKER_READ_SCOPE, BROKER_WRITE_SCOPE)
        )
    broker = BrokerClient(block.broker_url, tokens, tools.http)
    return DpoChannel(broker, block.resource, tools.identity, tools.trust, tools.clock, tools.normalise_retired_prefix,
                      party=block.system_user_org)


def _build_dpv(block: Any, tools: ChannelTools) -> Channel:
    defaults = NotificationDefaults(
        channel=block.notification_channel,
        text=block.notification_text,
        sensitive_text=block.sensitive_notification_text,
        email_subject=block.email_subject,
        days_to_reply=block.days_to_reply,
    )
    return DpvChannel(CorrespondenceClient(block.correspondence_url, tools.tokens, tools.http), defaults, tools.clock)


def _secret(path: Any) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def _build_dpf(block: Any, tools: ChannelTools) -> Channel:
    credentials = SvarUtCredentials(block.account_id, block.integration_id, _secret(block.integration_password_file))
    svarut = SvarUtClient(block.svarut_url, credentials, tools.tokens, tools.http)
    svarinn = None
    if block.svarinn_url:
        login = SvarInnCredentials(block.svarinn_username, _secret(block.svarinn_password_file))
        svarinn = SvarInnClient(block.svarinn_url, login, tools.http)
    return DpfChannel(svarut, svarinn, tools.identity, tools.clock, sender_name=tools.organisation_name)


KINDS: dict[str, ChannelKind] = {
    "dpo": ChannelKind(
        name="DPO",
        scopes=(BROKER_READ_SCOPE, BROKER_WRITE_SCOPE),
        build=_build_dpo,
    ),
    "dpv": ChannelKind(name="DPV", scopes=(CORRESPONDENCE_WRITE_SCOPE,), build=_build_dpv),
    "dpf": ChannelKind(name="DPF", scopes=(FIKS_SCOPE,), build=_build_dpf),
}


def scopes_for(blocks: Mapping[str, Any]) -> tuple[str, ...]:
    """The token scopes the enabled channels need, in a stable order."""
    return tuple(dict.fromkeys(scope for name in blocks for scope in KINDS[name].scopes))


def build_channels(blocks: Mapping[str, Any], tools: ChannelTools) -> dict[str, Channel]:
    """The adapters for the enabled channel blocks, by channel name."""
    return {KINDS[name].name: KINDS[name].build(block, tools) for name, block in blocks.items()}
