"""Hundreds of messages through a network that breaks 30 % of the broker's requests: every message arrives
exactly once, every sender hears MOTTATT, and neither gateway logs a traceback or an ERROR line."""

from __future__ import annotations

import collections
import shutil
import threading
import time

import pytest

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, stop_all, wait
from tests.dpo.statusfiles import all_reached, history

from .support import clear_faults, drop_messages, fired, set_faults

MESSAGES = 300
BROKER = "/broker/api/v1/filetransfer*"


class Archive:
    """B's archive system: takes each complete message out of the inbox and counts, per messageId, how often
    it was delivered. Inbox folder names alone would hide a second delivery of a message still waiting."""

    def __init__(self, inbox) -> None:
        self.inbox = inbox
        self.taken: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for folder in list(self.inbox.iterdir()):
                if (folder / "message.xml").exists():
                    self.taken[folder.name] += 1
                    shutil.rmtree(folder)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_300_messages_through_30_percent_faults_arrive_once_each(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateways = []
    archive = None
    try:
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
        gateways += [a, b]
        archive = Archive(b.inbox)
        set_faults(
            sandbox,
            {"fault": "error", "status": 502, "path": BROKER, "probability": 0.12},
            {"fault": "error", "status": 429, "retry_after_seconds": 1, "path": BROKER, "probability": 0.05},
            {"fault": "reset", "path": BROKER, "probability": 0.08},
            {"fault": "error", "status": 500, "after": True, "path": BROKER, "probability": 0.05},
        )
        ids = drop_messages(a, MESSAGES)
        wait(lambda: set(archive.taken) >= set(ids), timeout=600, message="all in B's archive")
        broken = sum(fired(sandbox))
        clear_faults(sandbox)
        wait(all_reached(a.status, ids, "MOTTATT"), timeout=300, message="MOTTATT for all")
        assert all("MOTTATT" in history(a.status, m) for m in ids)
        time.sleep(2)  # a second delivery still under way would be counted now
        uploads = sandbox.stats()["uploadsBySenderAndReference"]
    finally:
        if archive is not None:
            archive.stop()
        stop_all(gateways, sandbox)  # no traceback, no ERROR line: every fault here is expected
    assert set(archive.taken) == set(ids), "none missing, nothing else"
    twice = {message_id: count for message_id, count in archive.taken.items() if count != 1}
    assert twice == {}, f"messages delivered to B's archive more than once: {twice}"
    assert all(uploads.get(f"0192:{A}/{m}", 0) >= 1 for m in ids), "each one went over the broker"
    assert broken > MESSAGES / 2, f"only {broken} requests were broken: the faults did not bite"
