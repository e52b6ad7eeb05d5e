"""A node stopped with SIGSTOP for longer than its claims' lease while it holds them, then continued: the other
node takes the work over and it is done once (each message once in the receiver's archive, every status file at
its final status), and the woken node's late writes are refused by the fencing token, one line per claim."""

from __future__ import annotations

import collections
import re
import shutil
import signal
import threading
import time
import uuid

import httpx
import pytest

from gateway.journal.claims import LEASE_SECONDS
from tests.dpo.network import B, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.foundation.process import DaemonProcess
from tests.nodes.support import node_config, stop_then_check
from tests.nodes.test_database_outage import OUTAGE_LINE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 20
REFUSED = re.compile(r"node node-1: its claim on (\S+) \(token \d+\) was taken over by (?:node-2|another node)")


def held_sends(postgres_database, node: str) -> list[str]:
    import psycopg

    with postgres_database.connect() as connection:
        try:
            found = connection.execute(
                "SELECT work FROM claims WHERE node = %s AND work LIKE 'send:%%' AND expires_at > %s",
                (node, time.time())).fetchall()
        except psycopg.errors.UndefinedTable:  # the node has not made its tables yet
            return []
    return [work for (work,) in found]


@pytest.mark.timeout(900)
def test_a_node_paused_past_its_lease_is_fenced_out_and_its_work_done_once(tmp_path, postgres_database):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    # Slow uploads: node-1 is paused while sends it claimed are under way.
    httpx.post(f"{sandbox.url}/_faults", json={"seed": 7, "rules": [
        {"fault": "latency", "method": "POST", "path": "/broker/*upload", "delay_ms": 1500}]}, timeout=10,
    ).raise_for_status()
    b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
    configs = [node_config(tmp_path, sandbox, postgres_database, name) for name in ("node-1", "node-2")]
    # A session the server ended under the paused node (idle in its transaction) is an outage to it when it wakes;
    # its workers' silence through the pause is no hang (its watchdog says so once, in a WARNING).
    node1 = DaemonProcess(configs[0], configs[0].parent / "daemon.log", allowed_log=(OUTAGE_LINE,)).start()
    node2 = DaemonProcess(configs[1], configs[1].parent / "daemon.log")
    outbox = tmp_path / "share" / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    message_ids = []
    for index in range(MESSAGES):
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>")
        make_folder_drop(outbox, f"m{index:03d}", files={"brev.pdf": pdf_bytes(f"brev {index}")}, sidecar=sidecar,
                         staging=tmp_path / "staging")
        message_ids.append(message_id)
    taken: collections.Counter[str] = collections.Counter()
    stop_archive = threading.Event()

    def archive_system() -> None:
        while not stop_archive.is_set():
            for folder in list(b.inbox.iterdir()) if b.inbox.exists() else []:
                if (folder / "message.xml").exists() and (folder / "brev.pdf").exists():
                    taken[folder.name] += 1
                    shutil.rmtree(folder)
            time.sleep(0.05)

    archive = threading.Thread(target=archive_system)
    archive.start()
    status = tmp_path / "share" / "status"
    paused = False
    try:
        wait(lambda: len(held_sends(postgres_database, "node-1")) >= 3, 120, message="node-1 holding sends")
        node1.process.send_signal(signal.SIGSTOP)
        paused = True
        held = held_sends(postgres_database, "node-1")
        assert held
        node2.start()
        time.sleep(LEASE_SECONDS + 15)  # past the lease: node-2 takes the paused node's sends over
        wait(lambda: all(current(status, m) in ("SENDT", "MOTTATT", "LEVERT") for m in message_ids), 180,
             message="every message sent while node-1 sleeps")
        node1.process.send_signal(signal.SIGCONT)
        paused = False
        wait(lambda: set(taken) == set(message_ids), 180, message="every message in B's archive")
        wait(lambda: all(current(status, m) == "LEVERT" for m in message_ids), 180, message="LEVERT for all")
        wait(lambda: REFUSED.search(node1.log.read_text(errors="replace")) is not None, 60,
             message="node-1's late write refused")
        time.sleep(3)  # anything still in flight would show up as a duplicate now
    finally:
        if paused:
            node1.process.send_signal(signal.SIGCONT)
        stop_archive.set()
        archive.join()
        stop_then_check([node1, node2, b.process], sandbox)
    assert {m: n for m, n in taken.items() if n != 1} == {}, "messages in B's archive more than once"
    refused = REFUSED.findall(node1.log.read_text(errors="replace"))
    stood_still = re.findall(r"WARNING gateway\.ops\.watchdog: the daemon did not run for (\d+) s",
                             node1.log.read_text(errors="replace"))
    assert len(stood_still) == 1 and int(stood_still[0]) >= LEASE_SECONDS, stood_still
    assert refused and len(refused) == len(set(refused)), f"one line per claim taken over: {refused}"
    assert set(refused) <= set(held) | {w for w in refused if w.startswith("job:")}
