"""DPF end to end: a real gateway process and a real sandbox process (SvarUt, SvarInn and the
automatic municipality): a drop to the municipality goes as a SvarUt forsendelse and reaches LEVERT
and LEST through SvarUt's states, documents byte-identical after decryption; the municipality's
reply comes back through SvarInn into our inbox in the same conversation; a broken forsendelse is
refused with mottakFeilet and quarantined while the next one still arrives."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from lxml import etree

from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import NS, current, history, inbox_message, status_of
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

MUNICIPALITY = "944444408"  # Fiktiv kommune: SvarInn at security level 4
LEVEL3_MUNICIPALITY = "944444424"  # its SvarInn takes level 3 only
FAST_DPF = {"channels": {"dpf": {"inbound_poll_seconds": 0.3, "status_poll_seconds": 0.3}}}
QUARANTINE_LOG = ("quarantined",)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpf")
    sandbox = SandboxProcess(root / "sandbox", reply=True, allowed_log=("refused",))
    gateway = Gateway(root / "a", gateway_config(root / "a", sandbox, A, **FAST_DPF),
                      allowed_log=QUARANTINE_LOG).start()
    try:
        yield sandbox, gateway
    finally:
        gateway.process.stop()
        sandbox.stop()


def forsendelser(sandbox: SandboxProcess) -> list[dict]:
    return httpx.get(f"{sandbox.url}/svarut/_sandbox/forsendelser", timeout=10).json()


def incoming_status(folder: Path, message_id: str) -> str | None:
    for path in folder.glob(f"in.*{message_id}*.xml"):
        try:
            return etree.parse(str(path)).getroot().findtext("s:current", namespaces=NS)
        except etree.XMLSyntaxError:
            return None
    return None


def _drop(gateway: Gateway, name: str, receiver: str, documents: dict[str, bytes], extra: str = "") -> tuple[str, str]:
    message_id, conversation_id = str(uuid.uuid4()), str(uuid.uuid4())
    listed = [{"file": f, "main": i == 0, "mime": "application/pdf"} for i, f in enumerate(documents)]
    ids = f"<messageId>{message_id}</messageId><conversationId>{conversation_id}</conversationId>"
    sidecar = sidecar_xml(receiver=receiver, documents=listed, extra=ids + extra)
    make_folder_drop(gateway.outbox, name, files=documents, sidecar=sidecar, staging=gateway.root / "staging")
    return message_id, conversation_id


def test_a_drop_to_the_municipality_is_archived_and_its_reply_arrives_in_the_same_conversation(network):
    sandbox, gateway = network
    documents = {"vedtak.pdf": pdf_bytes("vedtak") * 300, "kart.pdf": os.urandom(70_000)}
    message_id, conversation_id = _drop(gateway, "til-kommunen", MUNICIPALITY, documents,
                                        "<dpf><forsendelseType>Byggesak</forsendelseType></dpf>")

    wait(lambda: current(gateway.status, message_id) == "LEST", timeout=60, message="LEST through SvarUt")
    assert history(gateway.status, message_id) == ["OPPRETTET", "SENDT", "LEVERT", "LEST"]
    root = status_of(gateway.status, message_id)
    assert root.findtext("s:route/s:channel", namespaces=NS) == "DPF"
    assert "SvarInn address found: DPF" in root.findtext("s:route/s:reason", namespaces=NS)
    descriptions = [d.text or "" for d in root.findall("s:history/s:status/s:description", NS)]
    assert any("SvarUt state LEST" in d for d in descriptions)

    # SvarUt took one forsendelse, with our ids, and decrypted the documents to the very bytes we dropped.
    [sent] = [f for f in forsendelser(sandbox) if f["eksternReferanse"] == message_id]
    assert sent["sender"] == A and sent["receiver"] == MUNICIPALITY
    assert sent["forsendelsestype"] == "Byggesak" and sent["tittel"] == "Test"
    # The names the municipality's archive shows: the receiver's from the service registry, ours from config.
    assert sent["mottaker"] == "Fiktiv kommune (SvarInn)"
    assert sent["svarSendesTil"] == "Sandkasse kommune"
    assert not sent["krevNiva4Innlogging"]
    assert sent["history"] == ["MOTTATT", "AKSEPTERT", "KLAR_FOR_MOTTAK", "LEST"]
    assert [(f["name"], f["sha256"]) for f in sent["files"]] == [
        (name, hashlib.sha256(content).hexdigest()) for name, content in documents.items()
    ]
    # ...and the municipality, decrypting SvarInn's download with its own key, archived them unchanged.
    archived = sandbox.data / "municipalities" / MUNICIPALITY / "archive" / sent["id"]
    for name, content in documents.items():
        assert (archived / name).read_bytes() == content

    # The municipality's reply: through SvarUt to our SvarInn, into the inbox, in our conversation.
    def reply_folder() -> Path | None:
        for folder in gateway.inbox.iterdir():
            if folder.is_dir() and (folder / "message.xml").exists():
                return folder
        return None

    wait(lambda: reply_folder() is not None, timeout=60, message="the municipality's reply in the inbox")
    folder = reply_folder()
    described = inbox_message(folder)
    assert described.findtext("m:sender", namespaces=NS) == MUNICIPALITY
    # SvarInn names the municipality only in the reply-to address, which nobody signs: said so, not trusted.
    assert "svarSendesTil" in described.findtext("m:senderNotVerified", default="", namespaces=NS)
    assert described.findtext("m:conversationId", namespaces=NS) == conversation_id
    assert described.findtext("m:title", namespaces=NS) == "Svar: Test"
    assert sorted(os.listdir(folder)) == ["arkivmelding.xml", "message.xml", "svar.pdf"]
    assert (folder / "svar.pdf").read_bytes().startswith(b"%PDF")
    reply_id = described.findtext("m:messageId", namespaces=NS)
    [answer] = [f for f in forsendelser(sandbox) if f["eksternReferanse"] == reply_id]
    wait(lambda: next(f for f in forsendelser(sandbox) if f["id"] == answer["id"])["status"] == "LEST",
         message="kvitterMottak for the reply")

    # Its status file follows (written in the background); then the archive system takes it: a pick-up.
    wait(lambda: incoming_status(gateway.status, reply_id) == "INNKOMMENDE_MOTTATT", timeout=10,
         message="the reply's status file")
    shutil.rmtree(folder)
    wait(lambda: incoming_status(gateway.status, reply_id) == "INNKOMMENDE_LEVERT", message="the pick-up")

    # The SvarUt and SvarInn passwords never reach a log line.
    dpf = yaml.safe_load(gateway.config.read_text())["channels"]["dpf"]
    for key in ("integration_password_file", "svarinn_password_file"):
        secret = Path(dpf[key]).read_text().strip()
        assert secret and secret not in gateway.log() and secret not in sandbox.log.read_text()


@pytest.mark.parametrize("kind", ["wrong_key", "bad_zip", "dotdot"])
def test_a_broken_forsendelse_gets_mottak_feilet_and_a_quarantine_status_and_the_next_still_arrives(network, kind):
    sandbox, gateway = network
    inject = f"{sandbox.url}/svarut/_sandbox/inject"
    bad = httpx.post(inject, json={"sender": MUNICIPALITY, "receiver": A, "kind": kind}, timeout=10).json()["id"]
    wait(lambda: next(f for f in forsendelser(sandbox) if f["id"] == bad)["status"] == "IKKE_LEVERT",
         timeout=30, message="mottakFeilet for the broken forsendelse")
    [refused] = [f for f in forsendelser(sandbox) if f["id"] == bad]
    assert refused["failure"], "mottakFeilet carries the reason"
    # Its message (the forsendelseId stands for the messageId) has a FEIL status; nothing in the inbox.
    wait(lambda: incoming_status(gateway.status, bad) == "FEIL", message="the quarantine status")
    assert not (gateway.inbox / bad).exists()
    assert not list((gateway.var).rglob("evil.pdf")), "no file outside the folder"
    assert any(p.name.startswith(bad) for p in (gateway.var / "state" / "quarantine").iterdir())

    # The next forsendelse still arrives: a drop to the municipality and its reply.
    message_id, conversation_id = _drop(gateway, f"etter-{kind}", MUNICIPALITY, {"brev.pdf": pdf_bytes(kind)})
    wait(lambda: current(gateway.status, message_id) == "LEST", timeout=60, message="the next message")

    def replied() -> bool:
        for folder in gateway.inbox.iterdir():
            if (folder / "message.xml").exists() and inbox_message(folder).findtext(
                    "m:conversationId", namespaces=NS) == conversation_id:
                return True
        return False

    wait(replied, timeout=60, message="the next reply in the inbox")


def test_level_4_goes_to_a_municipality_whose_svarut_takes_4_and_is_feil_where_none_does(network):
    sandbox, gateway = network
    level4 = "<securityLevel>4</securityLevel>"
    message_id, _ = _drop(gateway, "niva4", MUNICIPALITY, {"brev.pdf": pdf_bytes("4")}, level4)
    wait(lambda: current(gateway.status, message_id) == "LEST", timeout=60, message="level 4 through DPF")
    [sent] = [f for f in forsendelser(sandbox) if f["eksternReferanse"] == message_id]
    assert sent["status"] == "LEST" and sent["krevNiva4Innlogging"]
    reason = status_of(gateway.status, message_id).findtext("s:route/s:reason", namespaces=NS)
    assert "level 4" in reason

    refused_id, _ = _drop(gateway, "niva4-nei", LEVEL3_MUNICIPALITY, {"brev.pdf": pdf_bytes("3")}, level4)
    wait(lambda: current(gateway.status, refused_id) == "FEIL", timeout=30, message="level 4 without a route")
    root = status_of(gateway.status, refused_id)
    words = " ".join(d.text or "" for d in root.iter("{urn:efm-gateway:status:1}description"))
    assert "security level 4" in words
    assert not [f for f in forsendelser(sandbox) if f["eksternReferanse"] == refused_id], "nothing sent"


def test_a_sidecar_pin_goes_where_the_registry_offers_it_and_is_refused_where_not(network):
    _sandbox, gateway = network
    pinned_id, _ = _drop(gateway, "pin-dpf", MUNICIPALITY, {"brev.pdf": pdf_bytes("pin")}, "<channel>DPF</channel>")
    wait(lambda: current(gateway.status, pinned_id) == "LEST", timeout=60, message="the pinned message")
    reason = status_of(gateway.status, pinned_id).findtext("s:route/s:reason", namespaces=NS)
    assert "the sidecar pins channel DPF" in reason

    refused_id, _ = _drop(gateway, "pin-dpv", MUNICIPALITY, {"brev.pdf": pdf_bytes("nei")}, "<channel>DPV</channel>")
    wait(lambda: current(gateway.status, refused_id) == "FEIL", timeout=30, message="the refused pin")
    root = status_of(gateway.status, refused_id)
    words = " ".join(d.text or "" for d in root.iter("{urn:efm-gateway:status:1}description"))
    assert "pins channel DPV" in words and "it offers DPF" in words
