"""Receipts from the sandbox's providers, in the order and at the times a real provider sends them, each signed
and shaped as Digipost's (checked with PyJWT against its x5c, the sandbox CA and Digdir's JSON schemas)."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.x509 import verification

from gateway.formats.keys import OrgIdentity
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import (
    MAILBOX_PROVIDER,
    MOVED_PERSON,
    PERSON_WITH_MAILBOX,
    PRINT_PROVIDER,
    RESERVED_PERSON,
    UNNOTIFIABLE_PERSON,
)
from tests.dpi_sandbox.conftest import GATEWAY, TIMING
from tests.dpi_sandbox.schemas import problems
from tests.dpi_sandbox.support import (
    Document,
    asice,
    digital_business,
    encrypt,
    multipart,
    print_business,
    receipts,
    sbd,
    sign,
    type_of,
    wait_for,
)

LETTER = [Document("brev.pdf", b"%PDF-1.7 brev til innbygger %%EOF", title="Brev")]
ADDRESSES = {
    MOVED_PERSON: {"navn": "Frida Flyttet", "adresselinje1": "Gamleveien 99", "postnummer": "4006",
                   "poststed": "STAVANGER"},
    RESERVED_PERSON: {"navn": "Rolf Reservert", "adresselinje1": "Kirkeveien 12", "postnummer": "5003",
                      "poststed": "BERGEN"},
}
EPOST = {"epostvarsel": {"epostadresse": "varsel@example.com", "varslingstekst": "Du har post", "repetisjoner": [0]}}


def send(network: SandboxNetwork, http: httpx.Client, token: str, forretningsmelding: str, cms: bytes,
         kanal: str) -> None:
    response = http.post(f"{network.corner2_url}/messages/out", params={"kanal": kanal},
                         headers={"Authorization": f"Bearer {token}"}, files=multipart(forretningsmelding, cms))
    assert response.status_code == 201, response.text


def send_digital(network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, token: str,
                 recipient: x509.Certificate, fnr: str, mailbox_address: str, **extra: Any) -> tuple[str, str]:
    """Send a digital letter on a kanal of its own; returns (kanal, conversationId)."""
    kanal, conversation = f"k{uuid.uuid4().hex[:20]}", str(uuid.uuid4())
    cms = encrypt(asice(LETTER, GATEWAY, fnr, mailbox_address), recipient)
    document = sbd("digital", digital_business(GATEWAY, mailbox_address, token, cms, **extra), GATEWAY,
                   MAILBOX_PROVIDER[0], conversation_id=conversation)
    send(network, http, token, sign(document, identity), cms, kanal)
    return kanal, conversation


def send_print(network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, token: str,
               recipient: x509.Certificate, fnr: str) -> tuple[str, str, str]:
    kanal, conversation = f"k{uuid.uuid4().hex[:20]}", str(uuid.uuid4())
    cms = encrypt(asice(LETTER, GATEWAY), recipient)
    document = sbd("utskrift", print_business(GATEWAY, ADDRESSES[fnr], token, cms), GATEWAY, PRINT_PROVIDER[0],
                   conversation_id=conversation)
    forretningsmelding = sign(document, identity)
    send(network, http, token, forretningsmelding, cms, kanal)
    message_id = document["standardBusinessDocument"]["standardBusinessDocumentHeader"]["documentIdentification"][
        "instanceIdentifier"]
    return kanal, conversation, message_id


def checked(network: SandboxNetwork, receipt: dict[str, Any], provider: str, conversation: str) -> str:
    """The receipt's type, after checking it as a gateway must: signature, signer, chain, schema, addressing."""
    header = jwt.get_unverified_header(receipt["jwt"])
    assert header == {"alg": "RS512", "x5c": header["x5c"]} and len(header["x5c"]) == 1
    signer = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    jwt.api_jws.decode(receipt["jwt"], signer.public_key(), algorithms=["RS512"])
    anchors = x509.load_pem_x509_certificates(network.pki.trust_bundle.read_bytes())
    roots = [cert for cert in anchors if cert.subject == cert.issuer]
    intermediates = [cert for cert in anchors if cert.subject != cert.issuer]
    verification.PolicyBuilder().store(verification.Store(roots)).extension_policies(
        ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
        ee_policy=verification.ExtensionPolicy.permit_all(),
    ).build_client_verifier().verify(signer, intermediates)
    assert signer.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == provider
    kind = type_of(receipt)
    document = {"standardBusinessDocument": {key: value for key, value in receipt.items() if key != "jwt"}}
    assert problems(document, kind) == []
    head = receipt["standardBusinessDocumentHeader"]
    assert head["sender"][0]["identifier"]["value"] == f"0192:{provider}"
    assert head["receiver"][0]["identifier"]["value"] == f"0192:{GATEWAY}"
    assert head["businessScope"]["scope"][0]["instanceIdentifier"] == conversation
    return kind


def moment(receipt: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(receipt[type_of(receipt)]["tidspunkt"])


def test_a_digital_letter_is_delivered_at_once_and_opened_after_a_while(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    kanal, conversation = send_digital(network, http, identity, dpi_token, mailbox_certificate, PERSON_WITH_MAILBOX,
                                       "kari.postkasse#1AB2", aapningskvittering=True, varsler=EPOST)
    sent = time.monotonic()
    first = receipts(http, network.corner2_url, dpi_token, kanal=kanal)
    if time.monotonic() - sent < TIMING.open_delay_s:
        assert [type_of(r) for r in first] == ["leveringskvittering"]
    both = wait_for(lambda: (found := receipts(http, network.corner2_url, dpi_token, kanal=kanal)) and
                    len(found) == 2 and found, what="the open receipt")
    assert [checked(network, r, MAILBOX_PROVIDER[0], conversation) for r in both] == [
        "leveringskvittering", "aapningskvittering"]
    opened_after = (moment(both[1]) - moment(both[0])).total_seconds()
    assert abs(opened_after - TIMING.open_delay_s) < 0.01
    assert time.monotonic() - sent >= TIMING.open_delay_s * 0.9  # not shown before its time

    [letter] = [found for found in network.corner2.providers.mailbox(PERSON_WITH_MAILBOX)  # type: ignore[union-attr]
                if found.opened_at is not None and found.notifications and
                found.notifications[0].to == "varsel@example.com"][-1:]
    assert [(n.channel, n.text) for n in letter.notifications] == [("epost", "Du har post")]

    # Both carry the letter's messageId, as Digipost's receipts do; taken under it, Corner 2 offers them no more.
    [letter_id] = {r["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] for r in both}
    assert letter_id == letter.message_id

    def mark_read() -> int:
        return http.post(f"{network.corner2_url}/messages/in/{letter_id}/read",
                         headers={"Authorization": f"Bearer {dpi_token}"}).status_code

    assert mark_read() == 200
    assert receipts(http, network.corner2_url, dpi_token, kanal=kanal) == []
    assert mark_read() == 404


def test_a_letter_without_an_open_receipt_wanted_gets_only_the_delivery_receipt(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    kanal, _ = send_digital(network, http, identity, dpi_token, mailbox_certificate, PERSON_WITH_MAILBOX,
                            "kari.postkasse#1AB2")
    time.sleep(TIMING.open_delay_s + 0.3)
    assert [type_of(r) for r in receipts(http, network.corner2_url, dpi_token, kanal=kanal)] == ["leveringskvittering"]


def test_print_to_the_moved_person_comes_back_as_returned_post(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    print_certificate: x509.Certificate
) -> None:
    kanal, conversation, message_id = send_print(network, http, identity, dpi_token, print_certificate, MOVED_PERSON)
    found = wait_for(lambda: (r := receipts(http, network.corner2_url, dpi_token, kanal=kanal)) and len(r) == 3 and r,
                     what="the returned-post receipt")
    assert [checked(network, r, PRINT_PROVIDER[0], conversation) for r in found] == [
        "mottakskvittering", "leveringskvittering", "returpostkvittering"]
    assert abs((moment(found[1]) - moment(found[0])).total_seconds() - TIMING.print_delay_s) < 0.01
    assert abs((moment(found[2]) - moment(found[0])).total_seconds() - TIMING.return_delay_s) < 0.01
    [job] = [job for job in network.corner2.providers.print_jobs() if job.message_id == message_id]  # type: ignore[union-attr]
    assert job.returned and job.address["navn"] == "Frida Flyttet"
    assert (job.colour, job.post_type) == ("SORT_HVIT", "B")
    assert [d.path.read_bytes() for d in job.documents] == [LETTER[0].content]
    [shown] = [j for j in http.get(f"{network.corner2_url}/_sandbox/print").json() if j["messageId"] == message_id]
    assert (shown["returned"], shown["address"]["postnummer"], shown["retur"]["returposthaandtering"]) == (
        True, "4006", "DIREKTE_RETUR")


def test_print_to_a_person_at_home_is_delivered_and_not_returned(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    print_certificate: x509.Certificate
) -> None:
    kanal, conversation, _ = send_print(network, http, identity, dpi_token, print_certificate, RESERVED_PERSON)
    time.sleep(TIMING.return_delay_s + 0.3)
    found = receipts(http, network.corner2_url, dpi_token, kanal=kanal)
    assert [checked(network, r, PRINT_PROVIDER[0], conversation) for r in found] == [
        "mottakskvittering", "leveringskvittering"]


def test_a_person_who_cannot_be_notified_gets_the_letter_and_the_sender_a_notification_failed_receipt(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    kanal, conversation = send_digital(network, http, identity, dpi_token, mailbox_certificate, UNNOTIFIABLE_PERSON,
                                       "vera.ikkevarslet#3CD4", varsler=EPOST)
    found = receipts(http, network.corner2_url, dpi_token, kanal=kanal)
    assert sorted(checked(network, r, MAILBOX_PROVIDER[0], conversation) for r in found) == [
        "leveringskvittering", "varslingfeiletkvittering"]
    [failed] = [r for r in found if type_of(r) == "varslingfeiletkvittering"]
    assert failed["varslingfeiletkvittering"]["varslingskanal"] == "epost"
    assert "kan ikke varsles" in failed["varslingfeiletkvittering"]["beskrivelse"]


def test_a_package_the_mailbox_cannot_open_gets_a_feil_receipt_and_stays_out_of_the_mailbox(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    print_certificate: x509.Certificate, mailbox_certificate: x509.Certificate
) -> None:
    before = len(network.corner2.providers.mailbox(PERSON_WITH_MAILBOX))  # type: ignore[union-attr]
    wrong_key_kanal, conversation = send_digital(network, http, identity, dpi_token, print_certificate,
                                                 PERSON_WITH_MAILBOX, "kari.postkasse#1AB2")
    [feil] = receipts(http, network.corner2_url, dpi_token, kanal=wrong_key_kanal)
    assert checked(network, feil, MAILBOX_PROVIDER[0], conversation) == "feil"
    assert feil["feil"]["feiltype"] == "KLIENT" and "cannot be decrypted" in feil["feil"]["detaljer"]

    kanal, conversation = f"k{uuid.uuid4().hex[:20]}", str(uuid.uuid4())
    cms = encrypt(asice(LETTER, GATEWAY, PERSON_WITH_MAILBOX, "kari.postkasse#1AB2", tamper="brev.pdf"),
                  mailbox_certificate)
    document = sbd("digital", digital_business(GATEWAY, "kari.postkasse#1AB2", dpi_token, cms), GATEWAY,
                   MAILBOX_PROVIDER[0], conversation_id=conversation)
    send(network, http, dpi_token, sign(document, identity), cms, kanal)
    [feil] = receipts(http, network.corner2_url, dpi_token, kanal=kanal)
    assert "brev.pdf does not match its digest" in feil["feil"]["detaljer"]
    assert len(network.corner2.providers.mailbox(PERSON_WITH_MAILBOX)) == before  # type: ignore[union-attr]


def test_an_unknown_receipt_cannot_be_marked_read(network: SandboxNetwork, http: httpx.Client, dpi_token: str) -> None:
    answer = http.post(f"{network.corner2_url}/messages/in/{uuid.uuid4()}/read",
                       headers={"Authorization": f"Bearer {dpi_token}"})
    assert answer.status_code == 404
