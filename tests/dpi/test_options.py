"""The sidecar's <dpi> block: what it says reaches the channel as DpiOptions, and each field it refuses is
refused with the field and words an archivist can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.channels.dpi.options import DpiOptions, PostalAddress
from gateway.contract.sidecar import read_sidecar, write_sidecar

PERSON = "12857610030"


def sidecar(dpi: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<message xmlns="urn:efm-gateway:message:1">\n'
            f"  <receiver>{PERSON}</receiver>\n  <type>digital</type>\n"
            f"  <dpi>{dpi}</dpi>\n"
            '  <documents><document main="true"><file>brev.pdf</file></document></documents>\n</message>\n').encode()


def test_a_full_block_is_read_and_round_trips() -> None:
    block = ("<printFallback>true</printFallback>"
             "<digital><title>Brev</title><language>en</language><effectiveDate>2026-12-08T09:00:00Z</effectiveDate>"
             "<openReceipt>true</openReceipt><notification><channels>Email</channels><emailText>Nytt brev</emailText>"
             "</notification></digital>"
             "<print><receiverAddress><name>Ola</name><addressLine>Gata 1</addressLine><postalCode>0155</postalCode>"
             "<postalArea>OSLO</postalArea></receiverAddress><returnAddress><name>Kommunen</name>"
             "<addressLine>Rue 1</addressLine><country>SVERIGE</country></returnAddress><colour>colour</colour>"
             "<postType>A</postType><returnedPost>shredAndNotify</returnedPost></print>")
    read, problems = read_sidecar(sidecar(block))
    assert problems == [] and read is not None
    options: DpiOptions = read.options["dpi"]
    assert options.print_fallback
    assert options.digital is not None and options.digital.language == "EN"
    assert options.digital.effective == datetime(2026, 12, 8, 9, tzinfo=UTC)
    assert options.digital.open_receipt and options.digital.notification_channels == "Email"
    assert options.print is not None
    assert options.print.receiver_address == PostalAddress("Ola", ("Gata 1",), "0155", "OSLO")
    assert options.print.return_address == PostalAddress("Kommunen", ("Rue 1",), country="SVERIGE")
    assert (options.print.colour, options.print.post_type, options.print.returned_post) == (
        "FARGE", "A", "MAKULERING_MED_MELDING")
    again, problems = read_sidecar(write_sidecar(read))
    assert problems == [] and again == read


def test_an_effective_date_without_a_time_zone_is_norwegian_time() -> None:
    read, problems = read_sidecar(sidecar("<digital><effectiveDate>2026-07-01T09:00:00</effectiveDate></digital>"))
    assert problems == [] and read is not None
    assert read.options["dpi"].digital.effective == datetime(2026, 7, 1, 7, tzinfo=UTC)  # summer time: UTC+2


@pytest.mark.parametrize(("block", "field", "words"), [
    ("<digital><title></title></digital>", "title", "the value is empty"),
    ("<digital><title>" + "x" * 201 + "</title></digital>", "title", "maximum length"),
    ("<digital><language>norsk</language></digital>", "language", "'norsk' has the wrong form"),
    ("<digital><effectiveDate>tomorrow</effectiveDate></digital>", "effectiveDate", "is not a date and time"),
    ("<digital><openReceipt>ja</openReceipt></digital>", "openReceipt", "'ja' is not true or false"),
    ("<digital><notification><channels>Fax</channels></notification></digital>", "channels",
     "'Fax' is not allowed; use one of Email, Sms, EmailAndSms, None"),
    ("<digital><notification><smsText>" + "x" * 161 + "</smsText></notification></digital>", "smsText",
     "maximum length"),
    ("<print><colour>red</colour></print>", "colour", "'red' is not allowed; use one of blackAndWhite, colour"),
    ("<print><postType>C</postType></print>", "postType", "'C' is not allowed; use one of A, B"),
    ("<print><returnedPost>burn</returnedPost></print>", "returnedPost",
     "'burn' is not allowed; use one of returnToSender, shredAndNotify"),
    ("<print><receiverAddress><name>Ola</name><postalCode>155</postalCode><postalArea>OSLO</postalArea>"
     "</receiverAddress></print>", "postalCode", "'155' has the wrong form"),
    ("<print><receiverAddress><name>Ola</name><addressLine>Gata 1</addressLine></receiverAddress></print>",
     "receiverAddress", "a required element is missing here; add <addressLine> or <postalCode> or <country>"),
    ("<print><receiverAddress><addressLine>Gata 1</addressLine><postalCode>0155</postalCode>"
     "<postalArea>OSLO</postalArea></receiverAddress></print>", "addressLine",
     "expected <name> here"),
    ("<printFallback>maybe</printFallback>", "printFallback", "'maybe' is not true or false"),
    ("<fax>yes</fax>", "fax", "this element is unknown or in the wrong place"),
], ids=["empty-title", "long-title", "language", "not-a-date", "open-receipt",
        "notification-channel", "long-sms", "colour", "post-type", "returned-post", "postal-code",
        "address-without-code-or-country", "address-without-name", "print-fallback", "unknown-element"])
def test_each_rejection_names_the_field_and_says_what_to_do(block: str, field: str, words: str) -> None:
    _read, problems = read_sidecar(sidecar(block), source="message.xml")
    assert problems, f"{block} was accepted"
    assert any(problem.field == field and words in problem.text for problem in problems), [
        str(problem) for problem in problems]
    assert all(problem.line == 5 for problem in problems)
