"""The automatic peer on a whole sandbox network (start_network), talked to by a test-side gateway
made of the daemon's own building blocks: it answers an arkivmelding with MOTTATT, LEVERT and a
kvittering (and a reply when asked), once per messageId, never answers a status or a receipt, and
answers nothing to a message that fails verification, without blocking the next one."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.channels.dpo.client import DPO_RESOURCE_ID
from gateway.devcerts import dev_identity
from gateway.errors import RetryableChannelError
from gateway.formats.arkivmelding import read_arkivmelding
from gateway.formats.keys import TrustStore, load_pkcs12
from gateway.formats.sbd import (
    ARKIVMELDING_PROCESS,
    RESPONSE_PROCESS,
    Arkivmelding,
    ArkivmeldingKvittering,
    Status,
    new_sbd,
)
from gateway.identifiers import is_valid_orgnr
from gateway.sandbox.network import BUILTIN_ORGANISATIONS, SandboxNetwork, start_network
from gateway.sandbox.peer import (
    ANSWERED,
    DUPLICATE,
    FAILED,
    MAX_ATTEMPTS,
    RECEIPT,
    REJECTED,
    STATUS,
    UNREADABLE,
    AutomaticPeer,
    answer_message_id,
)
from tests.logcheck import assert_clean_log
from tests.sandbox.peer_support import (
    Received,
    SendingGateway,
    event_for,
    flip_a_byte_of_the_asic,
    wait_until,
)

GATEWAY_A = "991825827"
GATEWAY_B = "910077473"
PEER = "910075918"
DPV_ONLY = "974760673"
DPV_FAILING = "921000014"  # DPV only, and its correspondences fail
POLL = 0.1


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("network"), poll_interval=POLL) as running:
        yield running


@pytest.fixture(scope="module")
def replying_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("replying"), reply=True, poll_interval=POLL) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def gateway(network: SandboxNetwork, http: httpx.Client, tmp_path: Path) -> Iterator[SendingGateway]:
    sender = SendingGateway(network, GATEWAY_A, http, tmp_path)
    sender.receive_all()  # start from an empty mailbox
    yield sender


def peer_of(network: SandboxNetwork) -> AutomaticPeer:
    return network.peers[PEER]


def wait_for_outcome(network: SandboxNetwork, message_id: str, outcome: str, count: int = 1) -> None:
    def seen() -> bool:
        return len([e for e in event_for(peer_of(network).events(), message_id) if e.outcome == outcome]) >= count

    wait_until(seen, what=f"the peer to record {outcome} for {message_id}")


def assert_answered(answers: list[Received], message_id: str, conversation_id: str, process: str) -> None:
    statuses = sorted(a.sbd.business_message.status for a in answers if isinstance(a.sbd.business_message, Status))
    assert statuses == ["LEVERT", "MOTTATT"]
    for answer in answers:
        assert answer.sbd.sender == PEER and answer.sbd.receiver == GATEWAY_A
        assert answer.sbd.conversation_id == conversation_id
        assert answer.package.encrypted_asic is None  # statuses and receipts travel as sbd.json alone
        if answer.sbd.message_type == "status":
            assert answer.sbd.message_id == message_id
            assert answer.sbd.process == process
    receipts = [a for a in answers if a.sbd.message_type == "arkivmelding_kvittering"]
    assert len(receipts) == 1 and len(answers) == 3
    receipt = receipts[0].sbd
    assert isinstance(receipt.business_message, ArkivmeldingKvittering)
    assert receipt.business_message.receipt_type == "OK"
    assert receipt.business_message.related_to_message_id == message_id
    assert receipt.message_id not in (message_id, answer_message_id(message_id, "reply"))
    assert receipt.process == RESPONSE_PROCESS


def test_the_builtin_organisations_have_valid_check_digits() -> None:
    municipalities = {"944444408", "944444424"}  # on DPF (SvarUt/SvarInn)
    assert set(BUILTIN_ORGANISATIONS) == {GATEWAY_A, GATEWAY_B, PEER, DPV_ONLY, DPV_FAILING, *municipalities}
    assert all(is_valid_orgnr(orgnr) for orgnr in BUILTIN_ORGANISATIONS)


def test_an_arkivmelding_gets_mottatt_levert_and_a_kvittering_and_nothing_else(
    network: SandboxNetwork, gateway: SendingGateway
) -> None:
    sbd, documents = gateway.arkivmelding(PEER, "Søknad om skjenkebevilling")
    gateway.send(sbd, documents)
    wait_for_outcome(network, sbd.message_id, ANSWERED)

    answers = gateway.receive_all()
    assert_answered(answers, sbd.message_id, sbd.conversation_id, sbd.process)
    assert sbd.message_id in peer_of(network).received_ids()
    assert peer_of(network).counters().poll_errors == 0


def test_the_same_message_id_is_answered_once_even_after_a_restart(
    network: SandboxNetwork, gateway: SendingGateway
) -> None:
    sbd, documents = gateway.arkivmelding(PEER, "Sendt to ganger")
    gateway.send(sbd, documents)
    gateway.send(sbd, documents)
    wait_for_outcome(network, sbd.message_id, DUPLICATE)
    assert [e.outcome for e in event_for(peer_of(network).events(), sbd.message_id)] == [ANSWERED, DUPLICATE]

    old = peer_of(network)
    old.stop()
    restarted = AutomaticPeer(PEER, old.identity, old.trust, network.server.token_url, network.server.token_audience,
                              network.server.broker_url, network.server.registry_url, old.work_dir,
                              poll_interval=POLL)
    network.peers[PEER] = restarted
    restarted.start()
    gateway.send(sbd, documents)
    wait_for_outcome(network, sbd.message_id, DUPLICATE)

    assert_answered(gateway.receive_all(), sbd.message_id, sbd.conversation_id, sbd.process)
    assert restarted.received_ids().count(sbd.message_id) == 1


@pytest.mark.parametrize("kind", ["status", "kvittering"])
def test_a_status_or_a_receipt_is_never_answered(network: SandboxNetwork, gateway: SendingGateway, kind: str) -> None:
    message = (Status(status="LEVERT") if kind == "status"
               else ArkivmeldingKvittering(receipt_type="OK", related_to_message_id=str(uuid.uuid4())))
    sbd = new_sbd(sender=GATEWAY_A, receiver=PEER, business_message=message,
                  process=ARKIVMELDING_PROCESS if kind == "status" else RESPONSE_PROCESS, created=datetime.now(UTC))
    gateway.send(sbd)
    wait_for_outcome(network, sbd.message_id, STATUS if kind == "status" else RECEIPT)

    assert gateway.receive_all() == []
    assert sbd.message_id not in peer_of(network).received_ids()


@pytest.mark.parametrize("fault", ["flipped byte", "wrong certificate"])
def test_a_message_that_fails_verification_gets_no_answer_and_blocks_nothing(
    network: SandboxNetwork, gateway: SendingGateway, fault: str
) -> None:
    bad, bad_documents = gateway.arkivmelding(PEER, "Tuklet med")
    if fault == "flipped byte":
        gateway.send(bad, bad_documents, tamper=flip_a_byte_of_the_asic)
    else:  # encrypted to the sender's own certificate: the peer cannot decrypt it
        gateway.send(bad, bad_documents, certificate=gateway.identity.certificate)
    good, good_documents = gateway.arkivmelding(PEER, "I orden")
    gateway.send(good, good_documents)
    wait_for_outcome(network, good.message_id, ANSWERED)
    wait_for_outcome(network, bad.message_id, REJECTED)  # taken side by side: the good one may be done first

    rejected = event_for(peer_of(network).events(), bad.message_id)
    assert [e.outcome for e in rejected] == [REJECTED]
    assert rejected[0].detail  # why, for the log and the operator
    answers = gateway.receive_all()
    assert {a.sbd.conversation_id for a in answers} == {good.conversation_id}
    assert_answered(answers, good.message_id, good.conversation_id, good.process)
    assert bad.message_id not in peer_of(network).received_ids()

    gateway.send(bad, bad_documents)  # the same messageId, now intact: refused once, stays refused
    wait_for_outcome(network, bad.message_id, DUPLICATE)
    assert gateway.receive_all() == []


def test_a_transfer_that_is_no_package_at_all_is_refused_and_blocks_nothing(
    network: SandboxNetwork, gateway: SendingGateway
) -> None:
    garbage = gateway.broker.initialise(DPO_RESOURCE_ID, f"0192:{GATEWAY_A}", f"0192:{PEER}", "sbd.zip", "garbage")
    gateway.broker.upload(garbage, io.BytesIO(b"this is not a zip"))
    good, good_documents = gateway.arkivmelding(PEER, "Etter søppel")
    gateway.send(good, good_documents)
    wait_for_outcome(network, good.message_id, ANSWERED)
    # The broker lists transfers in no promised order: the good one may be answered before the garbage is
    # looked at, so wait for the garbage's event too (it is recorded after the transfer is confirmed).
    wait_until(lambda: any(e.transfer_id == garbage for e in peer_of(network).events()),
               what="the peer to record the garbage transfer")

    assert [e.outcome for e in peer_of(network).events() if e.transfer_id == garbage] == [UNREADABLE]
    assert_answered(gateway.receive_all(), good.message_id, good.conversation_id, good.process)
    assert gateway.broker.overview(garbage)["fileTransferStatus"] == "AllConfirmedDownloaded"


def test_a_message_whose_answers_keep_failing_is_given_up_after_a_few_rounds(
    network: SandboxNetwork, gateway: SendingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = peer_of(network)

    def broker_down(*args: object) -> None:
        raise RetryableChannelError("the broker is down (simulated)")

    monkeypatch.setattr(peer, "_answer", broker_down)
    errors_before = peer.counters().poll_errors
    sbd, documents = gateway.arkivmelding(PEER, "Aldri besvart")
    transfer_id = gateway.send(sbd, documents)
    wait_until(lambda: any(e.transfer_id == transfer_id and e.outcome == FAILED for e in peer.events()),
               what="the peer to give up")

    assert peer.counters().poll_errors - errors_before == MAX_ATTEMPTS - 1
    assert gateway.broker.overview(transfer_id)["fileTransferStatus"] == "AllConfirmedDownloaded"
    assert gateway.receive_all() == []
    monkeypatch.undo()
    good, good_documents = gateway.arkivmelding(PEER, "Etter brudd")
    gateway.send(good, good_documents)
    wait_for_outcome(network, good.message_id, ANSWERED)
    assert_answered(gateway.receive_all(), good.message_id, good.conversation_id, good.process)


def test_with_reply_the_sender_also_gets_a_verifiable_arkivmelding_in_the_same_conversation(
    replying_network: SandboxNetwork, http: httpx.Client, tmp_path: Path
) -> None:
    gateway = SendingGateway(replying_network, GATEWAY_A, http, tmp_path)
    sbd, documents = gateway.arkivmelding(PEER, "Søknad om parkeringstillatelse")
    gateway.send(sbd, documents)
    wait_for_outcome(replying_network, sbd.message_id, ANSWERED)

    answers = gateway.receive_all()
    replies = [a for a in answers if a.sbd.message_type == "arkivmelding"]
    assert len(answers) == 4 and len(replies) == 1
    assert_answered([a for a in answers if a not in replies], sbd.message_id, sbd.conversation_id, sbd.process)
    reply = replies[0]
    assert reply.sbd.conversation_id == sbd.conversation_id
    assert reply.sbd.message_id != sbd.message_id
    assert reply.sbd.process == RESPONSE_PROCESS
    assert reply.sbd.sender == PEER and reply.sbd.receiver == GATEWAY_A
    assert isinstance(reply.sbd.business_message, Arkivmelding)
    assert reply.sbd.business_message.hoveddokument == "svar.pdf"

    contents = gateway.open(reply)  # decrypts with the sender's key, verifies the peer's signature chain
    assert [f.name for f in contents.files] == ["svar.pdf", "arkivmelding.xml"]
    assert contents.main_document == "svar.pdf"
    files = {f.name: f.path for f in contents.files}
    assert files["svar.pdf"].read_bytes().startswith(b"%PDF-")
    info = read_arkivmelding(files["arkivmelding.xml"].read_bytes())
    assert info.title == "Svar på: Søknad om parkeringstillatelse"
    assert info.file_names == ("svar.pdf",)


def test_gateway_settings_point_at_real_files_and_network_yaml_holds_them(network: SandboxNetwork) -> None:
    written = yaml.safe_load(network.network_file.read_text(encoding="utf-8"))
    assert written["url"] == network.url
    assert set(written["gateways"]) == {GATEWAY_A, GATEWAY_B}
    assert written["organisations"][DPV_ONLY]["role"] == "dpv"
    for orgnr in (GATEWAY_A, GATEWAY_B):
        settings = network.gateway_settings(orgnr)
        assert set(settings) == {"network", "channels", "keystore", "trust"}
        organisation = {"orgnr": orgnr, "name": BUILTIN_ORGANISATIONS[orgnr].name}
        assert written["gateways"][orgnr] == {"organisation": organisation, **settings}
        assert settings["channels"]["dpo"]["broker_url"].startswith("http://127.0.0.1:")
        keystore = settings["keystore"]
        assert load_pkcs12(Path(keystore["pkcs12"]), keystore["password"]).orgnr == orgnr
        trust = TrustStore.from_pem_files([Path(settings["trust"]["ca_bundle"])])
        identity = dev_identity(network.pki, orgnr)
        trust.verify(identity.certificate, identity.chain)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{network.gateway_settings(GATEWAY_A)['network']['service_registry_url']}/jwk").is_success


def test_serve_network_forever_prints_the_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from gateway.sandbox.serve import serve_network_forever
        serve_network_forever(Path({str(tmp_path / 'data')!r}), port=0, reply=False)
        print("stopped", flush=True)
    """)
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("sandbox network on http://127.0.0.1:")
        lines = [first_line]
        while "settings written to" not in lines[-1]:
            lines.append(process.stdout.readline())
        assert any(PEER in line and "automatic peer" in line for line in lines)
        written = yaml.safe_load((tmp_path / "data" / "network.yaml").read_text(encoding="utf-8"))
        assert written["url"] == first_line.split()[-1]
        process.terminate()
        process.wait(timeout=30)
        output = process.stdout.read()  # not communicate(timeout=...): it would skip what readline buffered
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert_clean_log(log)
    snippet = output.split(f"# config.yaml for gateway {GATEWAY_A} (Sandkasse kommune):\n", 1)[1]
    snippet = snippet.split("\n\n", 1)[0].split("\n# config.yaml", 1)[0]
    assert yaml.safe_load(snippet)["keystore"]["pkcs12"] == str(tmp_path / "data" / "certs" / f"{GATEWAY_A}.p12")
    assert output.rstrip().endswith("stopped")
