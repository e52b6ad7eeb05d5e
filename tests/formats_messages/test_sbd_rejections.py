"""Broken SBDs are refused with messages that name the field and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import MessageFormatError
from gateway.formats.sbd import Arkivmelding, Status, from_json, to_json, validate_sbd
from gateway.formats.sbd_xml import from_xml, to_xml

from .conftest import make_sbd


def _wire() -> dict[str, Any]:
    return json.loads(to_json(make_sbd()))


def _reject(doc: dict[str, Any]) -> str:
    with pytest.raises(MessageFormatError) as caught:
        from_json(json.dumps(doc).encode())
    return str(caught.value)


def test_the_unbroken_document_is_accepted() -> None:
    assert from_json(json.dumps(_wire()).encode()) == from_json(to_json(make_sbd()))


def test_type_must_equal_the_suffix_of_standard() -> None:
    doc = _wire()
    doc["standardBusinessDocumentHeader"]["documentIdentification"]["standard"] = "urn:no:difi:eformidling:xsd::status"
    assert "type 'arkivmelding' must equal the part of the standard after '::'" in _reject(doc)


def test_conversation_scope_is_required() -> None:
    doc = _wire()
    doc["standardBusinessDocumentHeader"]["businessScope"]["scope"] = []
    assert "a ConversationId scope is required" in _reject(doc)


def test_deadline_is_required() -> None:
    doc = _wire()
    del doc["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"]
    assert "expectedResponseDateTime: required (the deadline)" in _reject(doc)


def test_deadline_without_offset_is_refused() -> None:
    doc = _wire()
    doc["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"][0][
        "expectedResponseDateTime"
    ] = "2019-05-10T00:31:52"
    assert "has no UTC offset" in _reject(doc)


@pytest.mark.parametrize(("where", "name"), [("documentIdentification", "messageId"), ("scope", "conversationId")])
def test_ids_must_be_uuids(where: str, name: str) -> None:
    doc = _wire()
    header = doc["standardBusinessDocumentHeader"]
    target = (
        header["documentIdentification"] if where == "documentIdentification" else header["businessScope"]["scope"][0]
    )
    target["instanceIdentifier"] = "12345"
    assert f"{name}: '12345' is not a UUID" in _reject(doc)


def test_bad_check_digits_are_refused_for_both_parties() -> None:
    doc = _wire()
    doc["standardBusinessDocumentHeader"]["sender"][0]["identifier"]["value"] = "0192:910077474"
    doc["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] = "09118532323"
    message = _reject(doc)
    assert "2 problems" in message
    assert "sender[0].identifier.value: 910077474 is not a valid organisation number" in message
    assert "receiver[0].identifier.value: 09118532323 is not a valid national identity number" in message


def test_two_receivers_are_refused() -> None:
    doc = _wire()
    receivers = doc["standardBusinessDocumentHeader"]["receiver"]
    receivers.append(receivers[0])
    assert "receiver: exactly one receiver is allowed, found 2" in _reject(doc)


def test_business_message_must_sit_under_its_type() -> None:
    doc = _wire()
    doc["status"] = doc.pop("arkivmelding")
    message = _reject(doc)
    assert "under the key 'arkivmelding'" in message


def test_unknown_type_is_named() -> None:
    doc = _wire()
    doc["standardBusinessDocumentHeader"]["documentIdentification"].update(
        type="innsynskrav", standard="urn:no:difi:einnsyn:xsd:innsyn::innsynskrav"
    )
    doc["innsynskrav"] = doc.pop("arkivmelding")
    assert "'innsynskrav' is not a supported business message" in _reject(doc)


def test_values_are_checked() -> None:
    doc = _wire()
    doc["arkivmelding"]["sikkerhetsnivaa"] = 5
    assert "sikkerhetsnivaa must be 3 or 4" in _reject(doc)
    with pytest.raises(MessageFormatError, match="status must be one of MOTTATT, LEVERT"):
        make_sbd(Status(status="LEST"))


def test_wrong_json_type_names_the_path() -> None:
    doc = _wire()
    doc["arkivmelding"]["hoveddokument"] = 7
    assert "$.arkivmelding.hoveddokument: must be a string" in _reject(doc)


def test_not_json_at_all() -> None:
    with pytest.raises(MessageFormatError, match="not valid JSON"):
        from_json(b"{nope")


def test_validate_sbd_lists_every_problem_at_once() -> None:
    from dataclasses import replace

    sbd = replace(
        make_sbd(), message_id="x", conversation_id="y", sender="123456789", business_message=Status(status="LEVERT")
    )
    with pytest.raises(MessageFormatError) as caught:
        validate_sbd(sbd)
    assert len(caught.value.problems) == 4  # messageId, conversationId, sender, type vs message


def test_writers_refuse_an_invalid_sbd() -> None:
    from dataclasses import replace

    sbd = replace(make_sbd(), business_message=Arkivmelding(sikkerhetsnivaa=2))
    for write in (to_json, to_xml):
        with pytest.raises(MessageFormatError, match="sikkerhetsnivaa"):
            write(sbd)


def test_xml_with_two_receivers_is_refused() -> None:
    xml = to_xml(make_sbd()).decode()
    start = xml.index("<sbdh:Receiver>")
    end = xml.index("</sbdh:Receiver>") + len("</sbdh:Receiver>")
    doubled = xml[:end] + xml[start:end] + xml[end:]
    with pytest.raises(MessageFormatError, match="exactly one receiver is allowed, found 2"):
        from_xml(doubled.encode())


def test_xml_without_conversation_scope_and_with_doctype_is_refused() -> None:
    xml = to_xml(make_sbd()).decode()
    without = xml.replace("<sbdh:Type>ConversationId</sbdh:Type>", "<sbdh:Type>SenderRef</sbdh:Type>")
    with pytest.raises(MessageFormatError, match="a Scope of Type ConversationId is required"):
        from_xml(without.encode())
    evil = xml.replace(
        "<?xml version='1.0' encoding='UTF-8'?>", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
    )
    with pytest.raises(MessageFormatError, match="DOCTYPE"):
        from_xml(evil.encode())
