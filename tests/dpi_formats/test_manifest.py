"""The SDP manifest.xml we write equals the ones the reference client and the SDP client expect, and is XSD-valid."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from gateway.channels.dpi import DpiDocument, DpiFormatError, ManifestParties, check_documents
from gateway.channels.dpi.package import sdp_manifest
from gateway.xmlsafe import load_schema, parse_bytes

from .conftest import VECTORS

XSD = VECTORS / "reference" / "xsd" / "sdp-manifest.xsd"
REFERENCE_PARTIES = dict(avsender_orgnr="910077473", avsenderidentifikator="avsender910077473",
                         fakturareferanse="faktura910077473")
ARKIVMELDING = DpiDocument("arkivmelding.xml", b"<arkivmelding/>", "application/xml", "Arkivmelding")
CASES = {
    # ip-cucumber: test.txt is the arkivmelding's data in a digital letter, a vedlegg in a print letter
    "ip-cucumber/digital-scenario1/expected-asic-manifest.xml": (
        ManifestParties(postkasseadresse="dummy", **REFERENCE_PARTIES),
        [ARKIVMELDING, DpiDocument("test.txt", b"Test", "text/plain", main_data=True)]),
    "ip-cucumber/utskrift-scenario1/expected-asic-manifest.xml": (
        ManifestParties(**REFERENCE_PARTIES), [ARKIVMELDING, DpiDocument("test.txt", b"Test", "text/plain", "Test")]),
    "legacy-sdp/expected-asic-manifest.xml": (
        ManifestParties("9908:123456789", postkasseadresse="123456", personidentifikator="11077941012",
                        avsenderidentifikator="0123456789", fakturareferanse="ØK1"),
        [DpiDocument("vedtak_2398324.pdf", b"%PDF-", "application/pdf", "Vedtak"),
         DpiDocument("lenke.xml", b"<lenke/>", "application/vnd.difi.dpi.lenke+xml", main_data=True),
         DpiDocument("info.html", b"<p/>", "text/html", "informasjon"),
         DpiDocument("journal.txt", b"j", "text/plain", "journal")]),
}


def _canonical(xml: bytes) -> bytes:
    return etree.tostring(parse_bytes(re.sub(rb">\s+<", b"><", xml.strip())), method="c14n")


@pytest.mark.parametrize("expected", sorted(CASES))
def test_our_manifest_equals_the_expected_one(expected: str) -> None:
    parties, documents = CASES[expected]
    ours = sdp_manifest(parties, documents)
    assert _canonical(ours) == _canonical((VECTORS / expected).read_bytes())
    schema = load_schema(XSD)
    assert schema.validate(parse_bytes(ours)), schema.error_log


def test_only_one_data_file_and_never_the_main_document() -> None:
    with pytest.raises(DpiFormatError, match="at most one data file"):
        sdp_manifest(ManifestParties("910077473"), [DpiDocument("a.xml", b"", "application/xml", main_data=True)])


def test_the_xsd_refuses_what_it_should() -> None:
    """The schema check above can fail: a manifest without its main document is invalid."""
    broken = re.sub(rb"<hoveddokument.*</hoveddokument>", b"", (VECTORS / sorted(CASES)[0]).read_bytes(), flags=re.S)
    assert not load_schema(XSD).validate(parse_bytes(broken))


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ManifestParties("910077473", language="nob"), "two-letter ISO 639-1"),
        (lambda: ManifestParties("910077473", avsenderidentifikator="x" * 101), "avsenderidentifikator"),
        (lambda: ManifestParties("910077473", fakturareferanse="x" * 41), "fakturaReferanse"),
        (lambda: check_documents([DpiDocument("a.b", b"x", "text/plain")]), "names of 4 to 100 characters"),
        (lambda: check_documents([DpiDocument("x" * 97 + ".pdf", b"x", "application/pdf")]), "4 to 100"),
        (lambda: check_documents([DpiDocument("brev.pdf", b"x", "pdf")]), "no usable MIME type"),
        (lambda: check_documents([DpiDocument("brev.pdf", b"x", "application/pdf", "")]), "title"),
    ],
)
def test_what_the_xsd_would_refuse_is_refused_before_with_words(build, words: str) -> None:
    with pytest.raises(DpiFormatError, match=words):
        build()


def test_the_longest_names_and_titles_we_accept_are_xsd_valid() -> None:
    documents = [DpiDocument("x" * 96 + ".pdf", b"%PDF-", "application/pdf", "T" * 255),
                 DpiDocument("a.pd", b"x", "application/" + "y" * 88)]
    check_documents(documents)
    parties = ManifestParties("910077473", postkasseadresse="p", avsenderidentifikator="a" * 100,
                              fakturareferanse="f" * 40, language="en")
    schema = load_schema(XSD)
    assert schema.validate(parse_bytes(sdp_manifest(parties, documents))), schema.error_log
