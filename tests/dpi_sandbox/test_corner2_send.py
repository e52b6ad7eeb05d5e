"""The sandbox's Corner 2 takes a DPI message only when what a real access point checks holds, and a good digital
letter ends in the person's mailbox byte for byte."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509

from gateway.devcerts import issue_identity
from gateway.formats.keys import OrgIdentity
from gateway.sandbox.corner2_app import Corner2Service
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import MAILBOX_PROVIDER, PERSON_WITH_MAILBOX
from tests.dpi_sandbox.conftest import GATEWAY, token
from tests.dpi_sandbox.support import (
    Document,
    asice,
    digital_business,
    encrypt,
    message_id_of,
    multipart,
    sbd,
    sign,
    wait_for,
)

MAILBOX_ADDRESS = "kari.postkasse#1AB2"
LETTER = [Document("vedtak.pdf", b"%PDF-1.7\n" + os.urandom(3000) + b"\n%%EOF", title="Vedtak"),
          Document("vedlegg.txt", "Vedlegg med æøå\n".encode(), "text/plain")]
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vectors" / "dpi" / "docs-komplette"


def sbd_id(forretningsmelding: str) -> str:
    return message_id_of(forretningsmelding)


def sign_like(forretningsmelding: str, identity: OrgIdentity) -> str:
    """The same payload signed with another key."""
    return sign(jwt.decode(forretningsmelding, options={"verify_signature": False}), identity)


def corner2(network: SandboxNetwork) -> Corner2Service:
    assert network.corner2 is not None
    return network.corner2


def digital_letter(identity: OrgIdentity, dpi_token: str, recipient: x509.Certificate,
                   documents: list[Document] = LETTER, **extra: Any) -> tuple[str, bytes]:
    """A forretningsmelding and its dokumentpakke for Kari's mailbox, as a gateway sends them."""
    cms = encrypt(asice(documents, GATEWAY, PERSON_WITH_MAILBOX, MAILBOX_ADDRESS), recipient)
    business = digital_business(GATEWAY, MAILBOX_ADDRESS, dpi_token, cms, **extra)
    return sign(sbd("digital", business, GATEWAY, MAILBOX_PROVIDER[0]), identity), cms


def post(network: SandboxNetwork, http: httpx.Client, bearer: str | None, forretningsmelding: str, cms: bytes,
         **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return http.post(f"{network.corner2_url}/messages/out", params=params, headers=headers,
                     files=multipart(forretningsmelding, cms))


def refused_for(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"], response.json()["detail"]


def test_a_good_digital_letter_is_taken_and_the_mailbox_holds_the_documents_byte_for_byte(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    message_id = sbd_id(forretningsmelding)
    response = post(network, http, dpi_token, forretningsmelding, cms)
    assert response.status_code == 201, response.text

    [letter] = [found for found in corner2(network).providers.mailbox(PERSON_WITH_MAILBOX)
                if found.message_id == message_id]
    assert [(d.name, d.path.read_bytes()) for d in letter.documents] == [(d.name, d.content) for d in LETTER]
    assert letter.documents[0].title == "Vedtak" and letter.title == "Brev fra sandkassen"
    assert corner2(network).providers.deliveries(message_id) == 1
    # The same, over the inspection endpoint, byte for byte.
    listed = http.get(f"{network.corner2_url}/_sandbox/mailbox/{PERSON_WITH_MAILBOX}").json()
    [entry] = [found for found in listed if found["messageId"] == message_id]
    assert [d["sha256"] for d in entry["documents"]] == [hashlib.sha256(d.content).hexdigest() for d in LETTER]
    for document in LETTER:
        fetched = http.get(f"{network.corner2_url}/_sandbox/mailbox/{PERSON_WITH_MAILBOX}/{message_id}/"
                           f"{document.name}")
        assert fetched.content == document.content


def test_corner2_says_opprettet_then_sendt_once_it_has_handed_the_message_on(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    assert post(network, http, dpi_token, forretningsmelding, cms).status_code == 201
    url = f"{network.corner2_url}/messages/out/{sbd_id(forretningsmelding)}/statuses"

    def statuses() -> list[str]:
        answer = http.get(url, headers={"Authorization": f"Bearer {dpi_token}"})
        assert answer.status_code == 200
        return [status["status"] for status in answer.json()]

    assert statuses()[0] == "OPPRETTET"
    assert wait_for(lambda: statuses() == ["OPPRETTET", "SENDT"], what="SENDT")


def test_a_forretningsmelding_whose_signature_does_not_hold_is_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    header, payload, _ = forretningsmelding.split(".")
    # Another key signs, but the x5c still names the gateway's certificate.
    impostor = issue_identity(network.pki, GATEWAY, "Sandkasse kommune")
    _, _, foreign_signature = sign_like(forretningsmelding, impostor).split(".")
    refused_for(post(network, http, dpi_token, f"{header}.{payload}.{foreign_signature}", cms),
                "signature does not verify")
    assert not corner2(network).providers.deliveries(sbd_id(forretningsmelding))


def test_a_certificate_outside_the_sandbox_ca_is_refused_even_digdirs_own_example(
    network: SandboxNetwork, http: httpx.Client, dpi_token: str
) -> None:
    forretningsmelding = (REFERENCE / "digital-forretningsmelding.jwt").read_text(encoding="ascii")
    cms = (REFERENCE / "digital-dokumentpakke.cms").read_bytes()
    refused_for(post(network, http, dpi_token, forretningsmelding, cms), "is not trusted")


def test_a_dokumentpakke_that_is_not_the_one_fingerprinted_is_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    other = encrypt(asice(LETTER, GATEWAY, PERSON_WITH_MAILBOX, MAILBOX_ADDRESS), mailbox_certificate)
    refused_for(post(network, http, dpi_token, forretningsmelding, other), "does not match the dokumentpakke")
    flipped = bytearray(cms)
    flipped[-40] ^= 1
    refused_for(post(network, http, dpi_token, forretningsmelding, bytes(flipped)), "does not match the dokumentpakke")


def test_the_bearer_token_needs_the_dpi_scope(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    assert post(network, http, None, forretningsmelding, cms).status_code == 401
    wrong_scope = post(network, http, token(network, http, ("eformidling:dpo",)), forretningsmelding, cms)
    assert wrong_scope.status_code == 403
    assert "digitalpostinnbygger:send" in wrong_scope.json()["detail"]


def test_the_token_inside_the_forretningsmelding_must_carry_the_dpi_scope(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    wrong = token(network, http, ("eformidling:dpo",))
    forretningsmelding, cms = digital_letter(identity, wrong, mailbox_certificate)
    refused_for(post(network, http, dpi_token, forretningsmelding, cms), "maskinportentoken lacks the scope")


def test_a_dokumentpakke_over_50_mb_is_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, _ = digital_letter(identity, dpi_token, mailbox_certificate)
    too_large = bytes(50 * 1024 * 1024 + 1)
    refused_for(post(network, http, dpi_token, forretningsmelding, too_large), "larger than DPI's limit")


def test_the_same_message_id_is_taken_once(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    assert post(network, http, dpi_token, forretningsmelding, cms).status_code == 201
    refused_for(post(network, http, dpi_token, forretningsmelding, cms), "already been sent")
    message_id = sbd_id(forretningsmelding)
    assert corner2(network).store.accepted[message_id] == 1
    assert corner2(network).providers.deliveries(message_id) == 1
    [shown] = [m for m in http.get(f"{network.corner2_url}/_sandbox/messages").json() if m["messageId"] == message_id]
    assert (shown["accepted"], shown["deliveries"], shown["receipts"][0]["type"]) == (1, 1, "leveringskvittering")
    refusals = http.get(f"{network.corner2_url}/_sandbox/stats").json()["refused"]
    assert any(r["messageId"] == message_id and "already been sent" in r["detail"] for r in refusals)


def test_a_bad_kanal_and_a_missing_part_are_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    forretningsmelding, cms = digital_letter(identity, dpi_token, mailbox_certificate)
    refused_for(post(network, http, dpi_token, forretningsmelding, cms, kanal="ikke gyldig"), "kanal may hold only")
    only_jwt = http.post(f"{network.corner2_url}/messages/out", headers={"Authorization": f"Bearer {dpi_token}"},
                         files=[("forretningsmelding", ("sbd.jwt", forretningsmelding.encode(), "application/jwt"))])
    refused_for(only_jwt, "needs both parts")


def test_statuses_of_a_message_corner2_never_had_are_404(network: SandboxNetwork, http: httpx.Client,
                                                         dpi_token: str) -> None:
    answer = http.get(f"{network.corner2_url}/messages/out/{uuid.uuid4()}/statuses",
                      headers={"Authorization": f"Bearer {dpi_token}"})
    assert answer.status_code == 404



def test_a_business_message_without_what_the_schema_requires_is_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate
) -> None:
    cms = encrypt(asice(LETTER, GATEWAY, PERSON_WITH_MAILBOX, MAILBOX_ADDRESS), mailbox_certificate)
    business = digital_business(GATEWAY, MAILBOX_ADDRESS, dpi_token, cms)
    del business["ikkesensitivtittel"]
    forretningsmelding = sign(sbd("digital", business, GATEWAY, MAILBOX_PROVIDER[0]), identity)
    refused_for(post(network, http, dpi_token, forretningsmelding, cms), "lacks ikkesensitivtittel")
