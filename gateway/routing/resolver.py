"""The one question routing asks before it chooses: who is this receiver, and on which channels does it take
this process. The service registry answers it today (ServiceRegistryClient); a Peppol SMP lookup could stand
behind the same `Resolver` later. `route_for` is the whole of routing for one message, the same for the
sender and for `efm-gateway validate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.channels.records import RegistryAnswer
from gateway.formats.business import document_type
from gateway.identifiers import is_person
from gateway.routing.route import Route, choose_route


class Resolver(Protocol):
    def lookup(
        self,
        identifier: str,
        process: str,
        security_level: int | None = None,
        conversation_id: str | None = None,
    ) -> RegistryAnswer:
        """The receiver's records for `process`; ReceiverNotFound (a PermanentChannelError) when it has none,
        RetryableChannelError when the lookup cannot be made now."""
        ...


class Preferences(Protocol):
    def preference(self, process: str, is_person: bool) -> tuple[str, ...]:
        """The channel names to ask, in order (config.yaml's routing section)."""
        ...


def route_for(
    resolver: Resolver,
    receiver: str,
    process: str,
    message_type: str,
    security_level: int | None,
    conversation_id: str | None = None,
    pinned: str | None = None,
    preferences: Preferences | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Route, RegistryAnswer]:
    """Look `receiver` up and choose the channel for a message of `message_type` (sidecar's type) in `process`."""
    answer = resolver.lookup(receiver, process, security_level, conversation_id)
    person = is_person(receiver)
    order: Sequence[str] | None = preferences.preference(process, person) if preferences is not None else None
    route = choose_route(answer, process, document_type(message_type), person, security_level,
                         pinned=pinned, preference=order, options=options)
    return route, answer
