"""arkivmelding.xml: what we build validates against the reference schema; the reference samples read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.errors import MessageFormatError
from gateway.formats.arkivmelding import (
    ArkivmeldingFile,
    ArkivmeldingInfo,
    arkivmelding_problems,
    build_arkivmelding,
    missing_and_unlisted,
    read_arkivmelding,
)
from gateway.xmlsafe import load_schema, parse_bytes

from .conftest import REFERENCE

NS = "{http://www.arkivverket.no/standarder/noark5/arkivmelding}"
CREATED = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
FILES = [
    ArkivmeldingFile("vedlegg.pdf", "Kart"),
    ArkivmeldingFile("brev.pdf", "Brevet", main=True),
    ArkivmeldingFile("bilde.png", "Bilde"),
]


@pytest.fixture(scope="module")
def schema():
    return load_schema(REFERENCE / "schemas" / "arkivmelding.xsd")


def test_built_arkivmelding_validates_against_the_reference_schema(schema) -> None:
    content = build_arkivmelding(title="Nye lysrør", files=FILES, created=CREATED, receiver_name="Elektrikeren AS")
    assert schema.validate(parse_bytes(content)), schema.error_log


def test_the_schema_check_catches_a_broken_arkivmelding(schema) -> None:
    content = build_arkivmelding(title="T", files=FILES, created=CREATED).replace(
        b"Utg\xc3\xa5ende dokument", b"Utgaaende"
    )
    assert not schema.validate(parse_bytes(content))


def test_main_document_first_then_attachments_with_uuid_ids() -> None:
    root = parse_bytes(build_arkivmelding(title="T", files=FILES, created=CREATED)).getroot()
    described = root.findall(f".//{NS}dokumentbeskrivelse")
    assert [d.findtext(f"{NS}tilknyttetRegistreringSom") for d in described] == ["Hoveddokument", "Vedlegg", "Vedlegg"]
    assert [d.findtext(f"{NS}dokumentobjekt/{NS}referanseDokumentfil") for d in described] == [
        "brev.pdf",
        "vedlegg.pdf",
        "bilde.png",
    ]
    assert [d.findtext(f"{NS}tittel") for d in described] == ["Brevet", "Kart", "Bilde"]
    assert root.findtext(f"{NS}antallFiler") == "3"
    ids = [e.text for e in root.iter(f"{NS}systemID")]
    assert len(ids) == len(set(ids)) == 5


def test_public_title_defaults_to_title_and_can_differ() -> None:
    assert read_arkivmelding(build_arkivmelding(title="Sak", files=FILES, created=CREATED)) == ArkivmeldingInfo(
        title="Sak", offentlig_tittel="Sak", file_names=("brev.pdf", "vedlegg.pdf", "bilde.png")
    )
    other = build_arkivmelding(title="Sak om Ola", offentlig_tittel="Sak om *****", files=FILES, created=CREATED)
    assert read_arkivmelding(other).offentlig_tittel == "Sak om *****"


def test_two_main_documents_or_duplicate_names_are_refused() -> None:
    with pytest.raises(MessageFormatError, match="at most one main document"):
        build_arkivmelding(
            title="T",
            created=CREATED,
            files=[ArkivmeldingFile("a", "A", main=True), ArkivmeldingFile("b", "B", main=True)],
        )
    with pytest.raises(MessageFormatError, match="named more than once: a"):
        build_arkivmelding(title="T", created=CREATED, files=[ArkivmeldingFile("a", "A"), ArkivmeldingFile("a", "B")])


@pytest.mark.parametrize(
    ("sample", "title", "public"),
    [
        ("arkivmelding-docs.xml", "En tittel", "En offentlig tittel"),
        ("arkivmelding-ok.xml", "Nye lysrør", "Nye lysrør"),
    ],
)
def test_reference_samples_read(sample: str, title: str, public: str, schema) -> None:
    content = (REFERENCE / "samples" / sample).read_bytes()
    assert schema.validate(parse_bytes(content))
    assert read_arkivmelding(content) == ArkivmeldingInfo(
        title=title, offentlig_tittel=public, file_names=("test.pdf",)
    )


def test_wrong_root_and_malformed_xml_are_refused() -> None:
    with pytest.raises(MessageFormatError, match="root element must be arkivmelding"):
        read_arkivmelding(b"<arkivmelding><tittel>x</tittel></arkivmelding>")
    with pytest.raises(MessageFormatError, match="not well-formed"):
        read_arkivmelding(b"<arkivmelding")


def test_missing_and_unlisted_files() -> None:
    info = ArkivmeldingInfo(title="T", offentlig_tittel=None, file_names=("brev.pdf", "kart.pdf"))
    present = ["brev.pdf", "arkivmelding.xml", "ekstra.txt"]
    assert missing_and_unlisted(info, present) == (["kart.pdf"], ["ekstra.txt"])
    problems = arkivmelding_problems(info, present)
    assert len(problems) == 2
    assert "'kart.pdf'" in problems[0] and "no such file" in problems[0]
    assert "'ekstra.txt'" in problems[1] and "does not name it" in problems[1]
    assert arkivmelding_problems(info, ["brev.pdf", "kart.pdf", "arkivmelding.xml"]) == []
