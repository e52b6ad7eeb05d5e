"""Crash safety with real kill -9: drops keep arriving while the daemon is killed and restarted.
Afterwards every drop has exactly one journal entry and one status file; none is lost or taken twice."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest

from tests.suite_journal import journal_rows

from .drops import make_flat_drop, make_folder_drop, pdf_bytes, sha256, sidecar_xml, write_config
from .process import DaemonProcess, current_status, status_files, wait_for

DROPS = 500
KILLS = 6


@pytest.mark.slow
def test_kill_minus_nine_loses_nothing_and_takes_nothing_twice(tmp_path):
    config = write_config(tmp_path, mode="events", scan_interval_seconds=0.5, quiet_period_seconds=0.2)
    outbox = tmp_path / "var" / "outbox"
    status = tmp_path / "var" / "status"
    outbox.mkdir(parents=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    rng = random.Random(20261127)
    message_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(DROPS)]

    def write_drops() -> None:
        for index, message_id in enumerate(message_ids):
            name = f"drop-{index:04d}"
            if index % 4 == 3:
                content = pdf_bytes(name)
                sidecar = sidecar_xml(
                    extra=f"<messageId>{message_id}</messageId>",
                    documents=[{"file": f"{name}.pdf", "main": True, "size": len(content), "sha256": sha256(content)}],
                )
                make_flat_drop(outbox, name, files={f"{name}.pdf": content}, sidecar=sidecar)
            else:
                sidecar = sidecar_xml(extra=f"<messageId>{message_id}</messageId>")
                make_folder_drop(outbox, name, sidecar=sidecar, staging=staging)
            time.sleep(rng.uniform(0, 0.03))

    writer = threading.Thread(target=write_drops)
    writer.start()
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log).start_running()
    kills = 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 1.5))
            daemon.kill9()
            kills += 1
            daemon = DaemonProcess(config, log).start_running()
        writer.join()
        wait_for(
            lambda: len(status_files(status)) >= DROPS and not os.listdir(outbox),
            120,
            interval=0.5,
            message="all drops taken",
        )
        time.sleep(1)
    finally:
        writer.join()
        exit_code = daemon.stop()
    assert exit_code == 0
    assert kills >= 5

    rows = journal_rows(tmp_path / "var" / "state" / "journal.sqlite",
                        "SELECT message_id, phase, claim_id FROM messages")
    assert len(rows) == DROPS, f"{len(rows)} journal rows for {DROPS} drops"
    assert sorted(row[0] for row in rows) == sorted(message_ids), "every drop exactly once in the journal"
    assert {row[1] for row in rows} == {"accepted"}, "no drop was rejected (a double claim would be)"

    files = status_files(status)
    assert len(files) == DROPS, "one status file per drop"
    assert all(current_status(path) == "OPPRETTET" for path in files)
    assert sorted(path.name.split(".")[1] for path in files) == sorted(message_ids)

    assert os.listdir(outbox) == []
    assert os.listdir(tmp_path / "var" / "failed") == []
    work = tmp_path / "var" / "state" / "work"
    claims = sorted(os.listdir(work))
    assert len(claims) == DROPS
    assert sorted(c.split("~", 2)[2] for c in claims) == [f"drop-{i:04d}" for i in range(DROPS)]
    assert {row[2] for row in rows} == set(claims)
