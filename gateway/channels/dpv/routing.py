"""DPV's answer to routing: the receiver's Altinn mailbox, never for a message at security level 4."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.channels.kind import ChannelRouting, MessageFacts, RouteWords, Verdict, record_fits
from gateway.channels.records import ServiceRecord

DIGITAL_LETTER = "urn:no:difi:digitalpost:xsd:digital::digital"
DIGITAL_DPV = "urn:no:difi:digitalpost:xsd:digital::digital_dpv"


def fits(record: ServiceRecord, facts: MessageFacts) -> bool:
    # The registry sends a person without an active digital mailbox to the Altinn mailbox with a digital_dpv
    # record: it takes the digital letter (the reference converts it to digital_dpv).
    if facts.is_person and facts.document_type == DIGITAL_LETTER and DIGITAL_DPV in record.document_types:
        return record_fits(record, facts, check_document_type=False)
    return record_fits(record, facts)


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    # Level 4 with no route before this one is an error, never a silent Altinn mailbox: said even where the
    # receiver has no DPV record, as the reason the message cannot go.
    if facts.security_level is not None and facts.security_level >= 4:
        return Verdict(False, _level_4_refusal(facts), final=True)
    if not records:
        return Verdict(False)
    absent = " and ".join(words.absent for words in facts.earlier)
    if facts.is_person:
        return Verdict(True, f"receiver has {absent or 'an Altinn mailbox'}: DPV (Altinn mailbox, notified)",
                       records[0])
    where = f"receiver has {absent} for process {facts.process}" if absent else (
        f"receiver has a DPV record for process {facts.process}")
    return Verdict(True, f"{where}: DPV (Altinn mailbox)", records[0])


def _level_4_refusal(facts: MessageFacts) -> str:
    routes = " or ".join(words.route for words in facts.earlier) or "other"
    if facts.is_person:
        return (f"{facts.receiver} has no {routes} for process {facts.process}, and a message at security level 4 "
                "may not go to the Altinn mailbox (DPV); send it as print or at level 3")
    return (f"{facts.receiver} has no {routes} route for process {facts.process}, and a message at security "
            "level 4 may not go to the Altinn mailbox (DPV); send it at security level 3 if its content allows, or "
            "agree another channel with the receiver")


ROUTING = ChannelRouting(words=RouteWords(absent="no Altinn mailbox", route="DPV (Altinn mailbox)"),
                         can_carry=can_carry,
                         rank={"organisations": 30, "persons": 20}, fits=fits)
