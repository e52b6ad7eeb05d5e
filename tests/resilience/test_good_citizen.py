"""A real gateway against the sandbox on its three channels: a 429 with Retry-After keeps every request of
that message and of its channel (sends, listings, status polls) away until the time has passed, then the
message goes; a status poll answered 404 ends that message's polling with ANNET; a permanent 400 on a
send is FEIL at once, after one request. The sandbox records when each request came."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, settle, wait
from tests.dpo.statusfiles import NS, current, history, status_of

from .support import counting, drop_messages, log_lines, set_faults

# DPO messages go to B, whose gateway does not run here: nothing comes back to A on the shared sandbox, so
# A's receiver asks nothing that a rule for the sender's requests could catch instead (same paths).
DPV_ONLY = "974760673"  # Postkasse AS: only an Altinn mailbox
MUNICIPALITY = "944444408"  # Fiktiv kommune: SvarUt/SvarInn
FAST = {"channels": {"dpo": {"inbound_poll_seconds": 0.3}, "dpv": {"status_poll_seconds": 0.3},
                     "dpf": {"inbound_poll_seconds": 0.3, "status_poll_seconds": 0.3}}}
# Requests already on their way when the 429 was answered (the receiver's, say, in another thread) may still
# arrive within moments; nothing leaves after the gateway has read it.
ON_THE_WAY = 0.5


class Channel:
    def __init__(self, receiver: str, everything: str, send: tuple[str, str]) -> None:
        self.receiver = receiver
        self.everything = everything  # every path of the channel (sends, listings, downloads, status polls)
        self.send = send  # (method, path) of the request that takes the message


DPO_INITIALISE = ("POST", "/broker/api/v1/filetransfer")
CHANNELS = {
    "DPO": Channel(B, "/broker/api/v1/*", DPO_INITIALISE),
    "DPO upload": Channel(B, "/broker/api/v1/*", ("POST", "/broker/api/v1/filetransfer/*/upload")),
    "DPO scan look": Channel(B, "/broker/api/v1/*", ("GET", "/broker/api/v1/filetransfer/*-*")),
    "DPV": Channel(DPV_ONLY, "/correspondence/api/v1/*", ("POST", "/correspondence/api/v1/correspondence/upload")),
    "DPF": Channel(MUNICIPALITY, "/svarut/*", ("POST", "/svarut/api/v2/kontoer/*/forsendelser")),
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """One sandbox for the module (each test sets its own rules); each test has a gateway of its own."""
    sandbox = SandboxProcess(tmp_path_factory.mktemp("citizen") / "sandbox", allowed_log=("refused",))
    yield sandbox
    sandbox.stop()


@pytest.fixture
def gateway(tmp_path, sandbox):
    started: list[Gateway] = []

    def start() -> Gateway:
        started.append(Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A, **FAST)).start())
        return started[0]

    yield start
    for running in started:
        running.process.stop()


def rules(sandbox: SandboxProcess) -> list[dict]:
    return httpx.get(f"{sandbox.url}/_faults", timeout=10).json()["rules"]


def descriptions(gateway: Gateway, message_id: str, status: str) -> list[str]:
    root = status_of(gateway.status, message_id)
    return [entry.findtext("s:description", default="", namespaces=NS)
            for entry in root.findall("s:history/s:status", NS) if entry.findtext("s:value", namespaces=NS) == status]


def _retry_after_is_honoured(sandbox: SandboxProcess, start, channel: Channel, seconds: int) -> None:
    method, path = channel.send
    set_faults(
        sandbox,
        counting("*", channel.everything) | {"caller": A},
        counting(method, path) | {"caller": A},
        {"fault": "error", "status": 429, "retry_after_seconds": seconds, "method": method, "path": path,
         "caller": A, "times": 1},
    )
    gateway = start()
    [message_id] = drop_messages(gateway, 1, receiver=channel.receiver)
    wait(lambda: current(gateway.status, message_id) not in (None, "OPPRETTET"), timeout=seconds + 30,
         message="sent after the 429")
    assert "SENDT" in history(gateway.status, message_id)
    on_channel, on_send, [throttled] = (rule["fired_at"] for rule in rules(sandbox))
    assert throttled in on_send
    early = [round(moment - throttled, 2) for moment in on_channel
             if throttled + ON_THE_WAY < moment < throttled + seconds]
    assert early == [], f"requests on the channel {early} s after a 429 with Retry-After: {seconds}"
    again = [moment for moment in on_send if moment > throttled + ON_THE_WAY]
    assert again, "the message's request was made again"
    assert again[0] - throttled >= seconds, f"asked again {again[0] - throttled:.2f} s after Retry-After: {seconds}"
    assert again[0] - throttled < seconds + 6, "and soon after it was over (the plain back-off is 20 s)"
    assert [moment for moment in on_channel if moment > throttled + seconds], "the channel is used again after it"
    assert log_lines(gateway.root / "daemon.log", f"the server asks us to wait {seconds} s")


@pytest.mark.slow
def test_a_429_with_retry_after_25_on_dpo_keeps_the_message_and_its_channel_waiting_25_s(sandbox, gateway):
    # Longer than the plain back-off can be (20 s + 20 %): only the header can have kept the message this long.
    _retry_after_is_honoured(sandbox, gateway, CHANNELS["DPO"], 25)


@pytest.mark.parametrize("name", ["DPO", "DPO upload", "DPO scan look", "DPV", "DPF"])
def test_a_429_with_retry_after_keeps_the_message_and_its_channel_waiting(name, sandbox, gateway):
    """The same rule as the 25 s above, with a shorter wait: the number only travels from the header."""
    _retry_after_is_honoured(sandbox, gateway, CHANNELS[name], 6)


def test_a_dpv_status_poll_answered_404_ends_that_messages_polling_with_annet(sandbox, gateway):
    polls = "/correspondence/api/v1/correspondence/*"
    set_faults(sandbox, counting("GET", polls) | {"caller": A},
               {"fault": "error", "status": 404, "method": "GET", "path": polls, "caller": A})
    a = gateway()
    [message_id] = drop_messages(a, 1, receiver=DPV_ONLY)
    wait(lambda: "ANNET" in history(a.status, message_id), message="ANNET after the 404")
    [words] = descriptions(a, message_id, "ANNET")
    assert words.startswith("deleted at the provider: Altinn no longer has the correspondence")
    assert "HTTP 404" in words
    asked = rules(sandbox)[0]["injected"]
    settle(2.0)  # about six rounds of status polling
    assert rules(sandbox)[0]["injected"] == asked == 1, "asked once, and never again"
    assert history(a.status, message_id) == ["OPPRETTET", "SENDT", "ANNET"]


def test_a_dpf_status_search_answered_404_for_a_deleted_forsendelse_ends_its_polling_with_annet(sandbox, gateway):
    listing = "/svarut/tjenester/svarinn/mottaker/hentNyeForsendelser"
    search = "/svarut/api/v2/kontoer/*/forsendelser/status-sok"
    # The municipality cannot list its SvarInn: the forsendelse waits there, its status open.
    set_faults(sandbox, counting("POST", search) | {"caller": A},
               {"fault": "error", "status": 503, "method": "GET", "path": listing, "caller": MUNICIPALITY})
    a = gateway()
    [message_id] = drop_messages(a, 1, receiver=MUNICIPALITY)
    wait(lambda: current(a.status, message_id) == "SENDT", message="SENDT on DPF")
    wait(lambda: rules(sandbox)[0]["injected"] >= 2, message="its status searched")
    [forsendelse] = [f for f in httpx.get(f"{sandbox.url}/svarut/_sandbox/forsendelser", timeout=10).json()
                     if f["eksternReferanse"] == message_id]
    assert httpx.delete(f"{sandbox.url}/svarut/_sandbox/forsendelser/{forsendelse['id']}").status_code == 204
    set_faults(sandbox, counting("POST", search) | {"caller": A},
               {"fault": "error", "status": 404, "method": "POST", "path": search, "caller": A})
    wait(lambda: "ANNET" in history(a.status, message_id), message="ANNET after the 404")
    [words] = descriptions(a, message_id, "ANNET")
    assert words.startswith(f"deleted at the provider: SvarUt no longer has forsendelse {forsendelse['id']}")
    asked = rules(sandbox)[0]["injected"]
    settle(2.0)
    assert rules(sandbox)[0]["injected"] == asked == 1, "searched once, and never again"


@pytest.mark.parametrize("name", ["DPO", "DPV", "DPF"])
def test_a_permanent_400_on_send_is_feil_at_once_after_one_request(name, sandbox, gateway):
    channel = CHANNELS[name]
    method, path = channel.send
    set_faults(sandbox, counting(method, path) | {"caller": A},
               {"fault": "error", "status": 400, "method": method, "path": path, "caller": A})
    a = gateway()
    started = time.monotonic()
    [message_id] = drop_messages(a, 1, receiver=channel.receiver)
    wait(lambda: current(a.status, message_id) == "FEIL", message="FEIL after the 400")
    assert time.monotonic() - started < 10, "at once, not at the deadline"
    [words] = descriptions(a, message_id, "FEIL")
    assert "HTTP 400" in words and "Fault injected by the sandbox" in words, "the server's own words"
    settle(1.5)
    assert rules(sandbox)[0]["injected"] == 1, "one request, never repeated"
    assert history(a.status, message_id) == ["OPPRETTET", "FEIL"]
