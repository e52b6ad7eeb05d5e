"""DPI end to end: a real gateway process and a real sandbox process (the registry with its citizens, Corner 2
with the digital mailbox and the print service). A digital letter reaches LEVERT and LEST and the mailbox holds
the documents byte for byte; a vedtak to the reserved person is printed and reaches LEVERT; a print letter to
the person who has moved comes back as returned post; over-size and wrong-type letters are refused before
anything is sent; and the daemon's log never holds a national identity number in full."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.sandbox.persons import (
    BUILTIN_PERSONS,
    MOVED_PERSON,
    PERSON_WITH_MAILBOX,
    PERSON_WITHOUT_MAILBOX,
    UNNOTIFIABLE_PERSON,
)
from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import NS, current, history, status_of
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

REPO = Path(__file__).resolve().parents[2]
INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"
VEDTAK = "urn:no:difi:profile:digitalpost:vedtak:ver1.0"
pytestmark = pytest.mark.slow
REFUSALS = ("refused before anything was sent", "cannot be printed", "DPI does not carry")
REFUSALS = ("refused before anything was sent", "cannot be printed", "DPI does not carry")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpi")
    sandbox = SandboxProcess(root / "sandbox", allowed_log=("refused",))
    dpi = {"corner2_url": sandbox.network["corner2_url"], "status_poll_seconds": 0.3, "handed_on_poll_seconds": 1}
    gateway = Gateway(root / "a", gateway_config(root / "a", sandbox, A, channels={"dpi": dpi}),
                      allowed_log=REFUSALS).start()
    try:
        yield sandbox, gateway
    finally:
        gateway.process.stop()
        sandbox.stop()


def gateway_dpi(gateway: Gateway) -> dict:
    return yaml.safe_load(gateway.config.read_text())["channels"]["dpi"]


def corner2(sandbox: SandboxProcess, what: str) -> list | dict:
    return httpx.get(f"{sandbox.url}/dpi/_sandbox/{what}", timeout=10).json()


def drop(gateway: Gateway, receiver: str, documents: dict[str, bytes], process: str = INFO,
         message_type: str = "digital", dpi: str = "", mime: str = "application/pdf") -> str:
    message_id = str(uuid.uuid4())
    listed = [{"file": name, "main": index == 0, "mime": mime} for index, name in enumerate(documents)]
    extra = f"<messageId>{message_id}</messageId><process>{process}</process>{dpi}"
    sidecar = sidecar_xml(receiver=receiver, documents=listed, extra=extra, message_type=message_type)
    make_folder_drop(gateway.outbox, f"dpi-{message_id[:8]}", files=documents, sidecar=sidecar,
                     staging=gateway.root / "staging")
    return message_id


def reason(gateway: Gateway, message_id: str) -> tuple[str, str]:
    root = status_of(gateway.status, message_id)
    return root.findtext("s:route/s:channel", namespaces=NS), root.findtext("s:route/s:reason", namespaces=NS)


def descriptions(gateway: Gateway, message_id: str) -> list[str]:
    root = status_of(gateway.status, message_id)
    return [] if root is None else [d.text or "" for d in root.findall("s:history/s:status/s:description", NS)]


def test_a_digital_letter_reaches_levert_and_lest_and_the_mailbox_holds_the_documents(network):
    sandbox, gateway = network
    documents = {"svar.pdf": pdf_bytes("svar") * 500, "vedlegg.pdf": pdf_bytes("vedlegg") + bytes(range(256)) * 40}
    options = ("<dpi><digital><title>Brev frå kommunen</title><openReceipt>true</openReceipt>"
               "<notification><channels>Sms</channels><smsText>Nytt brev</smsText></notification></digital></dpi>")
    message_id = drop(gateway, PERSON_WITH_MAILBOX, documents, dpi=options)

    wait(lambda: current(gateway.status, message_id) in ("LEST", "FEIL"), timeout=60, message="LEST")
    assert current(gateway.status, message_id) == "LEST", descriptions(gateway, message_id)
    steps = history(gateway.status, message_id)
    assert steps[:2] == ["OPPRETTET", "SENDT"] and "LEVERT" in steps and steps[-1] == "LEST"
    channel, why = reason(gateway, message_id)
    assert channel == "DPI"
    assert "active digital mailbox (provider 944444505): DPI digital" in why and "notified by SMS" in why
    said = descriptions(gateway, message_id)
    assert any(d.startswith("leveringskvittering") for d in said)
    assert any(d.startswith("aapningskvittering") for d in said)

    [letter] = [item for item in corner2(sandbox, f"mailbox/{PERSON_WITH_MAILBOX}") if item["messageId"] == message_id]
    assert [doc["name"] for doc in letter["documents"]] == list(documents)
    for name, content in documents.items():
        served = httpx.get(f"{sandbox.url}/dpi/_sandbox/mailbox/{PERSON_WITH_MAILBOX}/{message_id}/{name}",
                           timeout=10)
        assert served.content == content
    assert letter["title"] == "Brev frå kommunen"
    assert [n["channel"] for n in letter["notifications"]] == ["sms"]
    assert letter["notifications"][0]["text"] == "Nytt brev"


def drop_sample(gateway: Gateway, sample: str, name: str) -> str:
    """The sample drop copied beside the outbox and moved in with one rename; its message id."""
    staged = gateway.root / "staging" / name
    shutil.copytree(REPO / "sample_drops" / sample, staged)
    staged.rename(gateway.outbox / name)

    def status_file() -> Path | None:
        found = list(gateway.status.glob(f"{name}.*.xml"))
        return found[0] if found else None

    wait(lambda: status_file() is not None, timeout=30, message=f"a status file for {sample}")
    return status_file().name.split(".")[-2]


def test_the_digital_sample_letter_reaches_lest(network):
    sandbox, gateway = network
    message_id = drop_sample(gateway, "brev-til-innbygger", "digitalt-brev")
    wait(lambda: current(gateway.status, message_id) in ("LEST", "FEIL"), timeout=60, message="LEST")
    assert current(gateway.status, message_id) == "LEST", descriptions(gateway, message_id)
    assert "notified by e-mail and SMS" in reason(gateway, message_id)[1]
    [letter] = [item for item in corner2(sandbox, f"mailbox/{PERSON_WITH_MAILBOX}") if item["messageId"] == message_id]
    assert letter["title"] == "Brev frå Sandkasse kommune"
    sample = REPO / "sample_drops" / "brev-til-innbygger" / "svar-pa-soknad.pdf"
    assert httpx.get(f"{sandbox.url}/dpi/_sandbox/mailbox/{PERSON_WITH_MAILBOX}/{message_id}/svar-pa-soknad.pdf",
                     timeout=10).content == sample.read_bytes()


def test_a_vedtak_to_the_reserved_person_is_printed_and_reaches_levert(network):
    sandbox, gateway = network
    message_id = drop_sample(gateway, "brev-til-innbygger-papir", "vedtak-papir")
    wait(lambda: "LEVERT" in history(gateway.status, message_id), timeout=60, message="LEVERT from the print service")
    channel, why = reason(gateway, message_id)
    assert channel == "DPI" and why.startswith("a vedtak must reach the receiver") and "DPI print" in why
    assert "printed by 944444513" in why
    [job] = [job for job in corner2(sandbox, "print") if job["messageId"] == message_id]
    assert job["utskriftstype"] == "FARGE" and job["posttype"] == "A"
    assert "Rolf Reservert" in str(job["address"])
    # The print service's certificate came from the sandbox's KRR endpoint, as in test and production: anonymously.
    assert gateway_dpi(gateway)["print_certificate_url"] == sandbox.network["print_certificate_url"]
    krr = httpx.get(f"{sandbox.url}/kontaktregisteret/_sandbox/stats", timeout=10).json()
    assert krr["print_certificate_requests"] >= 1 and krr["with_authorization"] == 0


def test_a_print_letter_to_the_person_who_has_moved_comes_back_as_returned_post(network):
    _sandbox, gateway = network
    message_id = drop(gateway, MOVED_PERSON, {"brev.pdf": pdf_bytes("til frida")}, message_type="print")
    wait(lambda: any(d.startswith("returpostkvittering") for d in descriptions(gateway, message_id)), timeout=60,
         message="returned post")
    assert current(gateway.status, message_id) == "FEIL"
    assert "returned post" in descriptions(gateway, message_id)[-1]
    assert reason(gateway, message_id)[1].startswith("the sidecar asks for a print letter: DPI print")


@pytest.mark.parametrize(("name", "documents", "message_type", "mime", "words"), [
    ("a program", {"brev.pdf": pdf_bytes("x"), "run.exe": b"MZ\x90\x00"}, "digital", "application/pdf",
     "DPI does not carry executable files"),
    ("print of a text file", {"brev.txt": b"plain text"}, "print", "text/plain", "cannot be printed"),
])
def test_wrong_type_letters_are_refused_before_anything_is_sent(network, name, documents, message_type, mime, words):
    sandbox, gateway = network
    receiver = PERSON_WITH_MAILBOX if message_type == "digital" else MOVED_PERSON
    message_id = drop(gateway, receiver, documents, message_type=message_type, mime=mime)
    wait(lambda: current(gateway.status, message_id) == "FEIL", timeout=30, message=f"{name} refused")
    assert words in descriptions(gateway, message_id)[-1]
    assert "refused before anything was sent" in descriptions(gateway, message_id)[-1]
    sent = corner2(sandbox, "messages")
    assert message_id not in str(sent)


def test_an_over_size_letter_is_refused_before_anything_is_sent(network):
    sandbox, gateway = network
    message_id = str(uuid.uuid4())
    staging = gateway.root / "staging" / f"stor-{message_id[:8]}"
    staging.mkdir(parents=True)
    big = staging / "stor.pdf"
    with open(big, "wb") as handle:  # sparse: 50 MB and one byte without writing them
        handle.write(b"%PDF-1.4\n")
        handle.truncate(50 * 1024 * 1024 + 1)
    sidecar = sidecar_xml(receiver=PERSON_WITH_MAILBOX, documents=[{"file": "stor.pdf", "main": True}],
                          extra=f"<messageId>{message_id}</messageId><process>{INFO}</process>",
                          message_type="digital")
    (staging / "message.xml").write_bytes(sidecar)
    staging.rename(gateway.outbox / staging.name)
    wait(lambda: current(gateway.status, message_id) == "FEIL", timeout=60, message="over-size refused")
    last = descriptions(gateway, message_id)[-1]
    assert "DPI takes at most 52428800 bytes" in last or "more than" in last, last
    assert message_id not in str(corner2(sandbox, "messages"))


def test_no_national_identity_number_in_the_daemon_log(network):
    _sandbox, gateway = network
    # Runs after the letters above: every person's number has passed through routing, sending and statuses.
    log = gateway.log()
    assert "DPI" in log
    for person in BUILTIN_PERSONS:
        assert person.fnr not in log, f"{person.name}'s number is in the daemon log"
    assert not re.search(r"(?<!\d)\d{11}(?!\d)", log), "an 11-digit number is in the daemon log"


def test_a_letter_corner2_no_longer_has_ends_as_annet_deleted_at_the_provider(network):
    sandbox, gateway = network
    message_id = drop(gateway, UNNOTIFIABLE_PERSON, {"brev.pdf": pdf_bytes("til vera")})
    wait(lambda: "LEVERT" in history(gateway.status, message_id), timeout=60, message="LEVERT")
    assert httpx.delete(f"{sandbox.url}/dpi/_sandbox/messages/{message_id}", timeout=10).status_code == 204
    wait(lambda: "ANNET" in history(gateway.status, message_id), timeout=60, message="ANNET after 410")
    last = descriptions(gateway, message_id)[-1]
    assert last.startswith("deleted at the provider") and "410" in last
    polled = [m for m in corner2(sandbox, "messages") if m["messageId"] == message_id]
    asked = sum(m["statusRequests"] for m in polled)
    time.sleep(2)  # several poll rounds: the gateway no longer asks for it
    assert sum(m["statusRequests"] for m in corner2(sandbox, "messages") if m["messageId"] == message_id) == asked


def test_an_info_letter_to_a_person_without_a_mailbox_goes_to_the_altinn_mailbox(network):
    sandbox, gateway = network
    message_id = drop(gateway, PERSON_WITHOUT_MAILBOX, {"brev.pdf": pdf_bytes("til nils")})
    wait(lambda: current(gateway.status, message_id) in ("LEVERT", "LEST", "FEIL"), timeout=60, message="LEVERT")
    assert current(gateway.status, message_id) != "FEIL", descriptions(gateway, message_id)
    channel, why = reason(gateway, message_id)
    assert channel == "DPV" and why.startswith("receiver has no active digital mailbox: DPV")
    assert message_id not in str(corner2(sandbox, "messages"))


ON_BEHALF_OF = "910076787"  # the organisation Digdir's "på vegne av" example sends for


def test_a_letter_on_behalf_of_another_organisation_goes_as_theirs_signed_by_us_and_its_receipts_come(network):
    sandbox, gateway = network
    options = "<dpi><digital><title>Brev på vegne av</title><openReceipt>true</openReceipt></digital></dpi>"
    message_id = drop(gateway, PERSON_WITH_MAILBOX, {"brev.pdf": pdf_bytes("på vegne av")},
                      dpi=f"<onBehalfOf>{ON_BEHALF_OF}</onBehalfOf>{options}")
    wait(lambda: current(gateway.status, message_id) in ("LEST", "FEIL"), timeout=60, message="LEST")
    assert current(gateway.status, message_id) == "LEST", descriptions(gateway, message_id)
    said = descriptions(gateway, message_id)
    assert any(d.startswith("leveringskvittering") for d in said)
    assert any(d.startswith("aapningskvittering") for d in said)

    # Corner 2 took it from us: the SBD's sender is us, and the JWT was signed with our certificate (Corner 2
    # refuses a JWT whose x5c is not the sender's) and carried a token delegated from them to us.
    [sent] = [m for m in corner2(sandbox, "messages") if m["messageId"] == message_id]
    assert sent["sender"] == A
    assert f"token granted to {A} for digitalpostinnbygger:send on behalf of {ON_BEHALF_OF}" in \
        sandbox.log.read_text()
    # The letter is theirs: the business message's avsender and the package manifest's.
    [letter] = [item for item in corner2(sandbox, f"mailbox/{PERSON_WITH_MAILBOX}") if item["messageId"] == message_id]
    assert letter["avsender"] == f"0192:{ON_BEHALF_OF}"
    assert letter["manifestAvsender"] == f"0192:{ON_BEHALF_OF}"
    assert letter["title"] == "Brev på vegne av"
