"""SvarUt's states as our statuses, and status search in batches against the sandbox SvarUt."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.channels.base import SentMessage
from gateway.channels.dpf.forsendelse import STATE_MEANINGS, updates_for_state
from gateway.channels.dpf.settings import DpfChannelConfig
from gateway.channels.registry import ChannelTools, build_channels
from gateway.clock import SystemClock
from gateway.devcerts import dev_identity
from gateway.errors import PermanentChannelError
from gateway.formats.keys import TrustStore
from gateway.sandbox.fault_rules import FaultRule
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


def dpf_channel(network, http: httpx.Client, **changed: str):
    identity = dev_identity(network.pki, A)
    settings = {**network.gateway_settings(A)["channels"]["dpf"], **changed}
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


STATUS_SEARCH = "/svarut/api/v2/kontoer/*/forsendelser/status-sok"


@pytest.fixture
def faults(sandbox):
    sandbox.server.faults.clear()
    yield sandbox.server.faults
    sandbox.server.faults.clear()


def test_a_status_search_answered_404_is_narrowed_to_the_forsendelse_svarut_no_longer_has(sandbox, faults):
    store = sandbox.svarut.store
    ids = store.seed(A, ["KLAR_FOR_MOTTAK", "KLAR_FOR_MOTTAK", "LEST", "KLAR_FOR_MOTTAK"])
    sent = [SentMessage(f"message-{index}", forsendelse_id) for index, forsendelse_id in enumerate(ids)]
    # The batch, its first half and the first forsendelse alone are answered 404: that one is gone.
    faults.set_rules(FaultRule("error", method="POST", path=STATUS_SEARCH, caller=A, status=404, times=3))
    before = store.counters["status_sok_requests"]
    with httpx.Client(timeout=30) as http:
        updates = dpf_channel(sandbox, http).poll_statuses(sent)
    [gone] = [update for update in updates if update.ends_polling]
    assert (gone.message_id, gone.status) == ("message-0", "ANNET")
    assert gone.description.startswith("deleted at the provider: SvarUt no longer has forsendelse " + ids[0])
    assert "HTTP 404" in gone.description
    assert {(u.message_id, u.status) for u in updates if not u.ends_polling} == {
        ("message-2", "LEVERT"), ("message-2", "LEST")}, "the others' statuses still come in the same round"
    assert store.counters["status_sok_requests"] - before == 2, "message-1 alone, then the second half"


def test_a_404_for_a_forsendelse_svarut_still_finds_by_its_reference_is_not_called_deleted(sandbox, faults):
    store = sandbox.svarut.store
    [kept] = store.seed(A, ["KLAR_FOR_MOTTAK"])
    store.forsendelser[kept].forsendelse["eksternReferanse"] = "message-kept"
    faults.set_rules(FaultRule("error", method="POST", path=STATUS_SEARCH, caller=A, status=404, times=1))
    with httpx.Client(timeout=30) as http:
        assert dpf_channel(sandbox, http).poll_statuses([SentMessage("message-kept", kept)]) == []


def test_a_wrong_account_fails_the_round_instead_of_calling_every_message_deleted(sandbox):
    [forsendelse_id] = sandbox.svarut.store.seed(A, ["KLAR_FOR_MOTTAK"])
    with httpx.Client(timeout=30) as http:
        channel = dpf_channel(sandbox, http, account_id=str(uuid.uuid4()))
        with pytest.raises(PermanentChannelError, match=r"HTTP 404.*no SvarUt account"):
            channel.poll_statuses([SentMessage("message-0", forsendelse_id)])
