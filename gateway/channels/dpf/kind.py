"""DPF as the gateway sees it: its settings, its builder and probe, its routing answer, its sidecar block."""

from __future__ import annotations

from typing import Any

from gateway.channels.base import Channel
from gateway.channels.dpf.business import BUSINESS
from gateway.channels.dpf.channel import DpfChannel
from gateway.channels.dpf.client import FIKS_SCOPE, SvarInnClient, SvarInnCredentials, SvarUtClient, SvarUtCredentials
from gateway.channels.dpf.options import OPTIONS
from gateway.channels.dpf.routing import ROUTING
from gateway.channels.dpf.settings import SETTINGS
from gateway.channels.kind import ChannelKind, ChannelTools, read_secret


def build(block: Any, tools: ChannelTools) -> Channel:
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


def probe(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    channel = build(block, tools)
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


KIND = ChannelKind(name="DPF", key="dpf", registry_scope="eformidling:dpf", settings=SETTINGS, build=build,
                   probe=probe, routing=ROUTING, options=OPTIONS, business=BUSINESS)
