"""DPI's answer to routing: whether a person's records let a letter go to their digital mailbox or to print,
and which rule decided, in words for the status file.

The person's record comes from the service registry, which asks KRR (networks.md §4): the mailbox provider
(`orgnrPostkasse`) and address (`postkasseAdresse`), `kanVarsles`, contact details, the mailbox's certificate,
and for print the postal and return addresses. The registry's record does not carry KRR's reservation or status
(efm-service-registry's SikkerDigitalPostServiceRecord); where a record carries `reservert` or `aktiv` the rules name
them, and otherwise the shape of the registry's answer says which: its router gives a vedtak print alone for a
reservation or a receiver it cannot notify (`kanVarsles` says which of the two), and DPV beside print for a receiver
without an active mailbox.

    vedtak (obligated):  reserved, no active mailbox or not notifiable -> print; else the digital mailbox
    info and others:     an active mailbox -> digital; else print where the sidecar asks for print fallback;
                         else no (the next channel, DPV, answers as the registry says)
    a print letter:      print

No national identity number is written into a reason: the status file names the receiver already, and the
reason is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.channels.kind import ChannelRouting, MessageFacts, RouteWords, Verdict, record_fits
from gateway.channels.records import ServiceRecord

DIGITAL_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital"
PRINT_DOCUMENT = "urn:no:difi:digitalpost:xsd:fysisk::print"
VEDTAK_PROCESS = "urn:no:difi:profile:digitalpost:vedtak:ver1.0"


def _flag(record: ServiceRecord, *names: str) -> bool | None:
    """A yes/no field of the record (KRR's booleans, or its JA/NEI words); None when the record has none."""
    for name in names:
        value: Any = record.fields.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.upper() in ("JA", "NEI", "TRUE", "FALSE"):
            return value.upper() in ("JA", "TRUE")
    return None


def is_print_record(record: ServiceRecord) -> bool:
    return _flag(record, "fysiskPost") is True or (
        PRINT_DOCUMENT in record.document_types and DIGITAL_DOCUMENT not in record.document_types)


@dataclass(frozen=True)
class Person:
    """What the records say of the person, for the rules."""

    mailbox: ServiceRecord | None  # a digital record with a provider and an address, the mailbox active
    printable: ServiceRecord | None
    reserved: bool | None  # None: the record does not say
    notifiable: bool | None
    inactive: bool  # KRR says the mailbox (or the person's entry) is not active

    @property
    def provider(self) -> str:
        return str(self.mailbox.fields.get("orgnrPostkasse")) if self.mailbox else ""


def person_from(records: Sequence[ServiceRecord]) -> Person:
    digital = [record for record in records if not is_print_record(record) and DIGITAL_DOCUMENT in
               record.document_types]
    printable = next((record for record in records if is_print_record(record)), None)
    reserved = next((flag for record in records if (flag := _flag(record, "reservert", "reservasjon")) is not None),
                    None)
    notifiable = next((flag for record in records if (flag := _flag(record, "kanVarsles")) is not None), None)
    inactive = any(_flag(record, "aktiv") is False or str(record.fields.get("status", "AKTIV")).upper() != "AKTIV"
                   for record in records)
    mailbox = next((record for record in digital
                    if record.fields.get("postkasseAdresse") and record.fields.get("orgnrPostkasse")), None)
    return Person(None if inactive or reserved else mailbox, printable, reserved, notifiable, inactive)


def _print(printable: ServiceRecord | None, reason: str) -> Verdict:
    if printable is None:
        return Verdict(False, reason.replace(": DPI print", ", but the registry offers no print record"))
    return Verdict(True, reason, printable, is_print=True)


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    person = person_from(records)
    if facts.document_type == PRINT_DOCUMENT:
        return _print(person.printable, "the sidecar asks for a print letter: DPI print")
    if facts.process == VEDTAK_PROCESS:
        return _vedtak(person, facts.offered)
    if person.mailbox is not None:
        return Verdict(True, f"the receiver has an active digital mailbox (provider {person.provider}): DPI digital",
                       person.mailbox)
    if _print_fallback(facts) and person.printable is not None:
        return Verdict(True, "the receiver has no active digital mailbox and the sidecar asks for print fallback: "
                             "DPI print", person.printable, is_print=True)
    return Verdict(False)


def _vedtak(person: Person, offered: frozenset[str]) -> Verdict:
    if person.reserved:
        return _print(person.printable, RESERVED)
    if person.notifiable is False:
        return _print(person.printable, "a vedtak must reach the receiver, who cannot be notified of a digital "
                                        "letter (KRR: kanVarsles false): DPI print")
    if person.mailbox is not None:
        return Verdict(True, f"a vedtak, and the receiver has an active digital mailbox (provider {person.provider}) "
                             "and can be notified: DPI digital", person.mailbox)
    if person.inactive or person.reserved is False or "DPV" in offered:
        # The registry's router (DpiMessageRouter) offers DPV for a vedtak only to a receiver who is neither
        # reserved nor unreachable: what is missing is the mailbox.
        return _print(person.printable, "a vedtak must reach the receiver, who has no active digital mailbox: "
                                        "DPI print")
    if person.notifiable and person.printable is not None:
        # Print alone for a receiver who can be notified: the router's one branch for that is a reservation.
        return _print(person.printable, RESERVED)
    return _print(person.printable, "a vedtak must reach the receiver, who has no active digital mailbox or "
                                    "has reserved against digital post (the registry offers print): DPI print")


RESERVED = "a vedtak must reach the receiver, who has reserved against digital post in KRR: DPI print"


def _print_fallback(facts: MessageFacts) -> bool:
    """The sidecar's <dpi><printFallback> (DpiOptions, under the channel's key)."""
    return bool(getattr(facts.options.get("dpi"), "print_fallback", False))


def fits(record: ServiceRecord, facts: MessageFacts) -> bool:
    # A DPI record answers for digital and print alike: which one it offers is decided in can_carry.
    return record_fits(record, facts, check_document_type=False)


ROUTING = ChannelRouting(
    words=RouteWords(absent="no active digital mailbox", route="DPI (digital mailbox or print)"),
    can_carry=can_carry,
    rank={"persons": 10},
    fits=fits,
)
