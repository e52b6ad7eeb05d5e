"""Two nodes (real daemons) on one PostgreSQL and one shared folder tree race for the same 500 drops (polling
intake, as on a share): each drop is claimed by exactly one node, through the atomic rename into the shared work
area and its journal row, each message is sent exactly once (counted at the sandbox per messageId), and every
status file reaches its final status. B's answers are taken by both nodes, each once (inbound takes claimed one by
one)."""

from __future__ import annotations

import collections
import re
import shutil
import threading
import time
import uuid

import pytest

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current, message_ids_of_status_files
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.foundation.process import DaemonProcess
from tests.nodes.support import node_config, stop_then_check

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DROPS = 500
ACCEPTED = re.compile(r"accepted drop '([^']+)'")
RUNNING = "efm-gateway is running for organisation"
LEVERT_FROM = re.compile(r"message ([0-9a-f-]+): LEVERT from ")


# Two nodes, the peer, the sandbox and PostgreSQL on two shared cores: a round of 250 drops or status files can stand
# still for half a minute while it moves on; the watchdog's grace is not what this test is about.
PATIENT = {"ops": {"heartbeat_grace_seconds": 600}}


@pytest.mark.timeout(1200)
def test_two_nodes_race_for_the_same_drops_on_a_shared_folder_tree(tmp_path, postgres_database):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
    configs = [node_config(tmp_path, sandbox, postgres_database, name, **PATIENT) for name in ("node-1", "node-2")]
    outbox = tmp_path / "share" / "outbox"
    outbox.mkdir(parents=True)
    nodes = [DaemonProcess(config, config.parent / "daemon.log").start() for config in configs]
    # Both nodes watch the outbox before the first drop comes, so they race for every one of them (dropped in one
    # go before both ran, the first node up could take them all).
    wait(lambda: all(RUNNING in node.log.read_text(errors="replace") for node in nodes if node.log.exists())
         and all(node.log.exists() for node in nodes), 120, message="both nodes running")
    message_ids = []
    for index in range(DROPS):
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
    try:
        wait(lambda: set(taken) == set(message_ids), 600, message="every message in B's archive")
        wait(lambda: all(current(status, m) == "LEVERT" for m in message_ids), 300,
             message="LEVERT for every message")
        time.sleep(2)  # anything still in flight would show up as a duplicate now
    finally:
        stop_archive.set()
        archive.join()
        stats = sandbox.stats()
        stop_then_check([*nodes, b.process], sandbox)
    accepted = [ACCEPTED.findall(node.log.read_text(errors="replace")) for node in nodes]
    assert sorted(accepted[0] + accepted[1]) == [f"m{index:03d}" for index in range(DROPS)], "each drop claimed once"
    assert all(accepted), f"both nodes took drops: {[len(names) for names in accepted]}"
    with postgres_database.connect() as connection:
        rows = connection.execute("SELECT count(*), count(DISTINCT claim_id), count(DISTINCT message_id) "
                                  "FROM messages").fetchone()
    assert rows == (DROPS, DROPS, DROPS)
    assert {m: n for m, n in taken.items() if n != 1} == {}, "messages in B's archive more than once"
    uploads = stats["uploadsBySenderAndReference"]
    assert collections.Counter(uploads.get(f"0192:{A}/{m}", 0) for m in message_ids) == {1: DROPS}
    assert sorted(message_ids_of_status_files(status)) == sorted(message_ids), "one status file per message"
    assert not [entry for entry in outbox.iterdir() if not entry.name.startswith(".")]
    # B's answers (MOTTATT, LEVERT) are transfers to A: one node lists them, both take them, each one once.
    answered = [LEVERT_FROM.findall(node.log.read_text(errors="replace")) for node in nodes]
    assert all(answered), f"both nodes took answers: {[len(ids) for ids in answered]}"
    assert collections.Counter(answered[0] + answered[1]) == dict.fromkeys(message_ids, 1), "each answer taken once"
    print(f"\ndrops taken per node: {[len(names) for names in accepted]}; LEVERT answers taken per node: "
          f"{[len(ids) for ids in answered]}")
