"""Sending for another organisation in the sandbox as with Maskinporten and Corner 2: a token asked with
`consumer_org` names that organisation as `consumer` and us as `supplier` (Digdir's "på vegne av" example has
that shape); Corner 2 takes a letter only when such a token is delegated from the letter's avsender to its
sender, and keeps the letter, its statuses and receipts for the sender, who polls with its own token."""

from __future__ import annotations

import httpx
import jwt
from cryptography import x509

from gateway.devcerts import dev_identity
from gateway.formats.keys import OrgIdentity
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import MAILBOX_PROVIDER, PERSON_WITH_MAILBOX
from tests.dpi_sandbox.conftest import DPI_SCOPE, GATEWAY
from tests.dpi_sandbox.support import asice, digital_business, encrypt, receipts, sbd, sign, type_of, wait_for
from tests.dpi_sandbox.test_corner2_send import LETTER, MAILBOX_ADDRESS, post, refused_for
from tests.sandbox.support import Credentials, authorisation_for

ON_BEHALF_OF = "910076787"


def delegated_token(network: SandboxNetwork, http: httpx.Client, consumer_org: str) -> str:
    identity = dev_identity(network.pki, GATEWAY)
    auth = authorisation_for(network.server, Credentials(identity.private_key, [identity.certificate]), GATEWAY, http)
    return auth.maskinporten((DPI_SCOPE,), consumer_org=consumer_org)()


def letter_from(avsender: str, identity: OrgIdentity, token: str, recipient: x509.Certificate) -> tuple[str, bytes]:
    cms = encrypt(asice(LETTER, avsender, PERSON_WITH_MAILBOX, MAILBOX_ADDRESS), recipient)
    business = digital_business(avsender, MAILBOX_ADDRESS, token, cms)
    return sign(sbd("digital", business, GATEWAY, MAILBOX_PROVIDER[0]), identity), cms


def test_a_delegated_token_names_the_consumer_and_us_as_supplier(network: SandboxNetwork,
                                                                  http: httpx.Client) -> None:
    claims = jwt.decode(delegated_token(network, http, ON_BEHALF_OF), options={"verify_signature": False})
    assert claims["consumer"]["ID"] == f"0192:{ON_BEHALF_OF}"
    assert claims["supplier"]["ID"] == f"0192:{GATEWAY}"
    assert claims["scope"] == DPI_SCOPE


def test_a_letter_on_behalf_of_its_avsender_is_taken_and_kept_for_the_sender(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, dpi_token: str,
    mailbox_certificate: x509.Certificate,
) -> None:
    delegated = delegated_token(network, http, ON_BEHALF_OF)
    forretningsmelding, cms = letter_from(ON_BEHALF_OF, identity, delegated, mailbox_certificate)
    answer = post(network, http, delegated, forretningsmelding, cms)
    assert answer.status_code == 201, answer.text
    message_id = jwt.decode(forretningsmelding, options={"verify_signature": False})[
        "standardBusinessDocument"]["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"]
    # Ours to poll, with our own token: its statuses and its receipt.
    statuses = http.get(f"{network.corner2_url}/messages/out/{message_id}/statuses",
                        headers={"Authorization": f"Bearer {dpi_token}"})
    assert statuses.status_code == 200
    # A receipt names its letter's message id (instanceIdentifier) and goes to the sender, us.
    mine = wait_for(lambda: [r for r in receipts(http, network.corner2_url, dpi_token)
                             if r["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"]
                             == message_id], what="the letter's receipt")
    assert [type_of(r) for r in mine] == ["leveringskvittering"]
    assert mine[0]["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] == f"0192:{GATEWAY}"
    [letter] = [item for item in http.get(f"{network.corner2_url}/_sandbox/mailbox/{PERSON_WITH_MAILBOX}").json()
                if item["messageId"] == message_id]
    assert (letter["sender"], letter["avsender"], letter["manifestAvsender"]) == (
        GATEWAY, f"0192:{ON_BEHALF_OF}", f"0192:{ON_BEHALF_OF}")


def test_a_token_delegated_by_another_organisation_than_the_avsender_is_refused(
    network: SandboxNetwork, http: httpx.Client, identity: OrgIdentity, mailbox_certificate: x509.Certificate,
) -> None:
    someone_else = delegated_token(network, http, "974760673")
    forretningsmelding, cms = letter_from(ON_BEHALF_OF, identity, someone_else, mailbox_certificate)
    refused_for(post(network, http, someone_else, forretningsmelding, cms),
                f"delegated from 0192:974760673 to 0192:{GATEWAY}, not from the avsender 0192:{ON_BEHALF_OF}")
