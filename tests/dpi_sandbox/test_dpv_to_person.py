"""A citizen the registry sends to DPV (no active mailbox) can be reached in Altinn on the sandbox too."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.channels.dpv.client import CORRESPONDENCE_READ_SCOPE, CORRESPONDENCE_WRITE_SCOPE, CorrespondenceClient
from gateway.channels.dpv.models import Attachment
from gateway.devcerts import dev_identity
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import PERSON_WITHOUT_MAILBOX
from tests.dpi_sandbox.conftest import GATEWAY
from tests.sandbox.support import Credentials, tokens_for


def test_a_correspondence_to_the_person_without_a_mailbox_is_published(
    network: SandboxNetwork, http: httpx.Client, tmp_path: Path
) -> None:
    identity = dev_identity(network.pki, GATEWAY)
    tokens = tokens_for(network.server, Credentials(identity.private_key, [identity.certificate]), GATEWAY,
                        (CORRESPONDENCE_WRITE_SCOPE, CORRESPONDENCE_READ_SCOPE), http, system_user=False)
    client = CorrespondenceClient(network.correspondence_url, tokens, http)
    letter = tmp_path / "brev.pdf"
    letter.write_bytes(b"%PDF-1.7 brev")
    correspondence = client.upload(
        resource_id="eformidling-dpv-administrasjon", sender=GATEWAY, recipient=PERSON_WITHOUT_MAILBOX,
        title="Brev", summary="Brev", body="Brev", message_id="5b0e4c1e-6a0f-4c5e-8f4e-2d6b9f1a7c01",
        attachments=[Attachment("brev.pdf", "Brev", "application/pdf", letter)],
    )
    details = client.details(correspondence)
    assert details.status == "Published"
    assert details.recipient == f"urn:altinn:person:identifier-no:{PERSON_WITHOUT_MAILBOX}"
