"""DPI as the gateway sees it: its settings, its builder and probe, its routing answer, its sidecar block.

The registry's person look-ups need KRR's scopes on the token besides the channel's own (the registry asks KRR
with the caller's token, networks.md §1 and §4); Corner 2 takes `digitalpostinnbygger:send`.
"""

from __future__ import annotations

from typing import Any

from gateway.channels.base import Channel
from gateway.channels.dpi.channel import DpiChannel, LetterDefaults
from gateway.channels.dpi.client import Corner2Client, corner2_client
from gateway.channels.dpi.kept_receipts import JournalReceipts
from gateway.channels.dpi.nextmove import BUSINESS
from gateway.channels.dpi.options import OPTIONS
from gateway.channels.dpi.print_certificate import PrintCertificates
from gateway.channels.dpi.routing import ROUTING
from gateway.channels.dpi.settings import SETTINGS
from gateway.channels.kind import ChannelKind, ChannelTools

KRR_SCOPES = ("global/kontaktinformasjon.read", "global/sikkerdigitalpost.read", "global/varslingsstatus.read",
              "global/sertifikat.read", "global/navn.read", "global/postadresse.read")
# As the reference asks the registry for DPI (networks.md §1): the channel, Corner 2 and KRR scopes in one token.
REGISTRY_SCOPE = " ".join(("eformidling:dpi", "digitalpostinnbygger:send", *KRR_SCOPES))


def _clients(block: Any, tools: ChannelTools) -> Any:
    made: dict[str, Corner2Client] = {}

    def client_for(avsender: str) -> Corner2Client:
        if avsender not in made:
            made[avsender] = corner2_client(block.corner2_url, tools.auth, tools.http, tools.orgnr, avsender,
                                            timeout=block.request_timeout_seconds)
            made[avsender].page_size = block.receipt_page_size
        return made[avsender]

    return client_for


def build(block: Any, tools: ChannelTools) -> Channel:
    defaults = LetterDefaults(
        language=block.language, email_text=block.email_notification_text, sms_text=block.sms_notification_text,
        print_colour=block.print_colour, post_type=block.post_type, returned_post=block.returned_post,
        avsenderidentifikator=block.avsenderidentifikator, fakturareferanse=block.fakturareferanse, kanal=block.kanal,
    )
    receivers = tools.receiver_trust()
    # Anonymous, as KRR serves it: no token on this call.
    print_certificates = PrintCertificates(block.print_certificate_url, tools.http, receivers, tools.clock,
                                           block.print_certificate_cache_seconds, block.request_timeout_seconds)
    return DpiChannel(_clients(block, tools), tools.identity, tools.orgnr, tools.trust, receivers, print_certificates,
                      tools.clock, defaults, statuses_per_request=max(1, block.status_batch // block.max_in_flight),
                      receipt_gap=block.status_poll_seconds / 2, handed_on_poll_s=block.handed_on_poll_seconds,
                      kept=JournalReceipts(tools.journal) if tools.journal is not None else None)


def probe(block: Any, tools: ChannelTools) -> list[tuple[str, str, str]]:
    channel = build(block, tools)
    assert isinstance(channel, DpiChannel)
    # Listed, never marked read: the receipts stay for the daemon.
    waiting = channel.client.incoming(kanal=block.kanal)
    results = [("channels.dpi.corner2_url", block.corner2_url,
                f"Corner 2 lists {len(waiting)} receipt(s) waiting (Maskinporten digitalpostinnbygger:send; listed "
                "only, none taken)")]
    if block.print_certificate_url:
        checked = channel.print_certificates.certificate(None)
        results.append(("channels.dpi.print_certificate_url", block.print_certificate_url,
                        f"KRR gives the print service's certificate ({checked.owner}), trusted"))
    return results


KIND = ChannelKind(name="DPI", key="dpi", registry_scope=REGISTRY_SCOPE, settings=SETTINGS, build=build,
                   probe=probe, routing=ROUTING, options=OPTIONS, business=BUSINESS)
