"""Which channel carries a message, and why, in words that go into the status file.

Routing asks the channels in an order of preference (config.yaml's `routing:`, per receiver kind and process;
by default the channels' own ranks: for organisations DPO's record, then a SvarInn address, then the Altinn
mailbox; for persons a digital mailbox or print, then the Altinn mailbox) whether each can carry the message
on the receiver's records (`ChannelRouting.can_carry`), and the first that can gives the route and its reason.
A channel may also stop routing with a reason no later channel may get around (security level 4 never goes to
an Altinn mailbox). A sidecar may pin the channel: the pin wins when the lookup offers a usable record on it,
and is refused with a reason when not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.channels.kind import ChannelKind, MessageFacts, record_fits
from gateway.channels.records import RegistryAnswer, ServiceRecord
from gateway.channels.registry import KINDS, default_preference
from gateway.errors import PermanentChannelError


@dataclass(frozen=True)
class Route:
    channel: str
    service_record: ServiceRecord | None
    reason: str
    is_print: bool = False


def choose_route(
    answer: RegistryAnswer,
    process: str,
    document_type: str,
    is_person: bool,
    security_level: int | None,
    pinned: str | None = None,
    preference: Sequence[str] | None = None,
    kinds: Mapping[str, ChannelKind] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Route:
    """The route for a message, or PermanentChannelError explaining why there is none.

    `preference`: the channel names to ask, in order (default: the channels' own for persons or organisations);
    `kinds`: the channels known (default: the registry's); `options`: the sidecar's channel options blocks.
    """
    by_name = {kind.name: kind for kind in (kinds or KINDS).values() if kind.routing is not None}
    receiver = answer.info_record.identifier or "the receiver"
    facts = MessageFacts(receiver, process, document_type, is_person, security_level, options=options or {})

    def fits(record: ServiceRecord) -> bool:
        kind = by_name.get(record.service)
        return kind.routing.fits(record, facts) if kind is not None and kind.routing else record_fits(record, facts)

    usable = [record for record in answer.service_records if fits(record)]
    if pinned:
        return _pinned_route(usable, receiver, process, security_level, pinned)
    order = preference if preference is not None else default_preference("persons" if is_person else "organisations")
    earlier: list = []
    facts = replace(facts, offered=frozenset(record.service for record in usable))
    for name in order:
        kind = by_name.get(name)
        if kind is None or kind.routing is None:
            continue
        records = [record for record in usable if record.service == name]
        verdict = kind.routing.can_carry(replace(facts, earlier=tuple(earlier)), records)
        if verdict.carries:
            return Route(name, verdict.record, verdict.reason, verdict.is_print)
        if verdict.final:
            raise PermanentChannelError(verdict.reason)
        earlier.append(kind.routing.words)
    raise PermanentChannelError(_no_route(answer, receiver, process, document_type))


def _pinned_route(
    usable: list[ServiceRecord],
    receiver: str,
    process: str,
    security_level: int | None,
    pinned: str,
) -> Route:
    record = next((record for record in usable if record.service == pinned), None)
    if record is not None:
        return Route(pinned, record, f"the sidecar pins channel {pinned}; the receiver has a {pinned} record for "
                                     f"process {process}: {pinned}")
    offered = sorted({r.service for r in usable})
    level = f" at security level {security_level}" if security_level else ""
    raise PermanentChannelError(
        f"the sidecar pins channel {pinned}, but the service registry offers {receiver} no {pinned} record for "
        f"process {process}{level}; it offers {', '.join(offered) or 'no channel'} for it: remove <channel> "
        "to let the routing rule choose, or pin one of those"
    )


def _no_route(answer: RegistryAnswer, receiver: str, process: str, document_type: str) -> str:
    offered = sorted({f"{r.service} ({r.process})" for r in answer.service_records})
    return (
        f"{receiver} has no channel for process {process} that accepts document type {document_type}; "
        f"the service registry offers: {', '.join(offered) or 'nothing'}"
    )
