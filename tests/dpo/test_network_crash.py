"""Crash safety across the network path with real kill -9: a batch of messages from A to B while
both gateways are killed at random moments and restarted. Every message reaches B's archive exactly
once and every status file at A reaches LEVERT."""

from __future__ import annotations

import collections
import random
import shutil
import threading
import time
import uuid

import pytest

from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

from .network import A, B, Gateway, SandboxProcess, gateway_config, wait
from .statusfiles import all_reached, current, message_ids_of_status_files

MESSAGES = 200
KILLS_EACH = 3


@pytest.mark.slow
def test_kill_minus_nine_on_both_sides_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(4242)
    sandbox = SandboxProcess(tmp_path / "sandbox")
    a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
    b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
    message_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(MESSAGES)]
    taken: collections.Counter[str] = collections.Counter()
    stop_archive = threading.Event()

    def write_drops() -> None:
        for index, message_id in enumerate(message_ids):
            sidecar = sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>")
            files = {"brev.pdf": pdf_bytes(f"brev {index}")}
            make_folder_drop(a.outbox, f"m{index:03d}", files=files, sidecar=sidecar, staging=a.root / "staging")
            time.sleep(rng.uniform(0, 0.04))

    def archive_system() -> None:
        """B's archive: takes each complete message out of the inbox, and counts what it saw."""
        while not stop_archive.is_set():
            for folder in list(b.inbox.iterdir()) if b.inbox.exists() else []:
                if (folder / "message.xml").exists() and (folder / "brev.pdf").exists():
                    taken[folder.name] += 1
                    shutil.rmtree(folder)
            time.sleep(0.05)

    writer = threading.Thread(target=write_drops)
    archive = threading.Thread(target=archive_system)
    writer.start()
    archive.start()
    kills = {A: 0, B: 0}
    try:
        while min(kills.values()) < KILLS_EACH:
            time.sleep(rng.uniform(0.5, 2.0))
            victim = rng.choice([orgnr for orgnr, count in kills.items() if count < KILLS_EACH])
            gateway = a if victim == A else b
            gateway.process.kill9()
            kills[victim] += 1
            time.sleep(rng.uniform(0, 0.5))
            gateway.start()
        writer.join()
        wait(lambda: set(taken) == set(message_ids), 180, message="every message in B's archive")
        wait(all_reached(a.status, message_ids, "LEVERT"), 120, message="LEVERT for every message at A")
        wait(
            lambda: all(current(a.status, m) == "LEVERT" for m in message_ids),
            30,
            message="LEVERT the current status of every message at A",
        )
        time.sleep(2)  # anything still in flight would show up as a duplicate now
    finally:
        stop_archive.set()
        writer.join()
        archive.join()
        for gateway in (a, b):
            if gateway.process.alive():
                gateway.process.stop()
        stats = sandbox.stats()
        sandbox.stop()

    assert kills[A] >= KILLS_EACH and kills[B] >= KILLS_EACH
    duplicates = {m: n for m, n in taken.items() if n != 1}
    assert duplicates == {}, f"messages that reached B's archive more than once: {duplicates}"
    assert sorted(message_ids_of_status_files(a.status)) == sorted(message_ids), "one status file per message"
    uploads = stats["uploadsBySenderAndReference"]
    per_message = [uploads.get(f"0192:{A}/{m}", 0) for m in message_ids]
    assert min(per_message) >= 1
    # An upload cut off by kill -9 cannot be resumed on the broker: it is redone on a new transfer,
    # and B's de-duplication by messageId keeps the archive at exactly once.
    assert max(per_message) <= 2
    print(f"\nkills: {kills}; uploads per message: {collections.Counter(per_message)}")
