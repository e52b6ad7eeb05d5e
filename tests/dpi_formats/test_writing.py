"""What we write has the shape of Digdir's examples, and independent tools accept it: PyJWT for the JWT,
`openssl cms` for the envelope, `xmlsec1` for the XAdES signature, the reference JSON schemas for the SBDs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import subprocess
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jwt
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.channels.dpi import (
    Avsender,
    Digital,
    DpiDocument,
    EpostVarsel,
    Fingeravtrykk,
    ManifestParties,
    PostAdresse,
    Retur,
    SmsVarsel,
    Utskrift,
    Varsler,
    build_dokumentpakke,
    build_sbd,
    check_fingerprint,
    read_dokumentpakke,
    read_jwt,
    sign_jwt,
)
from gateway.channels.dpi.package import Dokumentpakke
from gateway.devcerts import DevPki
from gateway.formats.keys import OrgIdentity
from tests.tools import require_tool

from .conftest import KOMPLETTE, MAILBOX, SENDER, VECTORS, example_json, shape

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzY29wZSI6ImRpZ2l0YWxwb3N0aW5uYnlnZ2VyOnNlbmQifQ.c2ln"


def _digital(**changes: object) -> Digital:
    letter = Digital(Avsender(SENDER), "ola.nordmann#9YDT", "Test", spraak="no",
                     virkningstidspunkt=datetime(2026, 12, 7, 0, 0, tzinfo=UTC))
    return dataclasses.replace(letter, **changes)


def _utskrift() -> Utskrift:
    return Utskrift(Avsender(SENDER),
                    PostAdresse("Ola Nordmann", "Liksomveien 22", postnummer="1234", poststed="Nordby"),
                    Retur(PostAdresse("Helse Foretak HF", "Lungehaugen 1", postnummer="4321", poststed="Leikanger")))


def _pack(tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity, documents: list[DpiDocument],
          parties: ManifestParties, print_letter: bool = False) -> Dokumentpakke:
    return build_dokumentpakke(documents, parties, sender, mailbox.certificate, tmp_path / "asic.cms",
                               print_letter=print_letter)


def _letter_jwt(letter: Digital | Utskrift, pakke: Dokumentpakke, sender: OrgIdentity) -> tuple[dict, str]:
    letter = dataclasses.replace(letter, fingerprint=pakke.fingerprint, maskinportentoken=TOKEN)
    sbd = build_sbd(letter, sender=SENDER, receiver=MAILBOX)
    return sbd, sign_jwt(sbd, sender)


def _openssl_decrypt(cms_path: Path, identity: OrgIdentity, tmp_path: Path) -> bytes:
    openssl = require_tool("openssl", package="openssl")
    key, cert, out = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "plain.zip"
    key.write_bytes(identity.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    cert.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
    command = [openssl, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(cms_path), "-inkey", str(key),
               "-recip", str(cert), "-out", str(out)]
    result = subprocess.run(command, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return out.read_bytes()


def _xmlsec_verify(
    folder: Path, names: list[str], trusted: list[Path], at: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    xmlsec = require_tool("xmlsec1", package="xmlsec1")
    command = [xmlsec, "--verify", "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties"]
    for name in names:
        command += [f"--url-map:{name}", str(folder / name)]
    for path in trusted:
        command += ["--trusted-pem", str(path)]
    if at:
        command += ["--verification-gmt-time", at]
    return subprocess.run([*command, str(folder / "META-INF" / "signatures.xml")], capture_output=True, timeout=60)


def test_a_digital_letter_as_digdir_writes_it(tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity,
                                             schema_check) -> None:
    pakke = _pack(tmp_path, sender, mailbox, [DpiDocument("Test.txt", b"Test", "text/plain")],
                  ManifestParties(SENDER, postkasseadresse="ola.nordmann#9YDT", language="no"))
    sbd, token = _letter_jwt(_digital(), pakke, sender)

    # The JWT: the header holds exactly x5c (the leaf only) and alg RS256, and PyJWT verifies it with x5c[0].
    header = jwt.get_unverified_header(token)
    assert list(header) == ["x5c", "alg"] and header["alg"] == "RS256" and len(header["x5c"]) == 1
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert leaf == sender.certificate
    assert jwt.decode(token, key=leaf.public_key(), algorithms=["RS256"]) == sbd

    # The SBD: the structure of Digdir's example, valid by the schema, the fingerprint that of the CMS bytes.
    assert shape(sbd) == shape(example_json("digital"))
    assert schema_check(sbd) == []
    cms_bytes = pakke.path.read_bytes()
    assert sbd["standardBusinessDocument"]["digital"]["dokumentpakkefingeravtrykk"] == {
        "digestMethod": "http://www.w3.org/2001/04/xmlenc#sha256",
        "digestValue": base64.b64encode(hashlib.sha256(cms_bytes).digest()).decode(),
    }
    assert pakke.size == len(cms_bytes)
    check_fingerprint(read_jwt(token), pakke.path)


def test_our_package_has_the_layout_of_digdirs_and_openssl_decrypts_it(tmp_path: Path, sender: OrgIdentity,
                                                                       mailbox: OrgIdentity) -> None:
    parties = ManifestParties("991825827", postkasseadresse="0000487204", language="no")
    pakke = _pack(tmp_path, sender, mailbox, [DpiDocument("Test.txt", b"Test", "text/plain")], parties)
    plain = tmp_path / "ours.zip"
    plain.write_bytes(_openssl_decrypt(pakke.path, mailbox, tmp_path))
    with zipfile.ZipFile(plain) as ours, zipfile.ZipFile(KOMPLETTE / "digital-dokumentpakke.zip") as theirs:
        assert ours.namelist() == theirs.namelist()
        first = ours.infolist()[0]
        assert (first.filename, first.compress_type, first.extra) == ("mimetype", zipfile.ZIP_STORED, b"")
        # The same parties and document give Digdir's manifest.xml byte for byte.
        assert ours.read("manifest.xml") == theirs.read("manifest.xml")
        assert _skeleton(ours.read("META-INF/manifest.xml")) == _skeleton(theirs.read("META-INF/manifest.xml"))
        # signatures.xml: the same elements and attributes in the same places (values aside).
        assert _skeleton(ours.read("META-INF/signatures.xml"), certificates=False) == _skeleton(
            theirs.read("META-INF/signatures.xml"), certificates=False)


def _cms_outline(data: bytes) -> tuple:
    info = asn1_cms.ContentInfo.load(data)
    envelope = info["content"]
    recipient = envelope["recipient_infos"][0].chosen
    oaep = recipient["key_encryption_algorithm"]["parameters"]
    content = envelope["encrypted_content_info"]
    return (data[:2], info["content_type"].native, envelope["version"].native, len(envelope["recipient_infos"]),
            recipient["rid"].name, recipient["key_encryption_algorithm"]["algorithm"].native,
            oaep["hash_algorithm"]["algorithm"].native, oaep["mask_gen_algorithm"]["parameters"]["algorithm"].native,
            content["content_type"].native, content["content_encryption_algorithm"]["algorithm"].native)


def test_our_cms_is_built_as_digdirs(tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity) -> None:
    """BER with indefinite lengths, one recipient by issuer and serial, RSAES-OAEP SHA-256/MGF1-SHA-256, AES-256-CBC."""
    pakke = _pack(tmp_path, sender, mailbox, [DpiDocument("Test.txt", b"Test", "text/plain")], ManifestParties(SENDER))
    theirs = _cms_outline((KOMPLETTE / "digital-dokumentpakke.cms").read_bytes())
    assert _cms_outline(pakke.path.read_bytes()) == theirs
    assert theirs[0] == b"\x30\x80" and theirs[-1] == "aes256_cbc"


def _skeleton(xml: bytes, certificates: bool = True) -> list[tuple[str, tuple[str, ...]]]:
    """Every element's tag, namespace and attribute names in document order; optionally without X509Certificate
    (our dev chain and Buypass's differ in length)."""
    root = etree.fromstring(xml)
    return [(element.tag, tuple(sorted(element.attrib))) for element in root.iter()
            if certificates or not str(element.tag).endswith("X509Certificate")]


def test_manifests_match_digdirs_for_the_sender_identifier_and_print(tmp_path: Path, sender: OrgIdentity,
                                                                     mailbox: OrgIdentity) -> None:
    cases = {
        "digital-avsenderidentifikator": (
            ManifestParties("991825827", postkasseadresse="0000487204", avsenderidentifikator="991825827:avsenderid",
                            language="no"), DpiDocument("Test.txt", b"Test", "text/plain")),
        "utskrift": (ManifestParties("991825827"), DpiDocument("my.pdf", PDF, "application/pdf", title="My PDF")),
    }
    for scenario, (parties, document) in cases.items():
        pakke = _pack(tmp_path, sender, mailbox, [document], parties, print_letter=scenario == "utskrift")
        with zipfile.ZipFile(KOMPLETTE / f"{scenario}-dokumentpakke.zip") as theirs:
            contents = read_dokumentpakke(pakke.path, mailbox.private_key, mailbox.certificate, tmp_path / scenario)
            assert contents.manifest == theirs.read("manifest.xml"), scenario


def test_xmlsec1_verifies_our_xades_signature_and_digdirs(tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity,
                                                          pki: DevPki) -> None:
    big = tmp_path / "vedtak.pdf"
    big.write_bytes(PDF + bytes(range(256)) * 4096)
    documents = [DpiDocument("vedtak.pdf", big, "application/pdf", "Vedtak"),
                 DpiDocument("vedlegg 1.txt", "Vedlegg æøå".encode(), "text/plain")]
    pakke = _pack(tmp_path, sender, mailbox, documents, ManifestParties(SENDER, postkasseadresse="x#1"))
    ours = tmp_path / "ours"
    with zipfile.ZipFile(_decrypted(pakke, mailbox, tmp_path)) as archive:
        archive.extractall(ours)
    names = ["manifest.xml", "vedtak.pdf", "vedlegg 1.txt"]
    result = _xmlsec_verify(ours, names, [pki.ca_certificate])
    assert result.returncode == 0, result.stderr.decode()
    assert b"SignedInfo References (ok/all): 4/4" in result.stderr + result.stdout

    # A document changed after signing: xmlsec1 refuses it too.
    (ours / "vedlegg 1.txt").write_bytes(b"Endret")
    assert _xmlsec_verify(ours, names, [pki.ca_certificate]).returncode != 0

    # Digdir's example, with the Buypass test root and the time it was signed.
    theirs = tmp_path / "theirs"
    with zipfile.ZipFile(KOMPLETTE / "digital-dokumentpakke.zip") as archive:
        archive.extractall(theirs)
    root = VECTORS.parent / "pki" / "ca" / "test" / "buypass-class3-test4-root-ca.pem"
    result = _xmlsec_verify(theirs, ["manifest.xml", "Test.txt"], [root], at="2022-03-16 14:30:00")
    assert result.returncode == 0, result.stderr.decode()


def _decrypted(pakke: Dokumentpakke, identity: OrgIdentity, tmp_path: Path) -> Path:
    path = tmp_path / "decrypted.zip"
    path.write_bytes(_openssl_decrypt(pakke.path, identity, tmp_path))
    return path


def test_a_print_letter_as_digdir_writes_it(tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity,
                                           schema_check) -> None:
    pakke = _pack(tmp_path, sender, mailbox, [DpiDocument("my.pdf", PDF, "application/pdf", "My PDF")],
                  ManifestParties(SENDER), print_letter=True)
    sbd, token = _letter_jwt(_utskrift(), pakke, sender)
    assert shape(sbd) == shape(example_json("utskrift"))
    assert schema_check(sbd) == []
    signed = read_jwt(token)
    assert (signed.type, signed.sender, signed.receiver) == ("utskrift", f"0192:{SENDER}", f"0192:{MAILBOX}")
    contents = read_dokumentpakke(pakke.path, mailbox.private_key, mailbox.certificate, tmp_path / "out")
    assert contents.files[0].path.read_bytes() == PDF
    assert contents.signer == sender.certificate


def _times_parsed(node: object) -> object:
    """Times compared as instants: Java writes 13:19:57.12+02:00 where we may write 13:19:57.120+02:00."""
    if isinstance(node, dict):
        return {key: _times_parsed(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_times_parsed(value) for value in node]
    if isinstance(node, str) and len(node) > 19 and node[4] == "-" and node[10] == "T":
        return datetime.fromisoformat(node)
    return node


@pytest.mark.parametrize("kind", ["digital", "utskrift"])
def test_the_reference_clients_sbd_for_the_same_inputs(kind: str) -> None:
    """DpiClientIT's inputs give the SBD the reference client builds (its fingerprint depends on its random CMS)."""
    expected = json.loads((VECTORS / "ip-dpi-client" / f"{kind}_ready_for_send-sbd.json").read_text())
    body = expected["standardBusinessDocument"][kind]
    if kind == "digital":
        letter: Digital | Utskrift = Digital(
            Avsender("999888999"), "ola.nordmann#9YDT", "ikkeSensitivTittel", spraak="NO",
            virkningstidspunkt=datetime.fromisoformat("2021-01-01T08:00:00+01:00"), virkningsdato=date(2021, 1, 1),
            varsler=Varsler(EpostVarsel("test@epost.no", "Dette er en varslingstekst", (1, 7)),
                            SmsVarsel("12345678", "Dette er en varslingstekst", (1, 7))))
    else:
        letter = Utskrift(
            Avsender("999888999"),
            PostAdresse("navn", "adresselinje1", "adresselinje2", "adresselinje3", "adresselinje4", land="land"),
            Retur(PostAdresse("navn", "adresselinje1", "adresselinje2", "adresselinje3", postnummer="1234",
                              poststed="poststed")))
    fingerprint = Fingeravtrykk(body["dokumentpakkefingeravtrykk"]["digestValue"])
    letter = dataclasses.replace(letter, maskinportentoken="DummyMaskinportenToken", fingerprint=fingerprint)
    ours = build_sbd(letter, sender="987654321", receiver="123456789",
                     message_id="ff88849c-e281-4809-8555-7cd54952b916",
                     conversation_id="37efbd4c-413d-4e2c-bbc5-257ef4a65a45",
                     created=datetime.fromisoformat("2021-05-21T13:19:57.12+02:00"),
                     expected_response=datetime.fromisoformat("2021-04-21T15:29:58.753+02:00"))
    assert _times_parsed(ours) == _times_parsed(expected)



def _cucumber_letter(kind: str) -> Digital | Utskrift:
    """The reference's NextMove input of its Corner 2 scenario, with its configuration (avsenderidentifikator,
    fakturaReferanse, SORT_HVIT, B-post) and its mocks (postkasseadresse "dummy", the token), as our types."""
    message = json.loads((VECTORS / "ip-cucumber" / f"{kind}-scenario1" / "input-nextmove-message.json").read_text())
    avsender = Avsender("910077473", "avsender910077473", "faktura910077473")
    fingerprint = Fingeravtrykk("dummy")
    if kind == "digital":
        body = message["digital"]
        info = body["digitalPostInfo"]
        # The effective date is midnight in Norway, written in UTC; the mocked person gets no notification texts.
        effective = datetime.fromisoformat(info["virkningsdato"]).replace(tzinfo=ZoneInfo("Europe/Oslo"))
        return Digital(avsender, "dummy", body["tittel"], spraak=body["spraak"],
                       sikkerhetsnivaa=body["sikkerhetsnivaa"], virkningstidspunkt=effective.astimezone(UTC),
                       aapningskvittering=info["aapningskvittering"] == "true",
                       fingerprint=fingerprint, maskinportentoken="DummyMaskinportenToken")
    body = message["print"]
    return Utskrift(avsender, PostAdresse(**body["mottaker"]),
                    Retur(PostAdresse(**body["retur"]["mottaker"]), body["retur"]["returhaandtering"]),
                    fingerprint=fingerprint, maskinportentoken="DummyMaskinportenToken")


@pytest.mark.parametrize("kind", ["digital", "utskrift"])
def test_the_sbd_the_reference_sends_to_corner_2_in_its_own_scenarios(kind: str) -> None:
    expected = json.loads((VECTORS / "ip-cucumber" / f"{kind}-scenario1" / "expected-c2-sbd.json").read_text())
    header = expected["standardBusinessDocumentHeader"]
    ours = build_sbd(_cucumber_letter(kind), sender="910077473", receiver="987464291",
                     message_id=header["documentIdentification"]["instanceIdentifier"],
                     conversation_id=header["businessScope"]["scope"][0]["instanceIdentifier"],
                     created=datetime(2019, 3, 25, 11, 38, 23, tzinfo=UTC),
                     expected_response=datetime(2019, 5, 9, 23, 31, 52, tzinfo=UTC))
    assert ours["standardBusinessDocument"] == expected  # every value as the reference writes it


@pytest.mark.parametrize("kind", ["digital", "utskrift"])
def test_the_package_the_reference_sends_in_its_own_scenarios(
    kind: str, tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity
) -> None:
    """The uploads pass through unchanged, with the manifest the reference expects (test.txt is the arkivmelding's
    data file in the digital letter, a vedlegg in the print letter)."""
    folder = VECTORS / "ip-cucumber" / f"{kind}-scenario1"
    documents = [DpiDocument("arkivmelding.xml", folder / "upload-arkivmelding.xml", "application/xml", "Arkivmelding"),
                 DpiDocument("test.txt", folder / "upload-test.txt", "text/plain", "Test", main_data=kind == "digital")]
    parties = ManifestParties("910077473", postkasseadresse="dummy" if kind == "digital" else None,
                              avsenderidentifikator="avsender910077473", fakturareferanse="faktura910077473")
    pakke = build_dokumentpakke(documents, parties, sender, mailbox.certificate, tmp_path / "asic.cms")
    contents = read_dokumentpakke(pakke.path, mailbox.private_key, mailbox.certificate, tmp_path / "out")
    assert sorted(f.name for f in contents.files) == ["arkivmelding.xml", "test.txt"]
    for file in contents.files:
        assert file.path.read_bytes() == (folder / f"expected-asic-{file.name}").read_bytes()
    normal = [etree.tostring(etree.fromstring(re.sub(rb">\s+<", b"><", xml.strip())), method="c14n")
              for xml in (contents.manifest, (folder / "expected-asic-manifest.xml").read_bytes())]
    assert normal[0] == normal[1]
