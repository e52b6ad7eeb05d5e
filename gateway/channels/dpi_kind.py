"""DPI (post to citizens) as far as routing knows it, until its channel package (gateway/channels/dpi/) brings
its own kind with settings and a builder: a person's record answers for a digital mailbox and for print.

With no settings block here, DPI cannot be enabled: a message routed to it fails at send with "not enabled in
this gateway's configuration", as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.channels.kind import ChannelKind, ChannelRouting, MessageFacts, RouteWords, Verdict, record_fits
from gateway.channels.records import ServiceRecord
from gateway.environments import PRODUCTION, TEST

DIGITAL_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital"
PRINT_DOCUMENT = "urn:no:difi:digitalpost:xsd:fysisk::print"
VEDTAK_PROCESS = "urn:no:difi:profile:digitalpost:vedtak:ver1.0"

# Digdir's Corner 2 and the print service's certificate, for the channel package to take over (the reference's
# application-staging and application-production properties).
URLS = {
    TEST: {
        "corner2_url": "https://sandbox1.ediex.no/api/v2/dpi",
        "print_certificate_url": "https://test.kontaktregisteret.no/rest/v2/printSertifikat",
    },
    PRODUCTION: {
        "corner2_url": "https://edi.edigard.com/api/v2/dpi",
        "print_certificate_url": "https://kontaktregisteret.no/rest/v2/printSertifikat",
    },
}


def _fits(record: ServiceRecord, facts: MessageFacts) -> bool:
    # A DPI record answers for both digital and print: which one it offers is decided in can_carry.
    return record_fits(record, facts, check_document_type=False)


def can_carry(facts: MessageFacts, records: Sequence[ServiceRecord]) -> Verdict:
    digital = next((r for r in records if DIGITAL_DOCUMENT in r.document_types), None)
    if digital and facts.document_type != PRINT_DOCUMENT:
        return Verdict(True, "receiver has an active digital mailbox: DPI", digital)
    printable = next((r for r in records if PRINT_DOCUMENT in r.document_types), None)
    if printable and (facts.process == VEDTAK_PROCESS or facts.document_type == PRINT_DOCUMENT):
        why = "print was asked for" if facts.document_type == PRINT_DOCUMENT else "a vedtak must reach them"
        return Verdict(True, f"receiver has no active digital mailbox and {why}: DPI print", printable,
                       is_print=True)
    return Verdict(False)


ROUTING = ChannelRouting(
    words=RouteWords(absent="no active digital mailbox", route="active digital mailbox (DPI)"),
    can_carry=can_carry,
    rank={"persons": 10},
    fits=_fits,
)

KIND = ChannelKind(name="DPI", key="dpi", registry_scope="eformidling:dpi", settings=None, routing=ROUTING)
