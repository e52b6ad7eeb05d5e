"""Every business message type survives JSON and XML, and what we write matches the reference schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource

from gateway.channels.dpf.business import DpfSettings
from gateway.channels.dpi.nextmove import Digital, Print
from gateway.channels.dpv.business import DigitalDpv, DpvSettings
from gateway.formats.sbd import (
    RESPONSE_PROCESS,
    Arkivmelding,
    ArkivmeldingKvittering,
    Avtalt,
    KvitteringMessage,
    Scope,
    Status,
    from_json,
    to_json,
)
from gateway.formats.sbd_xml import from_xml, to_xml
from gateway.xmlsafe import load_schema, parse_bytes

from .conftest import PERSON, REFERENCE, make_sbd

DIGITAL_PROCESS = "urn:no:difi:profile:digitalpost:info:ver1.0"

# Free-form values (extra keys, nested objects) are strings here: XML carries no JSON types.
SAMPLES = {
    "arkivmelding": dict(
        business_message=Arkivmelding(
            sikkerhetsnivaa=4,
            hoveddokument="brev.pdf",
            parts={
                "dpv": DpvSettings(
                    varsel_type="VarselDPVMedRevarsel",
                    varsel_transport_type="EPOST",
                    varsel_tekst="Du har post",
                    taushetsbelagt_varsel_tekst="Taushetsbelagt post",
                    dager_til_svarfrist=14,
                ),
                "dpf": DpfSettings(forsendelse_type="Byggesak"),
            },
            extra={"sensitiv": "true"},
        )
    ),
    "arkivmelding_kvittering": dict(
        process=RESPONSE_PROCESS,
        business_message=ArkivmeldingKvittering(
            receipt_type="WARNING",
            related_to_message_id="ff88849c-e281-4809-8555-7cd54952b916",
            messages=(KvitteringMessage(code="W1", text="Arkivert med merknad"), KvitteringMessage(code="W2")),
        ),
    ),
    "status": dict(process=RESPONSE_PROCESS, business_message=Status(status="LEVERT")),
    "avtalt": dict(
        process="urn:no:difi:profile:avtalt:avtalt:ver1.0",
        business_message=Avtalt(identifier="foo", content={"innhold": "momomomomo", "del": {"a": "1"}}),
    ),
    "digital": dict(
        receiver=PERSON,
        process=DIGITAL_PROCESS,
        business_message=Digital(
            sikkerhetsnivaa=3,
            hoveddokument="brev.pdf",
            avsender_id="avsender1",
            faktura_referanse="f1",
            tittel="Min tittel",
            spraak="NO",
            digital_post_info={"virkningsdato": "2019-05-12", "aapningskvittering": "false"},
            varsler={"epostTekst": "Varsel", "smsTekst": "Varsel"},
            metadata_filer={"brev.pdf": "meta.xml"},
        ),
    ),
    "digital_dpv": dict(
        receiver=PERSON,
        process=DIGITAL_PROCESS,
        business_message=DigitalDpv(tittel="foo", sammendrag="bar", innhold="foobar"),
    ),
    "print": dict(
        receiver=PERSON,
        process=DIGITAL_PROCESS,
        business_message=Print(
            hoveddokument="brev.pdf",
            avsender_id="avsender1",
            faktura_referanse="f1",
            mottaker={
                "navn": "Ola Nordmann",
                "adresselinje1": "Fjellveien 1",
                "postnummer": "3400",
                "poststed": "FJELLET",
                "land": "Norway",
            },
            utskriftsfarge="SORT_HVIT",
            posttype="B_OEKONOMI",
            retur={
                "mottaker": {"navn": "Avsender", "postnummer": "0195", "poststed": "Oslo"},
                "returhaandtering": "DIREKTE_RETUR",
            },
        ),
    ),
}


@pytest.fixture(params=sorted(SAMPLES))
def sample(request: pytest.FixtureRequest):
    return make_sbd(**SAMPLES[request.param])


def test_every_type_survives_json(sample) -> None:
    assert from_json(to_json(sample)) == sample


def test_every_type_survives_xml(sample) -> None:
    assert from_xml(to_xml(sample)) == sample


def test_scopes_on_behalf_of_and_fractions_survive_both_forms() -> None:
    sbd = make_sbd(
        sender_on_behalf_of="910075918",
        receiver="974760673",
        created=datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        extra_scopes=(
            Scope(type="SenderRef", instance_identifier="ec5e72a3-5772-4bd5-aa33-72094951ca4d"),
            Scope(type="JournalpostId", identifier="2024/17"),
        ),
    )
    assert from_json(to_json(sbd)) == sbd
    assert from_xml(to_xml(sbd)) == sbd
    header = json.loads(to_json(sbd))["standardBusinessDocumentHeader"]
    assert header["sender"][0]["identifier"]["value"] == "0192:910077473:910075918"
    assert header["documentIdentification"]["creationDateAndTime"] == "2024-01-02T03:04:05.123Z"


def test_type_and_standard_follow_the_business_message(sample) -> None:
    assert sample.standard.endswith("::" + sample.message_type)
    wire = json.loads(to_json(sample))
    assert set(wire) == {"standardBusinessDocumentHeader", sample.message_type}


def test_our_xml_header_validates_against_the_sbdh_schema(sample) -> None:
    schema = load_schema(REFERENCE / "schemas" / "sbdh" / "StandardBusinessDocumentHeader.xsd")
    tree = parse_bytes(to_xml(sample))
    assert schema.validate(tree), schema.error_log
    assert tree.getroot()[1].tag == f"{{urn:no:difi:meldingsutveksling:2.0}}{sample.message_type}"


def _sbdh_validator() -> Draft7Validator:
    sbdh = json.loads((REFERENCE / "schemas" / "sbdh.schema.json").read_text(encoding="utf-8"))
    registry = Registry().with_resource(sbdh["$id"], Resource.from_contents(sbdh))
    header_ref = {"$ref": sbdh["$id"] + "#/definitions/standardBusinessDocumentHeader"}
    return Draft7Validator(header_ref, registry=registry, format_checker=FormatChecker())


def test_our_json_header_validates_against_the_reference_json_schema(sample) -> None:
    header = json.loads(to_json(sample))["standardBusinessDocumentHeader"]
    errors = [e.message for e in _sbdh_validator().iter_errors(header)]
    assert errors == []


def test_the_json_schema_check_is_not_toothless() -> None:
    header = json.loads(to_json(make_sbd()))["standardBusinessDocumentHeader"]
    header["receiver"].append(header["receiver"][0])
    header["documentIdentification"]["instanceIdentifier"] = "not-a-uuid"
    assert len(list(_sbdh_validator().iter_errors(header))) == 2


def test_our_avtalt_sbd_validates_against_the_docs_schema() -> None:
    sbdh = json.loads((REFERENCE / "schemas" / "sbdh.schema.json").read_text(encoding="utf-8"))
    avtalt = json.loads((REFERENCE / "schemas" / "eformidling_avtalt.schema.json").read_text(encoding="utf-8"))
    registry = Registry().with_resources(
        [(sbdh["$id"], Resource.from_contents(sbdh)), (avtalt["$id"], Resource.from_contents(avtalt))]
    )
    validator = Draft7Validator(avtalt, registry=registry, format_checker=FormatChecker())
    wire = json.loads(to_json(make_sbd(**SAMPLES["avtalt"])))
    assert [e.message for e in validator.iter_errors(wire)] == []
