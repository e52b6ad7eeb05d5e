"""Two real gateway processes (A and B) sharing one sandbox process: a whole conversation."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from gateway.contract.sidecar import SUPPLIED_ARKIVMELDING_NAME
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

from .network import A, B, Gateway, SandboxProcess, gateway_config, wait
from .statusfiles import NS, current, history, inbox_message, status_of, valid_status_file


@pytest.fixture
def network(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateways = {}
    try:
        for orgnr, name in ((A, "a"), (B, "b")):
            gateways[orgnr] = Gateway(tmp_path / name, gateway_config(tmp_path / name, sandbox, orgnr)).start()
        yield sandbox, gateways[A], gateways[B]
    finally:
        for gateway in gateways.values():
            gateway.process.stop()
        sandbox.stop()


def test_a_message_travels_from_a_to_b_and_back(network):
    sandbox, a, b = network
    message_id = str(uuid.uuid4())
    documents = {"vedtak.pdf": pdf_bytes("vedtak"), "kart.pdf": pdf_bytes("kart")}
    sidecar = sidecar_xml(
        receiver=B,
        extra=f"<messageId>{message_id}</messageId><clientReference>2026/77</clientReference>",
        documents=[{"file": "vedtak.pdf", "main": True, "mime": "application/pdf"}, {"file": "kart.pdf"}],
    )
    make_folder_drop(a.outbox, "til-b", files=documents, sidecar=sidecar, staging=a.root / "staging")

    # B's inbox gets the message exactly once, with documents, arkivmelding.xml and message.xml.
    inbox_folder = b.inbox / message_id
    wait(lambda: inbox_folder.is_dir(), message="the message in B's inbox")
    assert os.listdir(b.inbox) == [message_id]
    assert sorted(os.listdir(inbox_folder)) == sorted([*documents, SUPPLIED_ARKIVMELDING_NAME, "message.xml"])
    for name, content in documents.items():
        assert (inbox_folder / name).read_bytes() == content
    described = inbox_message(inbox_folder)
    assert described.findtext("m:sender", namespaces=NS) == A
    assert described.findtext("m:messageId", namespaces=NS) == message_id
    conversation_id = described.findtext("m:conversationId", namespaces=NS)
    assert {d.findtext("m:file", namespaces=NS) for d in described.findall("m:documents/m:document", NS)} == set(
        documents
    )

    # A's status: OPPRETTET, SENDT, MOTTATT.
    wait(lambda: current(a.status, message_id) == "MOTTATT", message="MOTTATT at A")
    assert history(a.status, message_id) == ["OPPRETTET", "SENDT", "MOTTATT"]
    # The log's one line for the event carries the message's fields, for an operator to grep.
    assert f"sent on DPO message_id={message_id} drop=til-b channel=DPO status=SENDT" in a.log()
    assert f"is in the inbox message_id={message_id} channel=DPO status=INNKOMMENDE_MOTTATT" in b.log()
    assert status_of(a.status, message_id).findtext("s:clientReference", namespaces=NS) == "2026/77"
    assert status_of(a.status, message_id).findtext("s:route/s:channel", namespaces=NS) == "DPO"

    # B's archive takes the message: A sees LEVERT.
    shutil.rmtree(inbox_folder)
    wait(lambda: current(a.status, message_id) == "LEVERT", message="LEVERT at A")

    # B's archive drops a kvittering: A sees LEST.
    receipt = sidecar_xml(
        receiver=A,
        message_type="arkivmelding_kvittering",
        documents=[],
        extra=f"<receipt><receiptType>OK</receiptType><relatedToMessageId>{message_id}</relatedToMessageId></receipt>",
    )
    make_folder_drop(b.outbox, "kvittering", files={}, sidecar=receipt, staging=b.root / "staging")
    wait(lambda: current(a.status, message_id) == "LEST", message="LEST at A")
    assert history(a.status, message_id) == ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"]
    times = [t.text for t in status_of(a.status, message_id).findall("s:history/s:status/s:time", NS)]
    assert times == sorted(times)
    assert os.listdir(a.inbox) == [], "statuses and receipts never land in the inbox"

    # B replies in the same conversation: the reply lands in A's inbox.
    reply_id = str(uuid.uuid4())
    reply = sidecar_xml(
        receiver=A,
        extra=f"<messageId>{reply_id}</messageId><inReplyTo>{message_id}</inReplyTo>",
        documents=[{"file": "svar.pdf", "main": True}],
    )
    make_folder_drop(b.outbox, "svar", files={"svar.pdf": pdf_bytes("svar")}, sidecar=reply, staging=b.root / "staging")
    wait(lambda: (a.inbox / reply_id).is_dir(), message="the reply in A's inbox")
    replied = inbox_message(a.inbox / reply_id)
    assert replied.findtext("m:conversationId", namespaces=NS) == conversation_id
    assert replied.findtext("m:sender", namespaces=NS) == B
    assert (a.inbox / reply_id / "svar.pdf").read_bytes() == pdf_bytes("svar")

    for folder in (a.status, b.status):
        for path in folder.glob("*.xml"):
            assert valid_status_file(path), path

    stats = sandbox.stats()
    assert stats["uploadsBySenderAndReference"][f"0192:{A}/{message_id}"] == 1
