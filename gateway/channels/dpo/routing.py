"""DPO's answer to routing: a receiver with a DPO record for the process takes the message on it."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.channels.kind import ChannelRouting, MessageFacts, RouteWords, Verdict
from gateway.channels.records import ServiceRecord


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    if not records:
        return Verdict(False)
    return Verdict(True, f"receiver has a DPO record for process {facts.process}: DPO", records[0])


ROUTING = ChannelRouting(words=RouteWords(absent="no DPO record", route="DPO"), can_carry=can_carry,
                         rank={"organisations": 10})
