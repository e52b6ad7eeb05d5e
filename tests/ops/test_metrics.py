"""/metrics after a batch over two channels (DPO to the automatic peer, DPV to Altinn mailboxes),
parsed with prometheus_client's own parser; /healthz beside it."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dpo.network import PEER, A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.ops.support import OpsDaemon, healthz

DPV_ONLY = "974760673"
DPV_FAILING = "921000014"


def _drop(gateway: Gateway, name: str, receiver: str) -> str:
    message_id = str(uuid.uuid4())
    sidecar = sidecar_xml(
        receiver=receiver, documents=[{"file": "brev.pdf", "main": True, "mime": "application/pdf"}],
        extra=f"<messageId>{message_id}</messageId>",
    )
    make_folder_drop(gateway.outbox, name, files={"brev.pdf": pdf_bytes(name)}, sidecar=sidecar,
                     staging=gateway.root / "staging")
    return message_id


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def sandbox(tmp_path):
    network = SandboxProcess(tmp_path / "sandbox")
    yield network
    network.stop()


def test_metrics_count_a_batch_over_dpo_and_dpv(tmp_path, sandbox):
    root = tmp_path / "a"
    config = gateway_config(root, sandbox, A, ops={"enabled": True, "port": 0})
    gateway = Gateway(root, config)
    daemon = OpsDaemon(config, root / "daemon.log").start()
    gateway.process = daemon
    try:
        base = daemon.endpoint()
        before = scrape(base)
        assert value(before, "efm_gateway_queue_depth", phase="accepted") == 0
        # One status poll of DPV answered 503: counted by endpoint, kind and status; the next poll goes through.
        fault = {"rules": [{"fault": "error", "method": "GET", "path": "/correspondence/*", "status": 503,
                            "times": 1}]}
        httpx.post(f"{sandbox.url}/_faults", json=fault, timeout=10).raise_for_status()

        dpo = [_drop(gateway, f"dpo-{index}", PEER) for index in range(3)]
        dpv = [_drop(gateway, f"dpv-{index}", DPV_ONLY) for index in range(2)]
        failing = _drop(gateway, "dpv-feil", DPV_FAILING)
        for message_id in dpo + dpv:
            wait(lambda m=message_id: current(gateway.status, m) == "LEST", timeout=90, message=f"{message_id} LEST")
        wait(lambda: current(gateway.status, failing) == "FEIL", timeout=60, message="the failing DPV message FEIL")

        samples = scrape(base)
        statuses = "efm_gateway_statuses_total"
        for status in ("OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"):
            assert value(samples, statuses, direction="out", channel="DPO", status=status) == 3, status
        for status in ("OPPRETTET", "SENDT", "LEVERT", "LEST"):
            assert value(samples, statuses, direction="out", channel="DPV", status=status) == 2 + (
                status in ("OPPRETTET", "SENDT")
            ), status
        assert value(samples, statuses, direction="out", channel="DPV", status="MOTTATT") == 0
        assert value(samples, statuses, direction="out", channel="DPV", status="FEIL") == 1
        messages = "efm_gateway_messages"
        assert value(samples, messages, direction="out", channel="DPO", phase="done") == 3
        assert value(samples, messages, direction="out", channel="DPV", phase="done") == 2
        assert value(samples, messages, direction="out", channel="DPV", phase="failed") == 1
        assert value(samples, messages, direction="out", channel="DPO", phase="sent") == 0
        assert value(samples, "efm_gateway_send_latency_seconds_count", channel="DPO") == 3
        assert value(samples, "efm_gateway_send_latency_seconds_count", channel="DPV") == 3
        assert value(samples, "efm_gateway_delivery_latency_seconds_count", channel="DPO") == 3
        assert value(samples, "efm_gateway_delivery_latency_seconds_count", channel="DPV") == 2
        assert 0 < value(samples, "efm_gateway_send_latency_seconds_sum", channel="DPO") < 60
        for phase in ("accepted", "sending", "sent"):
            assert value(samples, "efm_gateway_queue_depth", phase=phase) == 0, phase
        assert value(samples, "efm_gateway_oldest_unsent_age_seconds") == 0
        # six messages to three receivers: six look-ups, one request to the registry per receiver (parallel
        # sends asking the same question wait for the first one's answer, and count as hits)
        hits = value(samples, "efm_gateway_registry_cache_lookups_total", result="hit")
        misses = value(samples, "efm_gateway_registry_cache_lookups_total", result="miss")
        assert (hits, misses) == (3, 3)
        assert value(samples, "efm_gateway_channel_errors_total", endpoint="dpv", kind="http", status="503") == 1
        assert value(samples, "efm_gateway_journal_commit_seconds_count") > 0
        for folder in ("outbox", "status", "inbox", "failed", "sent", "state", "work", "inbox_staging"):
            assert value(samples, "efm_gateway_disk_free_bytes", folder=f"folders.{folder}") > 0, folder

        code, report = healthz(base)
        assert code == 200 and report["healthy"] is True
        assert report["channels"]["dpo"]["reachable"] is True
        assert report["channels"]["dpv"]["reachable"] is True
        assert {"intake", "sender", "inbound-DPO", "status-poll-DPV", "pick-up"} <= set(report["workers"])
        assert report["status"].startswith("queued 0, sending 0, failed 1")
    finally:
        daemon.stop()


@pytest.fixture
def replying_sandbox(tmp_path):
    network = SandboxProcess(tmp_path / "sandbox", reply=True)
    yield network
    network.stop()


def test_a_received_message_is_counted_in_the_inbox_and_when_it_is_taken(tmp_path, replying_sandbox):
    root = tmp_path / "a"
    config = gateway_config(
        root, replying_sandbox, A, ops={"enabled": True, "port": 0},
        folders={"inbox_staging": "var/inbox-staging"},
    )
    gateway = Gateway(root, config)
    daemon = OpsDaemon(config, root / "daemon.log").start()
    gateway.process = daemon
    try:
        base = daemon.endpoint()
        _drop(gateway, "med-svar", PEER)
        wait(lambda: any(gateway.inbox.iterdir()), timeout=60, message="the peer's reply in the inbox")
        [reply] = list(gateway.inbox.iterdir())
        assert (root / "var" / "inbox-staging").is_dir() and not any((root / "var" / "inbox-staging").iterdir())
        assert not (root / "var" / "state" / "inbox-staging").exists()
        wait(lambda: value(scrape(base), "efm_gateway_oldest_inbox_age_seconds") > 0.5, timeout=10,
             message="the reply's age in the inbox")
        samples = scrape(base)
        assert value(samples, "efm_gateway_statuses_total", direction="in", channel="DPO",
                     status="INNKOMMENDE_MOTTATT") == 1
        assert value(samples, "efm_gateway_messages", direction="in", channel="DPO", phase="in_inbox") == 1
        assert value(samples, "efm_gateway_queue_depth", phase="in_inbox") == 1
        # From the peer making the reply (its SBD's creation time) to it being in our inbox: seconds.
        assert value(samples, "efm_gateway_receive_latency_seconds_count", channel="DPO") == 1
        assert 0 < value(samples, "efm_gateway_receive_latency_seconds_sum", channel="DPO") < 60

        for item in reply.iterdir():
            item.unlink()
        reply.rmdir()  # the archive system takes it
        wait(lambda: value(scrape(base), "efm_gateway_queue_depth", phase="in_inbox") == 0, timeout=30,
             message="the reply taken")
        samples = scrape(base)
        assert value(samples, "efm_gateway_statuses_total", direction="in", channel="DPO",
                     status="INNKOMMENDE_LEVERT") == 1
        assert value(samples, "efm_gateway_messages", direction="in", channel="DPO", phase="taken") == 1
        assert value(samples, "efm_gateway_inbox_pickup_seconds_count", channel="DPO") == 1
        assert value(samples, "efm_gateway_oldest_inbox_age_seconds") == 0
    finally:
        daemon.stop()
