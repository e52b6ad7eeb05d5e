"""The gateway's own DPI parts against the sandbox, end to end without the daemon: the registry's person record
says where and to whom, the DPI formats pack and sign, the Corner 2 client sends and polls, and the receipts the
providers issue read back with the formats' reader to the statuses the issue names."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from gateway.channels.dpi import (
    Avsender,
    Digital,
    DpiDocument,
    EpostVarsel,
    ManifestParties,
    PostAdresse,
    Retur,
    Utskrift,
    Varsler,
    build_dokumentpakke,
    build_sbd,
    read_receipt,
    sign_jwt,
)
from gateway.channels.dpi.client import Corner2Client, corner2_client
from gateway.formats.keys import OrgIdentity
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import INFO_PROCESS, MOVED_PERSON, PERSON_WITH_MAILBOX, RESERVED_PERSON, VEDTAK_PROCESS
from tests.dpi_sandbox.conftest import GATEWAY, REGISTRY_SCOPES, token
from tests.dpi_sandbox.support import wait_for
from tests.sandbox.support import Credentials, authorisation_for

PDF = b"%PDF-1.7\n% vedtak\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
def client(network: SandboxNetwork, identity: OrgIdentity) -> Iterator[Corner2Client]:
    with httpx.Client(timeout=30) as http:
        auth = authorisation_for(network.server, Credentials(identity.private_key, [identity.certificate]),
                                 GATEWAY, http)
        yield corner2_client(network.corner2_url, auth, http, GATEWAY)


def record(network: SandboxNetwork, http: httpx.Client, fnr: str, process: str) -> dict[str, Any]:
    """The one record the registry gives for `fnr` and `process` (print when it gives print and DPV)."""
    response = http.get(f"{network.server.registry_url}/identifier/{fnr}/process/{process}",
                        headers={"Authorization": f"Bearer {token(network, http, REGISTRY_SCOPES)}"})
    assert response.status_code == 200, response.text
    records = [r for r in response.json()["serviceRecords"] if r["service"]["identifier"] == "DPI"]
    assert len(records) == 1
    return dict(records[0])


def statuses(client: Corner2Client, message_id: str, count: int, kanal: str) -> list[tuple[str, str]]:
    """(status, receipt type) of the receipts for `message_id`, once `count` have come, each read and verified
    with the formats' reader, then marked read."""
    found: dict[str, Any] = {}

    def arrived() -> bool:
        for incoming in client.incoming(kanal=kanal):
            receipt = read_receipt(incoming.forretningsmelding)
            if receipt.message_id == message_id:
                found[receipt.type] = receipt
        return len(found) >= count

    wait_for(arrived, what=f"{count} receipts")
    client.mark_read(message_id)
    return [(r.status, r.type) for r in sorted(found.values(), key=lambda r: r.timestamp)]


def test_a_digital_letter_is_delivered_and_opened_and_the_mailbox_holds_it_byte_for_byte(
    network: SandboxNetwork, http: httpx.Client, client: Corner2Client, identity: OrgIdentity, tmp_path: Path
) -> None:
    found = record(network, http, PERSON_WITH_MAILBOX, INFO_PROCESS)
    recipient = x509.load_pem_x509_certificate(found["pemCertificate"].encode())
    documents = [DpiDocument("vedtak.pdf", PDF, "application/pdf", "Vedtak"),
                 DpiDocument("vedlegg.txt", "Vedlegg æøå\n".encode(), "text/plain", "Vedlegg")]
    pakke = build_dokumentpakke(documents, ManifestParties(GATEWAY, found["postkasseAdresse"], PERSON_WITH_MAILBOX),
                                identity, recipient, tmp_path / "pakke.cms")
    letter = Digital(Avsender(GATEWAY), found["postkasseAdresse"], "Vedtak fra sandkassen", aapningskvittering=True,
                     varsler=Varsler(epost=EpostVarsel(found["epostAdresse"], "Du har fått et vedtak")),
                     fingerprint=pakke.fingerprint, maskinportentoken=client.tokens())
    message_id = str(uuid.uuid4())
    sbd = build_sbd(letter, sender=GATEWAY, receiver=found["orgnrPostkasse"], message_id=message_id)
    kanal = f"e2e{uuid.uuid4().hex[:20]}"
    client.send(sign_jwt(sbd, identity), pakke.path, kanal=kanal)

    assert network.corner2 is not None
    [delivered] = [m for m in network.corner2.providers.mailbox(PERSON_WITH_MAILBOX) if m.message_id == message_id]
    assert [(d.name, d.path.read_bytes()) for d in delivered.documents] == [(d.name, d.source) for d in documents]
    assert [(n.channel, n.to) for n in delivered.notifications] == [("epost", "kari.postkasse@example.com")]
    assert statuses(client, message_id, 2, kanal) == [
        ("LEVERT", "leveringskvittering"), ("LEST", "aapningskvittering")]


def test_a_vedtak_to_the_reserved_person_goes_to_print_and_is_delivered(
    network: SandboxNetwork, http: httpx.Client, client: Corner2Client, identity: OrgIdentity, tmp_path: Path
) -> None:
    found = record(network, http, RESERVED_PERSON, VEDTAK_PROCESS)
    assert found["fysiskPost"] is True
    message_id, kanal = send_print(client, identity, found, tmp_path)
    assert statuses(client, message_id, 2, kanal) == [
        ("MOTTATT", "mottakskvittering"), ("LEVERT", "leveringskvittering")]


def test_a_print_letter_to_the_moved_person_ends_with_returned_post(
    network: SandboxNetwork, http: httpx.Client, client: Corner2Client, identity: OrgIdentity, tmp_path: Path
) -> None:
    message_id, kanal = send_print(client, identity, record(network, http, MOVED_PERSON, VEDTAK_PROCESS), tmp_path)
    assert statuses(client, message_id, 3, kanal) == [
        ("MOTTATT", "mottakskvittering"), ("LEVERT", "leveringskvittering"), ("FEIL", "returpostkvittering")]


def send_print(client: Corner2Client, identity: OrgIdentity, found: dict[str, Any],
               tmp_path: Path) -> tuple[str, str]:
    """A print letter to the address the print record gives, returned to the address it gives."""
    recipient = x509.load_pem_x509_certificate(found["pemCertificate"].encode())
    to, back = found["postAddress"], found["returnAddress"]
    pakke = build_dokumentpakke([DpiDocument("brev.pdf", PDF, "application/pdf", "Brev")], ManifestParties(GATEWAY),
                                identity, recipient, tmp_path / "print.cms", print_letter=True)
    letter = Utskrift(Avsender(GATEWAY),
                      PostAdresse(to["name"], to["street"], postnummer=to["postalCode"], poststed=to["postalArea"]),
                      Retur(PostAdresse(back["name"], back["street"], postnummer=back["postalCode"],
                                        poststed=back["postalArea"])))
    letter = dataclasses.replace(letter, fingerprint=pakke.fingerprint, maskinportentoken=client.tokens())
    message_id, kanal = str(uuid.uuid4()), f"e2e{uuid.uuid4().hex[:20]}"
    client.send(sign_jwt(build_sbd(letter, sender=GATEWAY, receiver=found["orgnrPostkasse"], message_id=message_id),
                         identity), pakke.path, kanal=kanal)
    return message_id, kanal
