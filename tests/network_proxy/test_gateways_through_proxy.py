"""Two real gateway daemons whose only way out is a forward proxy (HTTP_PROXY/HTTPS_PROXY with
credentials, NO_PROXY empty), on the sandbox network run in the test process: the sample drops reach
their final statuses on DPO, DPV, DPF and DPI, a message goes from one gateway to the other and back, the
peers' replies are taken and answered with statuses, and every request either gateway made passed the
proxy, naming the gateway; none reached the sandbox directly. And NO_PROXY's counterpart in config
(network.no_proxy) sends a gateway direct."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from lxml import etree

from tests.dpo.statusfiles import NS, current, history, inbox_message
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.foundation.process import status_files, wait_for

from .forward_proxy import VIA
from .support import ProxiedGateway, SandboxObserver, Seen, config_for, environment_without_proxies

REPO = Path(__file__).resolve().parents[2]
A, B = "991825827", "910077473"
PEER, MUNICIPALITY = "910075918", "944444408"
SAMPLE_FOLDERS = ("brev-til-sandkasse-peer", "melding-til-altinn-postkasse", "brev-til-kommune", "brev-til-innbygger",
                  "ugyldig-mottaker")
FINAL = {
    "brev-til-sandkasse-peer": "LEST", "melding-til-altinn-postkasse": "LEST", "melding-flat": "LEST",
    "brev-til-kommune": "LEST", "brev-til-innbygger": "LEST", "ugyldig-mottaker": "FEIL",
}
SERVICES = {"sr", "token", "authentication", "broker", "correspondence", "svarut", "dpi", "kontaktregisteret", "pki"}
# the registry, Maskinporten, the Altinn token exchange, DPO, DPV, DPF, DPI (Corner 2, and KRR's print certificate,
# the DPI channel fetches), and the CA's revocation services (OCSP, CRL)
PASSWORD = "pr0xy-s3cret"


def _drop_samples(gateway: ProxiedGateway, staging: Path) -> None:
    samples = REPO / "sample_drops"
    for folder in SAMPLE_FOLDERS:
        shutil.copytree(samples / folder, staging / folder)
        os.rename(staging / folder, gateway.outbox / folder)  # a folder drop arrives in one rename
    shutil.copy(samples / "flat" / "melding-flat.pdf", gateway.outbox / "melding-flat.pdf")  # documents first,
    shutil.copy(samples / "flat" / "melding-flat.xml", staging / "melding-flat.xml")  # the sidecar last
    os.rename(staging / "melding-flat.xml", gateway.outbox / "melding-flat.xml")


def _states_by_drop(gateway: ProxiedGateway) -> dict[str | None, str | None]:
    states = {}
    for path in status_files(gateway.status):
        if path.name.startswith("in."):
            continue
        try:
            root = etree.parse(str(path)).getroot()
        except etree.XMLSyntaxError:
            continue  # a status file is replaced by rename; a half-read one is read again next time
        states[root.findtext("s:dropName", namespaces=NS)] = root.findtext("s:current", namespaces=NS)
    return states


def _incoming_states(gateway: ProxiedGateway) -> dict[str, str | None]:
    states = {}
    for path in gateway.status.glob("in.*.xml"):
        try:
            states[path.name] = etree.parse(str(path)).getroot().findtext("s:current", namespaces=NS)
        except etree.XMLSyntaxError:
            states[path.name] = None
    return states


def _senders_in_inbox(gateway: ProxiedGateway) -> dict[str, str]:
    senders = {}
    for folder in gateway.inbox.iterdir():
        if (folder / "message.xml").exists():
            senders[folder.name] = inbox_message(folder).findtext("m:sender", namespaces=NS)
    return senders


def _assert_every_gateway_request_passed_the_proxy(observer: SandboxObserver, proxy, sandbox_host: str) -> list[Seen]:
    seen = observer.seen()
    by_gateways = [s for s in seen if s.user_agent.startswith("efm-gateway/")]
    proxied = [s for s in seen if s.via is not None]
    direct = [s for s in seen if s.via is None]
    assert by_gateways, "the gateways made no request at all"
    # Every request that named a gateway came through the proxy, on a connection the proxy opened ...
    assert [s for s in by_gateways if s.via != VIA or s.client_port not in proxy.upstream_ports] == []
    # ... every request the proxy carried arrived, and only the gateways used it ...
    assert proxy.requests == {sandbox_host: len(proxied)}
    assert proxied == by_gateways
    assert proxy.refused == 0
    # ... and whatever reached the sandbox directly came from this process (its own peers), not a gateway.
    assert [s for s in direct if not s.from_this_process] == []
    return by_gateways


@pytest.mark.slow
def test_two_gateways_send_and_receive_on_every_channel_only_through_the_proxy(network, proxy, tmp_path):
    sandbox, observer = network
    env = environment_without_proxies(
        HTTP_PROXY=proxy.url_with_credentials(), HTTPS_PROXY=proxy.url_with_credentials(), NO_PROXY=""
    )
    gateways: dict[str, ProxiedGateway] = {}
    try:
        for orgnr, name in ((A, "a"), (B, "b")):
            gateways[orgnr] = ProxiedGateway(tmp_path / name, config_for(tmp_path / name, sandbox, orgnr), env).start()
        a, b = gateways[A], gateways[B]

        # The sample drops at A: DPO to the automatic peer (a folder and a flat drop), DPV to an Altinn
        # mailbox, DPF to a municipality, and one that is refused before any network is asked.
        _drop_samples(a, tmp_path / "staging")
        # A message from A to B, which B's archive takes and answers with a kvittering.
        message_id = str(uuid.uuid4())
        to_b = sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>",
                           documents=[{"file": "vedtak.pdf", "main": True, "mime": "application/pdf"}])
        make_folder_drop(a.outbox, "til-b", files={"vedtak.pdf": pdf_bytes("vedtak")}, sidecar=to_b,
                         staging=a.root / "staging")
        wait_for(lambda: (b.inbox / message_id).is_dir(), 60, interval=0.2, message="A's message in B's inbox")
        shutil.rmtree(b.inbox / message_id)
        wait_for(lambda: current(a.status, message_id) == "LEVERT", 60, interval=0.2, message="LEVERT at A")
        receipt = sidecar_xml(
            receiver=A, message_type="arkivmelding_kvittering", documents=[],
            extra=f"<receipt><receiptType>OK</receiptType><relatedToMessageId>{message_id}</relatedToMessageId>"
                  "</receipt>",
        )
        make_folder_drop(b.outbox, "kvittering", files={}, sidecar=receipt, staging=b.root / "staging")
        wait_for(lambda: current(a.status, message_id) == "LEST", 60, interval=0.2, message="LEST at A")
        assert history(a.status, message_id) == ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"]

        wait_for(lambda: {k: v for k, v in _states_by_drop(a).items() if k in FINAL} == FINAL, 120, interval=0.5,
                 message="the sample drops' final statuses",
                 explain=lambda: f"states {_states_by_drop(a)}; A's log ends:\n{a.log()[-6000:]}")
        # The peer and the municipality reply in the same conversations; A's archive takes the replies,
        # and A tells their senders (INNKOMMENDE_LEVERT).
        wait_for(lambda: {PEER, MUNICIPALITY} <= set(_senders_in_inbox(a).values()), 60, interval=0.2,
                 message="the replies of the peer and the municipality in A's inbox")
        for folder in list(a.inbox.iterdir()):
            shutil.rmtree(folder)
        wait_for(lambda: _incoming_states(a) and set(_incoming_states(a).values()) == {"INNKOMMENDE_LEVERT"},
                 60, interval=0.2, message="the replies delivered at A")
    finally:
        for gateway in gateways.values():
            gateway.process.stop()  # fails on an ERROR line or a traceback in its log

    by_gateways = _assert_every_gateway_request_passed_the_proxy(observer, proxy, sandbox.url.removeprefix("http://"))
    assert {s.path.split("/")[1] for s in by_gateways} == SERVICES
    assert {s.user_agent for s in by_gateways} == {by_gateways[0].user_agent}
    for gateway in gateways.values():
        log = gateway.log()
        assert f"outbound: through the proxy http://***@127.0.0.1:{proxy.port} (from HTTP_PROXY)" in log
        assert PASSWORD not in log


@pytest.mark.slow
def test_network_no_proxy_naming_the_sandbox_sends_a_gateway_direct(network, proxy, tmp_path):
    sandbox, observer = network
    env = environment_without_proxies(HTTP_PROXY=proxy.url_with_credentials(), NO_PROXY="")
    config = config_for(tmp_path / "a", sandbox, A, network={"no_proxy": "192.0.2.0/24, 127.0.0.0/8"})
    gateway = ProxiedGateway(tmp_path / "a", config, env).start()
    try:
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=PEER, extra=f"<messageId>{message_id}</messageId>",
                              documents=[{"file": "vedtak.pdf", "main": True, "mime": "application/pdf"}])
        make_folder_drop(gateway.outbox, "til-peer", files={"vedtak.pdf": pdf_bytes("vedtak")}, sidecar=sidecar,
                         staging=tmp_path / "staging")
        wait_for(lambda: current(gateway.status, message_id) == "LEST", 60, interval=0.2, message="LEST")
    finally:
        gateway.process.stop()

    assert proxy.total() == 0
    by_gateway = [s for s in observer.seen() if s.user_agent.startswith("efm-gateway/")]
    assert {s.path.split("/")[1] for s in by_gateway} >= {"sr", "token", "broker"}
    assert [s for s in by_gateway if s.via is not None or s.from_this_process] == []
    assert "outbound: direct (network.no_proxy names 127.0.0.0/8) for network.service_registry_url" in gateway.log()
