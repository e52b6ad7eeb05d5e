"""Receipts as the sandbox issues them: the shape of Digipost's, valid by the schemas, read back to our statuses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from gateway.channels.dpi import (
    RECEIPT_TYPES,
    DpiFormatError,
    build_receipt,
    read_jwt,
    read_receipt,
    receipt_from_sbd,
    sign_jwt,
)
from gateway.formats.keys import OrgIdentity

from .conftest import MAILBOX, RECEIPTS, SENDER, example_json, shape

EXTRAS = {
    "feil": {"feiltype": "KLIENT", "detaljer": "Dokumentet mangler"},
    "varslingfeiletkvittering": {"varslingskanal": "sms", "beskrivelse": "Ukjent nummer"},
}
STATUS = {"mottakskvittering": "MOTTATT", "leveringskvittering": "LEVERT", "aapningskvittering": "LEST",
          "returpostkvittering": "FEIL", "feil": "FEIL", "varslingfeiletkvittering": "ANNET"}


def _digipost(kind: str) -> dict:
    payload = (RECEIPTS / f"{kind}.jwt").read_text().split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("kind", RECEIPT_TYPES)
def test_a_receipt_we_issue_reads_like_digiposts(kind: str, mailbox: OrgIdentity, schema_check) -> None:
    at = datetime(2026, 12, 7, 10, 0, 1, 250000, tzinfo=UTC)
    sbd = build_receipt(kind, provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m-1", conversation_id="c-1",
                        letter_type="utskrift" if kind in ("mottakskvittering", "returpostkvittering") else "digital",
                        timestamp=at, **EXTRAS.get(kind, {}))
    assert schema_check(sbd) == []
    assert shape(sbd) == shape(_digipost(kind))
    token = sign_jwt(sbd, mailbox, "RS512")
    assert read_jwt(token).algorithm == "RS512"
    receipt = read_receipt(token)
    assert (receipt.type, receipt.status, receipt.timestamp) == (kind, STATUS[kind], at)
    assert (receipt.message_id, receipt.conversation_id, receipt.provider) == ("m-1", "c-1", f"0192:{MAILBOX}")
    for word in EXTRAS.get(kind, {}).values():
        assert word in receipt.description


def test_delivery_of_a_print_letter_says_so() -> None:
    digital = build_receipt("leveringskvittering", provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m",
                            conversation_id="c")
    printed = build_receipt("leveringskvittering", provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m",
                            conversation_id="c", letter_type="utskrift")
    assert "digital mailbox" in receipt_from_sbd(digital).description
    assert "print" in receipt_from_sbd(printed).description


def test_a_receipt_without_its_required_words_is_not_built() -> None:
    with pytest.raises(DpiFormatError, match="feiltype KLIENT or SERVER"):
        build_receipt("feil", provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m", conversation_id="c")
    with pytest.raises(DpiFormatError, match="varslingskanal epost or sms"):
        build_receipt("varslingfeiletkvittering", provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m",
                      conversation_id="c", varslingskanal="brevdue")
    with pytest.raises(DpiFormatError, match="not a DPI receipt"):
        build_receipt("kvittering", provider_orgnr=MAILBOX, sender_orgnr=SENDER, message_id="m", conversation_id="c")


def test_a_letter_is_not_read_as_a_receipt(sender: OrgIdentity) -> None:
    with pytest.raises(DpiFormatError, match="'digital' is not a DPI receipt"):
        read_receipt(sign_jwt(example_json("digital"), sender))
