"""The sandbox broker behaves as the real Altinn broker on Digdir's DPO resource (its default mode):
system-user tokens only, the caller's own sent transfers in the list, a virus scan between upload and
Published, 401 and 400 where the spec says so; the token endpoint grants system-user tokens as
Maskinporten does. `BrokerOptions.lenient()` keeps the older sandbox for plain tokens."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.channels.dpo.client import DPO_RESOURCE_ID, BrokerClient
from gateway.errors import PermanentChannelError
from gateway.sandbox import SandboxCatalogue, SandboxServer
from gateway.sandbox.broker_options import BrokerOptions
from tests.sandbox.support import ALL_SCOPES, DPF_RECEIVER, DPO_RECEIVER, SENDER, Pki, TokenFactory, tokens_for
from tests.sandbox.test_token import GRANT, assertion

A, B = f"0192:{SENDER}", f"0192:{DPO_RECEIVER}"
SPEC = json.loads((Path(__file__).parents[2] / "../shared/reference/api/altinn-broker-v1.json").read_text())
SPEC_401 = SPEC["paths"]["/broker/api/v1/filetransfer/{fileTransferId}"]["get"]["responses"]["401"]["description"]


@pytest.fixture
def alice(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return BrokerClient(sandbox.broker_url, token_client(SENDER), http)


@pytest.fixture
def bob(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client) -> BrokerClient:
    return BrokerClient(sandbox.broker_url, token_client(DPO_RECEIVER), http)


def listed(sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, orgnr: str,
           **query: str) -> list[str]:
    response = http.get(f"{sandbox.broker_url}/filetransfer", params={"resourceId": DPO_RESOURCE_ID, **query},
                        headers={"Authorization": f"Bearer {token_client(orgnr)()}"})
    assert response.status_code == 200, response.text
    return response.json()


def published(alice: BrokerClient, reference: str, content: bytes = b"sbd") -> str:
    transfer_id = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", reference, content)
    assert alice.wait_while_processing(transfer_id, 10)["fileTransferStatus"] == "Published"
    return transfer_id


def test_the_list_holds_the_callers_own_sent_transfers_unless_asked_by_recipient_status(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    first, second = published(alice, "ref-own-1"), published(alice, "ref-own-2")
    mine = listed(sandbox, token_client, http, SENDER, status="Published")
    assert mine.index(second) < mine.index(first), "the sender sees its own transfers, newest first"
    assert first not in listed(sandbox, token_client, http, SENDER, status="Published", recipientStatus="Initialized")
    assert first not in alice.list_incoming(DPO_RESOURCE_ID), "our own sent transfers are not ours to download"
    assert {first, second} <= set(bob.list_incoming(DPO_RESOURCE_ID))


def test_a_downloaded_but_unconfirmed_transfer_is_offered_again_until_confirmed(bob: BrokerClient,
                                                                               alice: BrokerClient) -> None:
    transfer_id = published(alice, "ref-crash-after-download")
    bob.download(transfer_id, io.BytesIO())  # ... and the receiver crashes before it confirms
    assert transfer_id in bob.list_incoming(DPO_RESOURCE_ID)
    bob.confirm_download(transfer_id)
    assert transfer_id not in bob.list_incoming(DPO_RESOURCE_ID)


def test_an_upload_is_scanned_before_it_is_published(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    transfer_id = alice.initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-scan", b"clean")
    overview = alice.overview(transfer_id)
    assert (overview["fileTransferStatus"], overview["fileTransferStatusText"]) == ("UploadProcessing",
                                                                                   "Processing upload")
    assert overview["useVirusScan"] is True
    assert transfer_id not in bob.list_incoming(DPO_RESOURCE_ID)
    with pytest.raises(PermanentChannelError, match=r"HTTP 403.*not ready for download"):
        bob.download(transfer_id, io.BytesIO())
    assert alice.wait_while_processing(transfer_id, 10)["fileTransferStatus"] == "Published"
    assert transfer_id in bob.list_incoming(DPO_RESOURCE_ID)


def test_a_scan_set_to_find_malware_fails_the_transfer_with_the_brokers_words(
    sandbox: SandboxServer, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    settings = http.post(f"{sandbox.url}/broker/_sandbox/scan", json={"failReferences": ["ref-infected"]})
    assert settings.json()["failReferences"] == ["ref-infected"]
    try:
        transfer_id = alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-infected")
        alice.upload(transfer_id, b"EICAR, as far as the sandbox knows")
        overview = alice.wait_while_processing(transfer_id, 10)
        assert overview["fileTransferStatus"] == "Failed"
        assert overview["fileTransferStatusText"].startswith("Malware scan failed: Malicious")
        assert transfer_id not in bob.list_incoming(DPO_RESOURCE_ID)
    finally:
        http.delete(f"{sandbox.url}/broker/_sandbox/scan")
    assert http.post(f"{sandbox.url}/broker/_sandbox/scan", json={"delaySeconds": -1}).status_code == 400


def test_a_transfer_without_a_virus_scan_needs_altinns_approval(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    body = {"fileName": "sbd.zip", "resourceId": DPO_RESOURCE_ID, "sender": A, "recipients": [B],
            "disableVirusScan": True}
    answer = http.post(f"{sandbox.broker_url}/filetransfer", json=body,
                       headers={"Authorization": f"Bearer {token_client(SENDER)()}"})
    assert answer.status_code == 400
    assert "without virus scan" in answer.json()["detail"]


def test_third_parties_get_401_with_the_specs_words_and_a_second_confirm_is_400(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    transfer_id = published(alice, "ref-spec-codes")
    stranger = {"Authorization": f"Bearer {token_client(DPF_RECEIVER)()}"}
    base = f"{sandbox.broker_url}/filetransfer/{transfer_id}"
    for method, url in (("GET", base), ("GET", f"{base}/download"), ("POST", f"{base}/confirmdownload")):
        answer = http.request(method, url, headers=stranger)
        assert answer.status_code == 401, (method, url)
        assert answer.json()["detail"].startswith(SPEC_401)
    receiver = {"Authorization": f"Bearer {token_client(DPO_RECEIVER)()}"}
    early = http.post(f"{base}/confirmdownload", headers=receiver)
    assert (early.status_code, early.json()["detail"]) == (400, "Cannot confirm before the files have been downloaded")
    assert http.get(f"{base}/download", headers=receiver).status_code == 200
    assert http.post(f"{base}/confirmdownload", headers=receiver).status_code == 200
    again = http.post(f"{base}/confirmdownload", headers=receiver)
    assert again.status_code == 400, "the real broker: the transfer is no longer Published"
    bob.confirm_download(transfer_id, B)  # the client takes that 400 for the success it is


def test_a_checksum_must_be_md5_hex(alice: BrokerClient) -> None:
    with pytest.raises(PermanentChannelError, match=r"HTTP 400.*MD5"):
        alice.initialise(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-bad-checksum", checksum="not-md5")


def test_only_system_user_tokens_are_admitted(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    plain = BrokerClient(sandbox.broker_url, token_client(SENDER, system_user=False), http)
    with pytest.raises(PermanentChannelError, match=r"HTTP 401.*names no system user"):
        plain.list_incoming(DPO_RESOURCE_ID)
    claims = jwt.decode(token_client(SENDER)(), options={"verify_signature": False})
    detail = claims["authorization_details"]  # an Altinn token's: one object
    assert detail["type"] == "urn:altinn:systemuser"
    assert detail["systemuser_org"] == {"authority": "iso6523-actorid-upis", "ID": A}


def test_the_token_endpoint_grants_a_system_user_only_to_its_own_organisation(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    def ask(details: object) -> httpx.Response:
        signed = assertion(pki.orgs[SENDER], sandbox.token_audience, scope="altinn:broker.read",
                           extra={"authorization_details": details})
        return http.post(sandbox.token_url, data={"grant_type": GRANT, "assertion": signed})

    own = {"type": "urn:altinn:systemuser", "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": A},
           "externalRef": f"{SENDER}_integrasjonspunkt_systembruker_{SENDER}"}
    assert ask([own]).status_code == 200
    for details, code in (([{**own, "systemuser_org": {"ID": B}}], "MP-302"),
                          ([{**own, "type": "urn:altinn:other"}], "MP-301"), (own, "MP-301"), ([], "MP-301")):
        refused = ask(details)
        assert refused.status_code == 400, details
        assert refused.json()["error_description"].endswith(f"({code})"), details


def test_the_lenient_mode_takes_plain_tokens_and_publishes_at_once(
    tmp_path: Path, catalogue: SandboxCatalogue, pki: Pki, http: httpx.Client
) -> None:
    with SandboxServer(tmp_path, catalogue, broker=BrokerOptions.lenient()) as server:
        def client(orgnr: str) -> BrokerClient:
            tokens = tokens_for(server, pki.orgs[orgnr], orgnr, ALL_SCOPES, http, system_user=False)
            return BrokerClient(server.broker_url, tokens, http)

        transfer_id = client(SENDER).initialise_and_upload(DPO_RESOURCE_ID, A, B, "sbd.zip", "ref-lenient", b"x")
        assert client(DPO_RECEIVER).overview(transfer_id)["fileTransferStatus"] == "Published"
        assert client(DPO_RECEIVER).list_incoming(DPO_RESOURCE_ID) == [transfer_id]


def test_our_own_sent_transfers_never_crowd_an_incoming_one_out_of_the_100_newest(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client, alice: BrokerClient, bob: BrokerClient
) -> None:
    resource = "test-crowding"
    incoming = bob.initialise_and_upload(resource, B, A, "sbd.zip", "ref-for-alice", b"for alice")
    sent = [alice.initialise_and_upload(resource, A, B, "sbd.zip", f"ref-crowd-{n}", b"x") for n in range(100)]
    alice.wait_while_processing(sent[-1], 10)
    everything = http.get(f"{sandbox.broker_url}/filetransfer",
                          params={"resourceId": resource, "status": "Published"},
                          headers={"Authorization": f"Bearer {token_client(SENDER)()}"}).json()
    assert incoming not in everything and len(everything) == 100, "asked by status alone: our own 100 fill it"
    assert alice.list_incoming(resource) == [incoming]
