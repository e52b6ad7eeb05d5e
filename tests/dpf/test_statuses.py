"""SvarUt's states as our statuses, and status search in batches against the sandbox SvarUt."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.channels.base import SentMessage
from gateway.channels.dpf.forsendelse import STATE_MEANINGS, updates_for_state
from gateway.channels.registry import ChannelTools, build_channels
from gateway.clock import SystemClock
from gateway.config import DpfChannelConfig
from gateway.devcerts import dev_identity
from gateway.formats.keys import TrustStore
from gateway.sandbox.network import start_network
from tests.sandbox.support import Credentials, authorisation_for

A = "991825827"
STATUS_SPEC = Path(__file__).parents[2] / ".." / "shared" / "reference" / "api" / "svarut"
STATUS_SPEC = STATUS_SPEC / "forsendelse-status-api-v2.json"


def test_every_state_the_spec_lists_has_a_meaning():
    spec = json.loads(STATUS_SPEC.read_text())
    states = spec["components"]["schemas"]["ForsendelseStatus"]["properties"]["status"]["enum"]
    assert set(states) == set(STATE_MEANINGS)


@pytest.mark.parametrize(("state", "expected"), [
    ("MOTTATT", []), ("AKSEPTERT", []), ("KLAR_FOR_MOTTAK", []), ("VARSLET", []), ("SENDT_DIGITALT", []),
    ("SENDT_SDP", []), ("SENDT_PRINT", []),
    ("LEVERT_SDP", ["LEVERT"]), ("PRINTET", ["LEVERT"]), ("MANUELT_HANDTERT", ["LEVERT"]),
    ("LEST", ["LEVERT", "LEST"]),
    ("AVVIST", ["FEIL"]), ("IKKE_LEVERT", ["FEIL"]),
    ("NOE_NYTT", ["ANNET"]),
])
def test_a_state_becomes_our_statuses(state, expected):
    updates = updates_for_state(state, "f-1", None)
    assert [u.status for u in updates] == expected
    for update in updates:
        assert state in update.description, "the state's name is in the words"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    network = start_network(tmp_path_factory.mktemp("dpf-status") / "sandbox")
    try:
        yield network
    finally:
        network.stop()


def dpf_channel(network, http: httpx.Client):
    identity = dev_identity(network.pki, A)
    settings = network.gateway_settings(A)["channels"]["dpf"]
    block = DpfChannelConfig(**{k: Path(v) if k.endswith("_file") else v for k, v in settings.items()})
    credentials = Credentials(identity.private_key, [identity.certificate])
    auth = authorisation_for(network.server, credentials, A, http)
    tools = ChannelTools(A, identity, TrustStore.from_pem_files([network.pki.trust_bundle]), auth, http,
                         SystemClock())
    return build_channels({"dpf": block}, tools)["DPF"]


def test_2000_open_forsendelser_are_polled_in_4_status_searches(sandbox):
    store = sandbox.svarut.store
    states = ["KLAR_FOR_MOTTAK"] * 1997 + ["LEST", "AVVIST", "NOE_NYTT"]
    ids = store.seed(A, states)
    sent = [SentMessage(f"message-{index}", forsendelse_id) for index, forsendelse_id in enumerate(ids)]
    before = dict(store.counters)
    with httpx.Client(timeout=30) as http:
        updates = dpf_channel(sandbox, http).poll_statuses(sent)
    assert store.counters["status_sok_requests"] - before["status_sok_requests"] == 4
    assert store.counters["status_sok_ids"] - before["status_sok_ids"] == 2000
    by_message = {(u.message_id, u.status) for u in updates}
    assert by_message == {
        ("message-1997", "LEVERT"), ("message-1997", "LEST"), ("message-1998", "FEIL"), ("message-1999", "ANNET"),
    }
    [feil] = [u for u in updates if u.status == "FEIL"]
    assert "AVVIST" in feil.description and ids[1998] in feil.description


def test_another_accounts_forsendelser_are_not_shown(sandbox):
    store = sandbox.svarut.store
    [foreign] = store.seed("910077473", ["LEST"])
    with httpx.Client(timeout=30) as http:
        assert dpf_channel(sandbox, http).poll_statuses([SentMessage("m", foreign)]) == []


def test_a_send_cut_off_after_svarut_took_it_is_found_by_its_external_reference_not_sent_again(sandbox):
    from gateway.channels.base import Package
    from gateway.channels.dpf.channel import PreparedForsendelse
    from gateway.channels.dpf.client import UploadDocument

    store = sandbox.svarut.store
    message_id = "4f1d2c3b-5a69-4788-9a0b-1c2d3e4f5a6b"
    forsendelse = {"tittel": "Brev", "mottaker": {"navn": "Kommunen", "digitalId": "944444408"},
                   "kunDigitalLevering": True, "eksternReferanse": message_id,
                   "dokumenter": [{"filnavn": "brev.pdf", "mimeType": "application/pdf"}]}
    package = Package(message_id, A, "944444408",
                      PreparedForsendelse(forsendelse, (UploadDocument("brev.pdf", b"%PDF brev"),)))
    journaled: list[str] = []
    with httpx.Client(timeout=30) as http:
        channel = dpf_channel(sandbox, http)
        first = channel.send(package, None, journaled.append)
        sent_before = store.counters["sent"]
        # The crash came after SvarUt made the forsendelse and before its id was journaled: try again.
        again = channel.send(package, None, journaled.append)
    assert again == first and journaled == [first, first]
    assert store.counters["sent"] == sent_before, "no second forsendelse"
    assert store.by_external_reference(A, message_id) == [first]
