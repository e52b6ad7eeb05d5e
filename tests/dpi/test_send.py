"""What the channel puts on the wire: the multipart send with the SBD as a JWT signed by us (x5c = our leaf),
carrying the very Maskinporten token the request carries and the SHA-256 of the CMS it sends beside it; the
letter's options from the sidecar in its business message; and the refusals before anything is built."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from python_multipart.multipart import parse_options_header

from gateway.channels.base import OutgoingMessage
from gateway.channels.dpi.channel import DpiChannel
from gateway.channels.dpi.client import Corner2Client
from gateway.channels.dpi.nextmove import Digital, Print
from gateway.channels.dpi.options import DigitalOptions, DpiOptions, PostalAddress, PrintOptions
from gateway.channels.dpi.print_certificate import PrintCertificates
from gateway.channels.records import ServiceRecord
from gateway.clock import FakeClock
from gateway.devcerts import DevPki, create_dev_pki, dev_identity
from gateway.errors import PermanentChannelError
from gateway.formats.asice import AsicDocument
from gateway.formats.business import Arkivmelding
from gateway.formats.keys import TrustStore
from gateway.formats.sbd import new_sbd
from gateway.trust.receivers import ReceiverTrust

US, MAILBOX, PRINTER = "991825827", "944444505", "944444513"
PERSON = "12857610030"
INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"
DIGITAL = "urn:no:difi:digitalpost:xsd:digital::digital"
PRINT = "urn:no:difi:digitalpost:xsd:fysisk::print"


class Corner2:
    def __init__(self) -> None:
        self.sends: list[httpx.Request] = []
        self.token = "header.token.1"

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/dpi/messages/out":
            request.read()
            self.sends.append(request)
            return httpx.Response(201)
        return httpx.Response(404)

    def parts(self, request: httpx.Request) -> dict[str, bytes]:
        _, options = parse_options_header(request.headers["content-type"])
        boundary = b"--" + options[b"boundary"]
        found = {}
        for chunk in request.content.split(boundary)[1:-1]:
            head, _, body = chunk.partition(b"\r\n\r\n")
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            found[name] = body.removesuffix(b"\r\n")
        return found


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), {US: "Sandkasse kommune", MAILBOX: "Postkasse AS",
                                                           PRINTER: "Utskrift AS"})


@pytest.fixture
def corner2() -> Corner2:
    return Corner2()


@pytest.fixture
def channel(pki: DevPki, corner2: Corner2) -> Iterator[DpiChannel]:
    trust = TrustStore.from_pem_files([pki.trust_bundle])
    clock = FakeClock(datetime(2026, 12, 7, 10, tzinfo=UTC))
    with httpx.Client(transport=httpx.MockTransport(corner2.handle)) as http:
        client = Corner2Client("http://corner2.test/dpi", lambda: corner2.token, http)
        yield DpiChannel(lambda avsender: client, dev_identity(pki, US), US, trust, ReceiverTrust(trust),
                         PrintCertificates(None, http, ReceiverTrust(trust), clock), clock)


def _pem(pki: DevPki, orgnr: str) -> str:
    return dev_identity(pki, orgnr).certificate.public_bytes(serialization.Encoding.PEM).decode()


def mailbox_record(pki: DevPki) -> ServiceRecord:
    return ServiceRecord("DPI", INFO, (DIGITAL,), _pem(pki, MAILBOX), None, None, None, None, None, PERSON, None,
                         {"orgnrPostkasse": MAILBOX, "postkasseAdresse": "kari#1AB2", "kanVarsles": True,
                          "epostAdresse": "kari@example.com", "mobilnummer": "+4799000001"})


def print_record(pki: DevPki) -> ServiceRecord:
    return ServiceRecord("DPI", INFO, (PRINT,), _pem(pki, PRINTER), None, None, None, None, None, PERSON, None,
                         {"orgnrPostkasse": PRINTER, "fysiskPost": True,
                          "postAddress": {"name": "Kari", "street": "Storgata 1", "postalCode": "0155",
                                          "postalArea": "OSLO", "country": "NORGE"},
                          "returnAddress": {"name": "Kommunen", "street": "Postboks 1", "postalCode": "0101",
                                            "postalArea": "OSLO"}})


def letter(documents: list[AsicDocument], options: DpiOptions | None = None, kind: str = "digital") -> OutgoingMessage:
    business = Digital(hoveddokument=documents[0].name) if kind == "digital" else Print(
        hoveddokument=documents[0].name)
    sbd = new_sbd(sender=US, receiver=PERSON, business_message=business, process=INFO,
                  created=datetime(2026, 12, 7, 10, tzinfo=UTC))
    return OutgoingMessage(sbd, documents, title="Svar på søknad", options={"dpi": options} if options else {})


def test_the_send_carries_the_headers_token_and_the_cms_fingerprint_in_a_jwt_we_signed(
        pki: DevPki, corner2: Corner2, channel: DpiChannel, tmp_path: Path) -> None:
    options = DpiOptions(digital=DigitalOptions(title="Brev", language="EN", open_receipt=True,
                                                notification_channels="Sms", sms_text="Nytt brev"))
    message = letter([AsicDocument("brev.pdf", b"%PDF-1.4 brev", "application/pdf")], options)
    assert channel.validate(message, mailbox_record(pki)) == []
    package = channel.prepare(message, mailbox_record(pki), tmp_path)
    remembered: list[str] = []
    reference = channel.send(package, None, remembered.append)
    assert remembered == [reference] == [f"{message.sbd.message_id}/{MAILBOX}"]

    [request] = corner2.sends
    assert request.headers["authorization"] == f"Bearer {corner2.token}"
    parts = corner2.parts(request)
    token = parts["forretningsmelding"].decode()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and len(header["x5c"]) == 1
    ours = dev_identity(pki, US).certificate
    assert base64.b64decode(header["x5c"][0]) == ours.public_bytes(serialization.Encoding.DER)
    payload = jwt.decode(token, key=ours.public_key(), algorithms=["RS256"])
    sbd = payload["standardBusinessDocument"]
    digital = sbd["digital"]
    assert digital["maskinportentoken"] == corner2.token
    assert digital["dokumentpakkefingeravtrykk"]["digestValue"] == base64.b64encode(
        hashlib.sha256(parts["dokumentpakke"]).digest()).decode()
    assert digital["ikkesensitivtittel"] == "Brev" and digital["spraak"] == "EN" and digital["aapningskvittering"]
    assert digital["mottaker"]["postkasseadresse"] == "kari#1AB2"
    assert digital["varsler"]["smsvarsel"]["varslingstekst"] == "Nytt brev"
    assert "epostvarsel" not in digital["varsler"]
    receiver = sbd["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"]
    assert receiver == f"0192:{MAILBOX}"
    assert PERSON not in channel.describe(package)


def test_a_print_letter_takes_the_sidecars_addresses_and_choices(pki: DevPki, corner2: Corner2,
                                                                 channel: DpiChannel, tmp_path: Path) -> None:
    returned = PostalAddress("Eigedomsskattekontoret", ("Postboks 9",), "0102", "OSLO")
    options = DpiOptions(print=PrintOptions(return_address=returned, colour="FARGE", post_type="A",
                                            returned_post="MAKULERING_MED_MELDING"))
    message = letter([AsicDocument("vedtak.pdf", b"%PDF-1.4 vedtak", "application/pdf")], options, kind="print")
    package = channel.prepare(message, print_record(pki), tmp_path)
    channel.send(package, None, lambda reference: None)
    token = corner2.parts(corner2.sends[0])["forretningsmelding"].decode()
    utskrift = jwt.decode(token, options={"verify_signature": False})["standardBusinessDocument"]["utskrift"]
    assert utskrift["mottaker"]["navn"] == "Kari" and utskrift["mottaker"]["postnummer"] == "0155"
    assert utskrift["retur"]["mottaker"]["navn"] == "Eigedomsskattekontoret"
    assert utskrift["retur"]["returposthaandtering"] == "MAKULERING_MED_MELDING"
    assert (utskrift["utskriftstype"], utskrift["posttype"]) == ("FARGE", "A")
    assert "printed by 944444513 and posted (A-post, FARGE)" in channel.describe(package)


@pytest.mark.parametrize(("documents", "record", "words"), [
    ([AsicDocument("brev.txt", b"text", "text/plain")], "print", "cannot be printed"),
    ([AsicDocument("run.exe", b"MZ", "application/octet-stream")], "digital", "executable"),
    ([AsicDocument("stor.pdf", b"%PDF" + bytes(50 * 1024 * 1024), "application/pdf")], "digital",
     "DPI takes at most 52428800 bytes"),
], ids=["print-of-text", "program", "over-50-MB"])
def test_refused_before_anything_is_built_or_sent(pki: DevPki, corner2: Corner2, channel: DpiChannel,
                                                  documents: list[AsicDocument], record: str, words: str) -> None:
    service = print_record(pki) if record == "print" else mailbox_record(pki)
    [problem] = channel.validate(letter(documents), service)
    assert problem.startswith("refused before anything was sent") and words in problem
    assert corner2.sends == []


def test_an_arkivmelding_is_not_a_letter(pki: DevPki, channel: DpiChannel) -> None:
    message = letter([AsicDocument("brev.pdf", b"%PDF", "application/pdf")])
    sbd = new_sbd(sender=US, receiver=PERSON, business_message=Arkivmelding(), process=INFO,
                  created=datetime(2026, 12, 7, tzinfo=UTC))
    arkivmelding = OutgoingMessage(sbd, message.documents)
    assert "DPI carries letters to citizens" in channel.validate(arkivmelding, mailbox_record(pki))[0]


def test_a_mailbox_certificate_of_another_organisation_is_refused_before_encrypting(
        pki: DevPki, channel: DpiChannel, tmp_path: Path) -> None:
    record = mailbox_record(pki)
    foreign = dataclasses.replace(record, certificate_pem=_pem(pki, PRINTER))
    message = letter([AsicDocument("brev.pdf", b"%PDF-1.4 brev", "application/pdf")])
    with pytest.raises(PermanentChannelError, match="belongs to 944444513, not to 944444505"):
        channel.prepare(message, foreign, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was built
