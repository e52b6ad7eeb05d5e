"""DPF's answer to routing: a receiver with a SvarInn address (a DPF record at the message's level) takes it."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.channels.kind import ChannelRouting, MessageFacts, RouteWords, Verdict
from gateway.channels.records import ServiceRecord


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    if not records:
        return Verdict(False)
    if facts.earlier:
        absent = " and ".join(words.absent for words in facts.earlier)
        return Verdict(True, f"receiver has {absent} for this process; SvarInn address found: DPF", records[0])
    return Verdict(True, f"receiver has a SvarInn address for process {facts.process}: DPF", records[0])


ROUTING = ChannelRouting(words=RouteWords(absent="no SvarInn address", route="DPF (SvarInn)"), can_carry=can_carry,
                         rank={"organisations": 20})
