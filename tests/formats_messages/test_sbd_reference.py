"""The reference's own SBDs (behaviour specs, docs template, a legacy sample) read as they should."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.channels.dpi.nextmove import Digital, Print
from gateway.errors import MessageFormatError
from gateway.formats.sbd import (
    ARKIVMELDING_PROCESS,
    Arkivmelding,
    Avtalt,
    Scope,
    Status,
    from_json,
    to_json,
)
from gateway.formats.sbd_xml import from_xml

from .conftest import REFERENCE, feature_sbds

# Organisation numbers the reference's specs use whose MOD11 check digit is wrong; we reject those
# (see test_reference_numbers_with_bad_check_digits_are_rejected) and swap in a valid one elsewhere.
BAD_REFERENCE_ORGNRS = {"910075924", "910075935", "910075946"}
VALID_STAND_IN = "974760673"
# Business messages of the eInnsyn channel (DPE), out of scope for this gateway.
OUT_OF_SCOPE_TYPES = {"innsynskrav", "einnsyn_kvittering"}


def _with_valid_numbers(text: str) -> str:
    for bad in BAD_REFERENCE_ORGNRS:
        text = text.replace(f"0192:{bad}", f"0192:{VALID_STAND_IN}")
    return text


def _normalised(doc: Any) -> Any:
    """The reference's JSON as we write it: instants compared as instants, persons bare."""
    if isinstance(doc, dict):
        return {k: _normalised(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_normalised(v) for v in doc]
    if isinstance(doc, str):
        if doc.startswith("0192:") and len(doc) == 16:  # 0192:<11-digit person> -> the bare number
            return doc[5:]
        try:
            moment = datetime.fromisoformat(doc)
        except ValueError:
            return doc
        if moment.tzinfo is not None and "T" in doc:
            return moment.astimezone(UTC).isoformat()
    return doc


def _readable_blocks() -> list[tuple[str, int, str]]:
    out = []
    for name, number, text in feature_sbds():
        try:
            doc = json.loads(text)
        except ValueError:
            continue  # a Scenario Outline template with <placeholders>
        header = doc.get("standardBusinessDocumentHeader")
        if header is None or "receiver" not in header:
            continue  # wrapped ({"sbd": …}) or the deliberately broken no-receiver example
        if header["documentIdentification"]["type"] in OUT_OF_SCOPE_TYPES:
            continue
        out.append((name, number, text))
    return out


READABLE = _readable_blocks()


def test_we_found_the_reference_sbds() -> None:
    names = {name for name, _, _ in READABLE}
    assert len(READABLE) >= 15
    assert {
        "nextmove_send_dpo.feature",
        "nextmove_receive_dpo.feature",
        "nextmove_send_dpo_avtalt.feature",
        "nextmove_send_dpi_digital_json.feature",
        "nextmove_send_digital_dpv.feature",
    } <= names


@pytest.mark.parametrize(("feature", "block", "text"), READABLE, ids=[f"{n}#{b}" for n, b, _ in READABLE])
def test_reference_sbd_reads_and_writes_back_the_same_json(feature: str, block: int, text: str) -> None:
    text = _with_valid_numbers(text)
    sbd = from_json(text.encode())
    assert _normalised(json.loads(to_json(sbd))) == _normalised(json.loads(text))


def test_reference_dpo_send_reads_into_the_right_fields() -> None:
    _, _, text = next(b for b in READABLE if b[0] == "nextmove_send_dpo.feature")
    sbd = from_json(text.encode())
    assert (sbd.sender, sbd.receiver) == ("910077473", "910075918")
    assert sbd.message_id == "ff88849c-e281-4809-8555-7cd54952b916"
    assert sbd.conversation_id == "37efbd4c-413d-4e2c-bbc5-257ef4a65a56"
    assert sbd.process == ARKIVMELDING_PROCESS
    assert sbd.created == datetime(2019, 3, 25, 11, 35, tzinfo=timezone(timedelta(hours=1)))
    assert sbd.expected_response == datetime(2019, 5, 9, 23, 31, 52, tzinfo=UTC)
    assert sbd.business_message == Arkivmelding(sikkerhetsnivaa=3, hoveddokument="arkivmelding.xml")


def test_reference_messages_map_to_their_classes() -> None:
    kinds = {type(from_json(_with_valid_numbers(t).encode()).business_message) for _, _, t in READABLE}
    assert {Arkivmelding, Status, Avtalt, Digital, Print} <= kinds


def test_reference_numbers_with_bad_check_digits_are_rejected() -> None:
    _, _, text = next(
        b for b in feature_sbds() if b[0] == "nextmove_send_dpf_with_refs.feature" and "SenderRef" in b[2]
    )
    with pytest.raises(MessageFormatError, match=r"receiver\[0\].identifier.value: 910075924 .*check digit"):
        from_json(text.encode())


def test_reference_sbd_with_sender_and_receiver_refs() -> None:
    _, _, text = next(
        b for b in feature_sbds() if b[0] == "nextmove_send_dpf_with_refs.feature" and "SenderRef" in b[2]
    )
    sbd = from_json(text.replace("910075924", VALID_STAND_IN).encode())
    assert sbd.extra_scopes == (
        Scope(type="SenderRef", instance_identifier="ec5e72a3-5772-4bd5-aa33-72094951ca4d"),
        Scope(type="ReceiverRef", instance_identifier="27991054-77b4-48ed-bf9b-ae36bb1b41d1"),
    )


def test_the_reference_example_without_a_receiver_is_rejected() -> None:
    texts = [
        t
        for name, _, t in feature_sbds()
        if name == "nextmove_send_dpi_utskrift_json.feature" and '"receiver"' not in t
    ]
    assert texts, "the spec's no-receiver example is gone"
    with pytest.raises(MessageFormatError, match=r"receiver: exactly one receiver"):
        from_json(texts[0].encode())


def _filled_template() -> str:
    text = (REFERENCE / "samples" / "sbd-arkivmelding.json").read_text(encoding="utf-8")
    values = {
        "<avsenderidentifikator>": "0192:910077473",
        "<mottakeridentifikator>": "0192:910075918",
        "<dokumenttype>": "urn:no:difi:arkivmelding:xsd::arkivmelding",
        "<meldingsidentifikator>": "ff88849c-e281-4809-8555-7cd54952b916",
        "<forretningsmeldingnavn>": "arkivmelding",
        "<konversasjonsIdentifikator>": "37efbd4c-413d-4e2c-bbc5-257ef4a65a56",
        "<prosessidentifikator>": ARKIVMELDING_PROCESS,
        "<leveringsfrist>": "2019-05-10T00:31:52+01:00",
        "<UUID>": "27991054-77b4-48ed-bf9b-ae36bb1b41d1",
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert "<" not in text
    return text


def test_docs_template_filled_in_is_read() -> None:
    # The template misspells ReceiverRef's "identifier" and has no creationDateAndTime (which the
    # docs' own JSON schema requires); both are corrected here and tested as rejections below.
    text = _filled_template().replace('"identfier"', '"identifier"')
    created = datetime(2019, 3, 25, 11, 35, tzinfo=UTC)
    sbd = from_json(text.encode(), default_created=created)
    assert sbd.sender == "910077473" and sbd.receiver == "910075918"
    assert sbd.type_version == "1.0" and sbd.created == created
    assert sbd.business_message == Arkivmelding()
    assert [s.type for s in sbd.extra_scopes] == ["SenderRef", "ReceiverRef"]


def test_docs_template_typo_and_missing_creation_time_are_named() -> None:
    with pytest.raises(MessageFormatError) as caught:
        from_json(_filled_template().encode())
    message = str(caught.value)
    assert "scope[2]: unknown key 'identfier' (did you mean 'identifier'?)" in message
    assert "documentIdentification.creationDateAndTime" in message


def test_legacy_9908_is_rejected_with_what_to_write_instead() -> None:
    data = (REFERENCE / "samples" / "sbd-legacy-9908.json").read_bytes()
    with pytest.raises(MessageFormatError) as caught:
        from_json(data)
    message = str(caught.value)
    assert "9908" in message and "write 0192:910075918 instead" in message
    assert "write 0192:910077473 instead" in message


def test_legacy_9908_is_read_when_normalising() -> None:
    data = (REFERENCE / "samples" / "sbd-legacy-9908.json").read_bytes()
    sbd = from_json(data, normalise_retired=True)
    assert (sbd.sender, sbd.receiver) == ("910077473", "910075918")
    assert sbd.created == datetime(2016, 4, 11, 13, 29, 58, 753000, tzinfo=UTC)
    assert sbd.business_message == Arkivmelding(sikkerhetsnivaa=3)
    assert (
        json.loads(to_json(sbd))["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"]
        == "0192:910075918"
    )


REFERENCE_STYLE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<ns3:StandardBusinessDocument xmlns:ns3="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
                              xmlns:ns2="urn:no:difi:meldingsutveksling:2.0">
  <ns3:StandardBusinessDocumentHeader>
    <ns3:HeaderVersion>1.0</ns3:HeaderVersion>
    <ns3:Sender><ns3:Identifier Authority="iso6523-actorid-upis">0192:910077473</ns3:Identifier></ns3:Sender>
    <ns3:Receiver><ns3:Identifier Authority="iso6523-actorid-upis">0192:910075918</ns3:Identifier></ns3:Receiver>
    <ns3:DocumentIdentification>
      <ns3:Standard>urn:no:difi:eformidling:xsd::status</ns3:Standard>
      <ns3:TypeVersion>2.0</ns3:TypeVersion>
      <ns3:InstanceIdentifier>ff88849c-e281-4809-8555-7cd54952b916</ns3:InstanceIdentifier>
      <ns3:Type>status</ns3:Type>
      <ns3:CreationDateAndTime>2019-03-25T11:35:00.250+01:00</ns3:CreationDateAndTime>
    </ns3:DocumentIdentification>
    <ns3:BusinessScope>
      <ns3:Scope>
        <ns3:Type>ConversationId</ns3:Type>
        <ns3:InstanceIdentifier>37efbd4c-413d-4e2c-bbc5-257ef4a65a56</ns3:InstanceIdentifier>
        <ns3:Identifier>urn:no:difi:profile:arkivmelding:response:ver1.0</ns3:Identifier>
        <ns3:ScopeInformation>
          <ns3:ExpectedResponseDateTime>2019-05-10T00:31:52+01:00</ns3:ExpectedResponseDateTime>
        </ns3:ScopeInformation>
      </ns3:Scope>
    </ns3:BusinessScope>
  </ns3:StandardBusinessDocumentHeader>
  <ns2:status><status>MOTTATT</status></ns2:status>
</ns3:StandardBusinessDocument>
"""


def test_reference_style_xml_with_direct_scope_information_is_read() -> None:
    sbd = from_xml(REFERENCE_STYLE_XML)
    assert sbd.business_message == Status(status="MOTTATT")
    assert sbd.expected_response == datetime(2019, 5, 9, 23, 31, 52, tzinfo=UTC)
    assert sbd.created.microsecond == 250000


def test_xml_with_9908_is_rejected_or_normalised() -> None:
    legacy = REFERENCE_STYLE_XML.replace(b"0192:910075918", b"9908:910075918")
    with pytest.raises(MessageFormatError, match="write 0192:910075918 instead"):
        from_xml(legacy)
    assert from_xml(legacy, normalise_retired=True).receiver == "910075918"
