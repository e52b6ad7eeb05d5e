"""Digdir's published DPI examples and Digipost's real receipts, read and verified by our own code."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.channels.dpi import (
    Digital,
    Utskrift,
    business_from_json,
    check_fingerprint,
    check_sender,
    read_asice,
    read_dokumentpakke,
    read_jwt,
    read_receipt,
    sign_jwt,
)
from gateway.errors import SecurityError
from gateway.formats import cms
from gateway.formats.keys import OrgIdentity

from .conftest import KOMPLETTE, RECEIPTS, SCENARIOS, SIGNED_AT, VECTORS, example_json

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _jwt(scenario: str) -> str:
    return (KOMPLETTE / f"{scenario}-forretningsmelding.jwt").read_text()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_digdir_forretningsmelding_verifies_and_reads_as_its_json(scenario: str) -> None:
    signed = read_jwt(_jwt(scenario), at=SIGNED_AT[scenario])
    assert signed.algorithm == "RS256"
    assert signed.sbd == example_json(scenario)
    assert signed.type == ("utskrift" if scenario == "utskrift" else "digital")
    letter = business_from_json(signed.type, signed.business)
    assert isinstance(letter, Utskrift if scenario == "utskrift" else Digital)
    assert letter.to_json() == signed.business  # nothing lost or added reading and writing it again


@pytest.mark.parametrize(
    ("scenario", "orgnr"),
    [("digital", "991825827"), ("digital-avsenderidentifikator", "991825827"),
     ("digital-pa-vegne-av", "810969342"),  # the data processor, not the avsender 910076787 it sends for
     ("utskrift", "991825827")],  # only in organizationIdentifier NTRNO-991825827
)
def test_the_signer_is_the_sbd_sender(scenario: str, orgnr: str) -> None:
    assert check_sender(read_jwt(_jwt(scenario))) == orgnr


def test_a_jwt_signed_by_another_organisation_than_its_sender_is_refused(sender: OrgIdentity) -> None:
    with pytest.raises(SecurityError, match="signed by organisation 910077473, but its SBD says it is from 991825827"):
        check_sender(read_jwt(sign_jwt(example_json("digital"), sender)))


def test_digipost_receipt_certificates_name_no_organisation() -> None:
    with pytest.raises(SecurityError, match="names no organisation number"):
        check_sender(read_jwt((RECEIPTS / "feil.jwt").read_text()))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_digdir_examples_are_refused_when_read_at_todays_date(scenario: str) -> None:
    with pytest.raises(SecurityError, match="not valid at"):
        read_jwt(_jwt(scenario), at=NOW)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_fingerprint_is_the_sha256_of_the_cms_not_of_the_zip(scenario: str) -> None:
    signed = read_jwt(_jwt(scenario))
    check_fingerprint(signed, KOMPLETTE / f"{scenario}-dokumentpakke.cms")
    zip_digest = base64.b64encode(hashlib.sha256((KOMPLETTE / f"{scenario}-dokumentpakke.zip").read_bytes()).digest())
    assert signed.business["dokumentpakkefingeravtrykk"]["digestValue"] != zip_digest.decode()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_digdir_dokumentpakke_decrypts_to_its_zip_and_its_xades_verifies(
    scenario: str, eksempel: OrgIdentity, tmp_path: Path
) -> None:
    plain = io.BytesIO()
    with open(KOMPLETTE / f"{scenario}-dokumentpakke.cms", "rb") as envelope:
        cms.decrypt_stream(envelope, plain, eksempel.private_key, eksempel.certificate)
    assert plain.getvalue() == (KOMPLETTE / f"{scenario}-dokumentpakke.zip").read_bytes()

    contents = read_dokumentpakke(KOMPLETTE / f"{scenario}-dokumentpakke.cms", eksempel.private_key,
                                  eksempel.certificate, tmp_path / "out", at=SIGNED_AT[scenario])
    expected = {"utskrift": ("my.pdf", "application/pdf")}.get(scenario, ("Test.txt", "text/plain"))
    assert [(f.name, f.mime_type) for f in contents.files] == [expected]
    with zipfile.ZipFile(KOMPLETTE / f"{scenario}-dokumentpakke.zip") as archive:
        assert contents.files[0].path.read_bytes() == archive.read(expected[0])
    # The XAdES signer is the JWT's signer (README: "The XAdES signing certificate equals the JWT x5c[0]").
    assert contents.signer == read_jwt(_jwt(scenario)).certificate
    assert len(contents.chain) == 2  # KeyInfo carries the CA and the root too


def test_a_cms_with_one_byte_changed_does_not_match_the_fingerprint(tmp_path: Path) -> None:
    altered = bytearray((KOMPLETTE / "digital-dokumentpakke.cms").read_bytes())
    altered[-40] ^= 0x01
    with pytest.raises(SecurityError, match="does not match the fingerprint"):
        check_fingerprint(read_jwt(_jwt("digital")), bytes(altered))


def test_a_forretningsmelding_paired_with_another_package_is_refused() -> None:
    with pytest.raises(SecurityError, match="does not match the fingerprint"):
        check_fingerprint(read_jwt(_jwt("digital")), KOMPLETTE / "digital-avsenderidentifikator-dokumentpakke.cms")


def test_a_jwt_with_a_changed_payload_is_refused() -> None:
    header, payload, signature = _jwt("digital").split(".")
    sbd = example_json("digital")
    sbd["standardBusinessDocument"]["digital"]["ikkesensitivtittel"] = "Endret"
    forged = base64.urlsafe_b64encode(json.dumps(sbd).encode()).rstrip(b"=").decode()
    with pytest.raises(SecurityError, match="signature does not verify"):
        read_jwt(f"{header}.{forged}.{signature}")
    assert payload != forged


def test_a_package_with_a_changed_document_fails_its_xades_digest(tmp_path: Path) -> None:
    source = KOMPLETTE / "digital-dokumentpakke.zip"
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(altered, "w") as copy:
        for info in original.infolist():
            data = b"Tost" if info.filename == "Test.txt" else original.read(info)
            copy.writestr(info, data)
    read_asice(source, tmp_path / "good")  # the original reads
    with pytest.raises(SecurityError, match=r"digest of 'Test\.txt' does not match"):
        read_asice(altered, tmp_path / "bad")


def test_the_old_sdp_package_without_mimetype_reads_too(tmp_path: Path) -> None:
    contents = read_asice(VECTORS / "legacy-sdp" / "post.asice.zip", tmp_path / "out")
    assert contents.main_document == "hoveddokument.txt"
    assert len(contents.files) == 5
    assert "991825827" in contents.signer.subject.rfc4514_string()


# Digipost's receipts: type -> (status, timestamp, words the description must carry)
DIGIPOST = {
    "feil": ("FEIL", "2021-01-14T10:13:19.475+00:00", ["SERVER", "Digipost could not process the message."]),
    "mottakskvittering": ("MOTTATT", "2021-11-15T14:00:44.491+00:00", ["print service"]),
    "aapningskvittering": ("LEST", "2021-11-15T14:00:44.295+00:00", ["opened"]),
    "leveringskvittering": ("LEVERT", "2021-11-15T14:00:43.907+00:00", ["delivered to the citizen's digital mailbox"]),
    "returpostkvittering": ("FEIL", "2021-11-15T14:00:44.678+00:00", ["returned post"]),
    "varslingfeiletkvittering": ("ANNET", "2021-11-15T14:00:44.101+00:00", ["epost", "Pføy", "delivered"]),
}


@pytest.mark.parametrize("kind", sorted(DIGIPOST))
def test_digipost_receipts_verify_and_map_to_our_statuses(kind: str) -> None:
    status, timestamp, words = DIGIPOST[kind]
    token = (RECEIPTS / f"{kind}.jwt").read_text()
    signed = read_jwt(token, at=datetime(2021, 11, 15, tzinfo=UTC))
    assert signed.algorithm == "RS512"
    receipt = read_receipt(token)
    assert (receipt.type, receipt.status, receipt.timestamp) == (kind, status, datetime.fromisoformat(timestamp))
    assert receipt.description.startswith(f"{kind}: ")
    for word in words:
        assert word in receipt.description
    assert receipt.provider == "0192:984661185"
    assert receipt.message_id == signed.message_id


def test_a_receipt_with_a_changed_status_is_refused() -> None:
    header, payload, signature = (RECEIPTS / "feil.jwt").read_text().split(".")
    sbd = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    sbd["standardBusinessDocument"]["feil"]["detaljer"] = "nothing wrong"
    forged = base64.urlsafe_b64encode(json.dumps(sbd).encode()).rstrip(b"=").decode()
    with pytest.raises(SecurityError, match="signature does not verify"):
        read_receipt(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_digdir_sbds_are_valid_by_the_reference_schemas(scenario: str, schema_check) -> None:
    assert schema_check(read_jwt(_jwt(scenario)).sbd) == []


@pytest.mark.parametrize("kind", sorted(DIGIPOST))
def test_digipost_receipts_are_valid_by_the_reference_schemas(kind: str, schema_check) -> None:
    assert schema_check(read_jwt((RECEIPTS / f"{kind}.jwt").read_text()).sbd) == []


def test_the_schema_check_refuses_the_reference_clients_broken_feil(schema_check) -> None:
    broken = json.loads((VECTORS / "ip-dpi-client" / "feil-sbd.json").read_text())
    problems = schema_check(broken)
    assert any("'digital'" in problem for problem in problems)
    assert any("'feil' is a required property" in problem for problem in problems)
