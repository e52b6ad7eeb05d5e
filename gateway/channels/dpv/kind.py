"""DPV as the gateway sees it: its settings, its builder and probe, its routing answer, its sidecar block."""

from __future__ import annotations

from typing import Any

from gateway.channels.base import Channel
from gateway.channels.dpv.business import BUSINESS
from gateway.channels.dpv.channel import DpvChannel, NotificationDefaults
from gateway.channels.dpv.client import DPV_PROXY_SCOPE, CorrespondenceClient
from gateway.channels.dpv.options import OPTIONS
from gateway.channels.dpv.routing import ROUTING
from gateway.channels.dpv.settings import SETTINGS
from gateway.channels.kind import ChannelKind, ChannelTools


def build(block: Any, tools: ChannelTools) -> Channel:
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


def probe(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    correspondence = CorrespondenceClient(block.correspondence_url, tools.auth.altinn((DPV_PROXY_SCOPE,)), tools.http)
    correspondence.find_by_senders_reference(f"efm-gateway-check-{tools.orgnr}")
    return [("channels.dpv.correspondence_url", block.correspondence_url,
             "the correspondence service answers a search (Altinn token exchanged, eformidling:dpv)")]


KIND = ChannelKind(name="DPV", key="dpv", registry_scope="eformidling:dpv", settings=SETTINGS, build=build,
                   probe=probe, routing=ROUTING, options=OPTIONS, business=BUSINESS)
