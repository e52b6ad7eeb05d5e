"""DPV end to end: a real gateway process sends to DPV-only organisations through a real sandbox
process: the route and its reason, the correspondence with its attachments and notification, and
the statuses polled from Altinn (LEVERT, LEST, FEIL)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.clock import SystemClock
from gateway.sandbox.correspondence_store import CorrespondenceStore
from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import NS, current, history, status_of
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

DPV_ONLY = "974760673"  # Postkasse AS: only an Altinn mailbox
DPV_FAILING = "921000014"  # its mailbox cannot take correspondences


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpv")
    sandbox = SandboxProcess(root / "sandbox")
    gateway = Gateway(root / "a", gateway_config(root / "a", sandbox, A)).start()
    try:
        yield sandbox, gateway
    finally:
        gateway.process.stop()
        sandbox.stop()


def _drop(gateway: Gateway, name: str, receiver: str, extra: str = "", documents: dict | None = None) -> str:
    message_id = str(uuid.uuid4())
    documents = documents or {"vedtak.pdf": pdf_bytes("vedtak")}
    listed = [
        {"file": file, "main": index == 0, "mime": "application/pdf"} for index, file in enumerate(documents)
    ]
    sidecar = sidecar_xml(receiver=receiver, documents=listed, extra=f"<messageId>{message_id}</messageId>{extra}")
    make_folder_drop(gateway.outbox, name, files=documents, sidecar=sidecar, staging=gateway.root / "staging")
    return message_id


def test_a_drop_to_a_dpv_only_organisation_is_read_in_altinn_with_its_notification_and_attachments(network):
    sandbox, gateway = network
    documents = {"vedtak.pdf": pdf_bytes("vedtak om løyve"), "kart.pdf": pdf_bytes("kart") * 50}
    dpv = (
        "<dpv><notificationText>Vedtak om løyve ligg i Altinn</notificationText><daysToReply>14</daysToReply></dpv>"
    )
    message_id = _drop(gateway, "til-postkasse", DPV_ONLY, dpv, documents)

    wait(lambda: current(gateway.status, message_id) == "LEST", timeout=60, message="LEST through DPV")
    assert history(gateway.status, message_id) == ["OPPRETTET", "SENDT", "LEVERT", "LEST"]
    root = status_of(gateway.status, message_id)
    assert root.findtext("s:route/s:channel", namespaces=NS) == "DPV"
    reason = root.findtext("s:route/s:reason", namespaces=NS)
    assert "no DPO record" in reason and "DPV" in reason and "notified by e-mail and SMS" in reason

    [summary] = [c for c in httpx.get(f"{sandbox.url}/correspondence/_sandbox/correspondences", timeout=10).json()
                 if c["sendersReference"] == message_id]
    assert summary["sender"].endswith(A) and summary["recipient"].endswith(DPV_ONLY)
    assert summary["resourceId"] == "eformidling-dpv-administrasjon"

    notifications = httpx.get(f"{sandbox.url}/correspondence/_sandbox/notifications",
                              params={"recipient": DPV_ONLY}, timeout=10).json()
    [notification] = [n for n in notifications if n["correspondenceId"] == summary["correspondenceId"]]
    assert notification["notificationChannel"] == "EmailAndSms"
    assert notification["emailBody"] == "Vedtak om løyve ligg i Altinn"
    assert notification["smsBody"] == "Vedtak om løyve ligg i Altinn"

    store = CorrespondenceStore(sandbox.data / "server" / "correspondence", SystemClock())
    try:
        stored = store.get(summary["correspondenceId"])
    finally:
        store.close()
    assert stored is not None
    assert [a.file_name for a in stored.attachments] == ["vedtak.pdf", "kart.pdf"], "main document first"
    for attachment in stored.attachments:
        assert attachment.path.read_bytes() == documents[attachment.file_name], "stored byte-identical"
    assert stored.request["content"]["messageTitle"] == "Test", "the sidecar's title"
    assert stored.request["dueDateTime"] is not None, "daysToReply became the due date"


def test_a_correspondence_that_altinn_fails_ends_as_feil_with_altinns_reason(network):
    _sandbox, gateway = network
    message_id = _drop(gateway, "til-stengt-postkasse", DPV_FAILING)
    wait(lambda: current(gateway.status, message_id) == "FEIL", timeout=60, message="FEIL through DPV")
    root = status_of(gateway.status, message_id)
    assert root.findtext("s:route/s:channel", namespaces=NS) == "DPV"
    errors = " ".join(e.text for e in root.findall("s:errors/s:error", NS))
    assert "Altinn could not deliver correspondence" in errors


def test_security_level_4_to_an_organisation_without_dpo_is_feil_never_a_silent_dpv(network):
    _sandbox, gateway = network
    message_id = _drop(gateway, "niva-4", DPV_ONLY, "<securityLevel>4</securityLevel>")
    wait(lambda: current(gateway.status, message_id) == "FEIL", timeout=60, message="FEIL for level 4")
    root = status_of(gateway.status, message_id)
    errors = " ".join(e.text for e in root.findall("s:errors/s:error", NS))
    assert "security level 4 may not go to the Altinn mailbox (DPV)" in errors
    assert history(gateway.status, message_id) == ["OPPRETTET", "FEIL"]


def test_an_organisation_with_a_dpo_record_gets_dpo_and_the_reason_says_so(network):
    _sandbox, gateway = network
    message_id = _drop(gateway, "til-peer", "910075918")
    wait(lambda: current(gateway.status, message_id) in ("MOTTATT", "LEVERT", "LEST"), timeout=60, message="DPO")
    root = status_of(gateway.status, message_id)
    assert root.findtext("s:route/s:channel", namespaces=NS) == "DPO"
    reason = root.findtext("s:route/s:reason", namespaces=NS)
    assert reason.startswith(
        "receiver has a DPO record for process urn:no:difi:profile:arkivmelding:administrasjon:ver1.0: DPO; "
        "encrypted to 910075918's own certificate (serial "
    ), reason
