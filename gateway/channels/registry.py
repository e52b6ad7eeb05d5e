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

from gateway.authorisation import Authorisation
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
from gateway.channels.dpv.client import DPV_PROXY_SCOPE, CorrespondenceClient
from gateway.clock import Clock
from gateway.errors import ConfigError
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.identifiers import orgnr_problem
from gateway.maskinporten import SystemUser, default_system_user_name
from gateway.trust.receivers import ReceiverTrust


@dataclass(frozen=True)
class ChannelTools:
    """What every channel may use: our identity, the trusted CAs, tokens by use, an HTTP pool and the clock."""

    orgnr: str
    identity: OrgIdentity
    trust: TrustStore
    auth: Authorisation
    http: httpx.Client
    clock: Clock
    normalise_retired_prefix: bool = False
    organisation_name: str = ""  # ours, as receivers' systems show it
    # The certificates we encrypt to, checked before we do (default: the trust store, no one served by another)
    receivers: ReceiverTrust | None = None

    def receiver_trust(self) -> ReceiverTrust:
        return self.receivers or ReceiverTrust(self.trust)


@dataclass(frozen=True)
class ChannelKind:
    name: str  # DPO, DPV, ... as in service records and status files
    registry_scope: str  # what the service registry asks of a caller that looks receivers up for this channel
    build: Callable[[Any, ChannelTools], Channel]
    # Each endpoint asked once with the channel's real authentication and nothing changed: (config key, URL,
    # what answered); a ChannelError when it does not answer or refuses.
    probe: Callable[[Any, ChannelTools], list[tuple[str, str, str]]] | None = None


def dpo_system_user(block: Any, orgnr: str) -> SystemUser:
    """The Altinn system user DPO's broker tokens name: channels.dpo.system_user_org (default our own) and the
    name it was created with (its externalRef)."""
    system_user_org = block.system_user_org or orgnr
    problem = orgnr_problem(system_user_org)
    if problem:
        raise ConfigError(f"channels.dpo.system_user_org: {problem}; give the system user's organisation number")
    return SystemUser(system_user_org, block.system_user_external_ref or default_system_user_name(orgnr))


def _build_dpo(block: Any, tools: ChannelTools) -> Channel:
    # One Altinn token per scope, as the reference asks: reading (list, get, download, confirm) and writing
    # (initialise, upload), each naming the system user.
    system_user = dpo_system_user(block, tools.orgnr)
    broker = BrokerClient(block.broker_url, tools.auth.altinn((BROKER_READ_SCOPE,), system_user), tools.http,
                          write_tokens=tools.auth.altinn((BROKER_WRITE_SCOPE,), system_user))
    return DpoChannel(broker, block.resource, tools.identity, tools.trust, tools.clock, tools.normalise_retired_prefix,
                      party=system_user.orgnr, receivers=tools.receiver_trust())


def _build_dpv(block: Any, tools: ChannelTools) -> Channel:
    defaults = NotificationDefaults(
        channel=block.notification_channel,
        text=block.notification_text,
        sensitive_text=block.sensitive_notification_text,
        email_subject=block.email_subject,
        days_to_reply=block.days_to_reply,
    )
    # Through Digdir's correspondence proxy: an Altinn token for eformidling:dpv, no system user.
    correspondence = CorrespondenceClient(block.correspondence_url, tools.auth.altinn((DPV_PROXY_SCOPE,)), tools.http)
    return DpvChannel(correspondence, defaults, tools.clock)


def read_secret(path: Any, key: str) -> str:
    """A password alone in a file (a systemd credential, say); ConfigError naming `key` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{key} ({path}) cannot be read ({why}); write the password alone in it, readable by "
                          "the gateway's user only") from None


def _build_dpf(block: Any, tools: ChannelTools) -> Channel:
    password = read_secret(block.integration_password_file, "channels.dpf.integration_password_file")
    credentials = SvarUtCredentials(block.account_id, block.integration_id, password)
    # A Maskinporten token for ks:fiks (not exchanged); status and reference look-ups name us as consumer_org,
    # as the reference does.
    svarut = SvarUtClient(block.svarut_url, credentials, tools.auth.maskinporten((FIKS_SCOPE,)), tools.http,
                          lookup_tokens=tools.auth.maskinporten((FIKS_SCOPE,), consumer_org=tools.orgnr))
    svarinn = None
    if block.svarinn_url:
        login = SvarInnCredentials(block.svarinn_username,
                                   read_secret(block.svarinn_password_file, "channels.dpf.svarinn_password_file"))
        svarinn = SvarInnClient(block.svarinn_url, login, tools.http)
    return DpfChannel(svarut, svarinn, tools.identity, tools.clock, sender_name=tools.organisation_name,
                      receivers=tools.receiver_trust())


def _probe_dpo(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    system_user = dpo_system_user(block, tools.orgnr)
    broker = BrokerClient(block.broker_url, tools.auth.altinn((BROKER_READ_SCOPE,), system_user), tools.http)
    waiting = broker.list_incoming(block.resource)
    return [("channels.dpo.broker_url", block.broker_url,
             f"the broker lists {len(waiting)} incoming transfer(s) for the system user of {system_user.orgnr} "
             "(Altinn token exchanged, altinn:broker.read)")]


def _probe_dpv(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    correspondence = CorrespondenceClient(block.correspondence_url, tools.auth.altinn((DPV_PROXY_SCOPE,)), tools.http)
    correspondence.find_by_senders_reference(f"efm-gateway-check-{tools.orgnr}")
    return [("channels.dpv.correspondence_url", block.correspondence_url,
             "the correspondence service answers a search (Altinn token exchanged, eformidling:dpv)")]


def _probe_dpf(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    channel = _build_dpf(block, tools)
    assert isinstance(channel, DpfChannel)
    channel.svarut.find_by_external_reference(f"efm-gateway-check-{tools.orgnr}")
    results = [("channels.dpf.svarut_url", block.svarut_url,
                f"SvarUt answers for account {block.account_id} (Maskinporten ks:fiks and the integration's id)")]
    if channel.svarinn is not None:
        waiting = channel.svarinn.new_forsendelser()
        results.append(("channels.dpf.svarinn_url", block.svarinn_url,
                        f"SvarInn lists {len(waiting)} new forsendelse(r) for {block.svarinn_username} (listed only, "
                        "none taken)"))
    return results


KINDS: dict[str, ChannelKind] = {
    "dpo": ChannelKind(name="DPO", registry_scope="eformidling:dpo", build=_build_dpo, probe=_probe_dpo),
    "dpv": ChannelKind(name="DPV", registry_scope="eformidling:dpv", build=_build_dpv, probe=_probe_dpv),
    "dpf": ChannelKind(name="DPF", registry_scope="eformidling:dpf", build=_build_dpf, probe=_probe_dpf),
}


def registry_scopes(blocks: Mapping[str, Any]) -> tuple[str, ...]:
    """The service registry's scopes for the enabled channels (the reference's eformidling:dpX per channel)."""
    return tuple(dict.fromkeys(KINDS[name].registry_scope for name in blocks)) or ("eformidling:dpo",)


def build_channels(blocks: Mapping[str, Any], tools: ChannelTools) -> dict[str, Channel]:
    """The adapters for the enabled channel blocks, by channel name."""
    return {KINDS[name].name: KINDS[name].build(block, tools) for name, block in blocks.items()}
