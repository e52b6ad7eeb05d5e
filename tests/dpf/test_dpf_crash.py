"""Crash safety on DPF with real kill -9: 100 forsendelser out to the municipality and 100 in from
it while our gateway is killed at random moments and restarted. Each arrives exactly once: SvarUt
holds one forsendelse per messageId (an interrupted send is found by its eksternReferanse), and our
archive system sees each incoming message once; every incoming forsendelse SvarInn counts as
acknowledged is one our archive system got (kvitterMottak only after the inbox hand-over)."""

from __future__ import annotations

import collections
import random
import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current, inbox_message
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

MUNICIPALITY = "944444408"
MESSAGES = 100
KILLS = 5
FAST_DPF = {"channels": {"dpf": {"inbound_poll_seconds": 0.3, "status_poll_seconds": 0.5}}}
NS = {"m": "urn:efm-gateway:message:1"}
STATUS_NS = {"s": "urn:efm-gateway:status:1"}


def _in_inbox_at(folder: Path, message_id: str) -> datetime | None:
    root = etree.parse(str(folder / f"in.{message_id}.xml")).getroot()
    for entry in root.findall("s:history/s:status", STATUS_NS):
        if entry.findtext("s:value", namespaces=STATUS_NS) == "INNKOMMENDE_MOTTATT":
            return datetime.fromisoformat(entry.findtext("s:time", namespaces=STATUS_NS))
    return None


@pytest.mark.slow
def test_kill_minus_nine_during_100_forsendelser_out_and_100_in_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(1212)
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateway = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A, **FAST_DPF)).start()
    outgoing = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(MESSAGES)]
    incoming = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(MESSAGES)]
    taken: collections.Counter[str] = collections.Counter()
    stop_archive = threading.Event()

    def write_drops() -> None:
        for index, message_id in enumerate(outgoing):
            sidecar = sidecar_xml(receiver=MUNICIPALITY, extra=f"<messageId>{message_id}</messageId>")
            make_folder_drop(gateway.outbox, f"m{index:03d}", files={"brev.pdf": pdf_bytes(f"brev {index}")},
                             sidecar=sidecar, staging=gateway.root / "staging")
            time.sleep(rng.uniform(0, 0.03))

    def municipality_sends() -> None:
        with httpx.Client(timeout=30) as http:
            for index, message_id in enumerate(incoming):
                http.post(f"{sandbox.url}/svarut/_sandbox/send", json={
                    "sender": MUNICIPALITY, "receiver": A, "title": f"Svar {index}", "messageId": message_id,
                    "conversationId": str(uuid.uuid4())}).raise_for_status()
                time.sleep(rng.uniform(0, 0.03))

    def archive_system() -> None:
        while not stop_archive.is_set():
            for folder in list(gateway.inbox.iterdir()) if gateway.inbox.exists() else []:
                if (folder / "message.xml").exists():
                    taken[inbox_message(folder).findtext("m:messageId", namespaces=NS)] += 1
                    shutil.rmtree(folder)
            time.sleep(0.05)

    threads = [threading.Thread(target=write_drops), threading.Thread(target=municipality_sends),
               threading.Thread(target=archive_system)]
    for thread in threads:
        thread.start()
    kills = 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 1.5))
            gateway.process.kill9()
            kills += 1
            time.sleep(rng.uniform(0, 0.3))
            gateway.start()
        threads[0].join()
        threads[1].join()
        wait(lambda: set(taken) == set(incoming), 180, message="every incoming message in our archive")
        wait(lambda: all(current(gateway.status, m) == "LEST" for m in outgoing), 180,
             message="LEST for every outgoing message")
        time.sleep(2)  # anything still in flight would show up as a duplicate now
        summary = httpx.get(f"{sandbox.url}/svarut/_sandbox/forsendelser", timeout=30).json()
    finally:
        stop_archive.set()
        for thread in threads:
            thread.join()
        if gateway.process.alive():
            gateway.process.stop()
        sandbox.stop()

    assert {m: n for m, n in taken.items() if n != 1} == {}, "an incoming message reached the archive twice"
    sent_per_message = collections.Counter(f["eksternReferanse"] for f in summary if f["sender"] == A)
    assert {m: sent_per_message[m] for m in outgoing if sent_per_message[m] != 1} == {}, "one forsendelse each"
    received = [f for f in summary if f["sender"] == MUNICIPALITY and f["receiver"] == A]
    assert len(received) == MESSAGES
    assert all(f["status"] == "LEST" for f in received), "every incoming forsendelse acknowledged (kvitterMottak)"
    # Each was acknowledged only after the journal had it in the inbox (INNKOMMENDE_MOTTATT).
    for forsendelse in received:
        in_inbox = _in_inbox_at(gateway.status, forsendelse["eksternReferanse"])
        assert in_inbox is not None and in_inbox <= datetime.fromisoformat(forsendelse["acknowledged_at"])
    print(f"\nkills: {kills}")
