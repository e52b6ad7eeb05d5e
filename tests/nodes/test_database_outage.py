"""PostgreSQL stopped under a running daemon (pg_ctl stop -m immediate, as a crash or a fail-over cuts every
session) and started again: the node takes no new work meanwhile, says so in one line and in /readyz, and goes on
when the database answers; every message is delivered once, and every status file reaches its final status."""

from __future__ import annotations

import collections
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.journal.postgres_engine import PostgresEngine
from gateway.journal.store import Journal
from gateway.ops.readiness import Check, readiness
from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.foundation.process import DaemonProcess
from tests.nodes.support import postgres_journal, stop_then_check
from tests.resilience.support import log_lines

pytestmark = pytest.mark.postgres

OUTAGE_LINE = "the journal's database does not answer"
RECOVERY_LINE = "the journal's database answers again"


def drop(gateway_root: Path, outbox: Path, names: range) -> list[str]:
    ids = []
    for index in names:
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>")
        make_folder_drop(outbox, f"m{index:03d}", files={"brev.pdf": pdf_bytes(f"brev {index}")}, sidecar=sidecar,
                         staging=gateway_root / "staging")
        ids.append(message_id)
    return ids


@pytest.mark.slow
def test_postgresql_stopped_and_started_under_a_running_node(tmp_path, postgres_database):
    server = postgres_database.server
    sandbox = SandboxProcess(tmp_path / "sandbox")
    root = tmp_path / "a"
    config = gateway_config(root, sandbox, A)
    postgres_journal(config, postgres_database, "node-a")
    a = DaemonProcess(config, root / "daemon.log", allowed_log=(OUTAGE_LINE,)).start()
    b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
    outbox = root / "var" / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
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
    stopped = False
    try:
        before = drop(root, outbox, range(40))
        wait(lambda: len(taken) >= 5, 60, message="the first messages delivered")
        server.stop()  # while the rest are being sent
        stopped = True
        during = drop(root, outbox, range(40, 70))
        wait(lambda: len(log_lines(a.log, OUTAGE_LINE)) == 1, 60, message="the outage said")
        time.sleep(8)  # several runs of every job and pass, each of which must not say the outage again
        assert a.alive(), a.log.read_text()
        # Nothing the node could not journal was done: no drop of the outage was accepted (its status file is
        # written only after its row is committed); they wait in the outbox, or in the work area once claimed.
        assert [m for m in during if current(root / "var" / "status", m) is not None] == []
        server.start()
        stopped = False
        wait(lambda: len(log_lines(a.log, RECOVERY_LINE)) == 1, 60, message="the recovery said")
        message_ids = before + during
        wait(lambda: set(taken) == set(message_ids), 180, message="every message in B's archive")
        wait(lambda: all(current(root / "var" / "status", m) == "LEVERT" for m in message_ids), 180,
             message="LEVERT for every message at A")
        time.sleep(2)  # anything still in flight would show up as a duplicate now
    finally:
        if stopped:
            server.start()
        stop_archive.set()
        archive.join()
        stats = sandbox.stats()
        stop_then_check([a, b.process], sandbox)
    assert {m: n for m, n in taken.items() if n != 1} == {}, "messages in B's archive more than once"
    uploads = stats["uploadsBySenderAndReference"]
    assert sorted(uploads.get(f"0192:{A}/{m}", 0) for m in message_ids) == [1] * len(message_ids)
    assert len(log_lines(a.log, OUTAGE_LINE)) == 1
    assert len(log_lines(a.log, RECOVERY_LINE)) == 1
    assert "Traceback" not in a.log.read_text()


def test_readiness_says_the_journal_is_down_until_postgresql_answers(postgres_database, tmp_path):
    server = postgres_database.server
    journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), SystemClock())
    try:
        assert journal.probe() and not journal.outage.down
        assert _journal_check(journal) == {"ok": True, "detail": "the journal's database answers"}
        server.stop()
        try:
            with pytest.raises(sqlite3.OperationalError):
                journal.execute("UPDATE journal_schema SET version = version")
            assert journal.outage.down and not journal.probe()
            check = _journal_check(journal)
            assert check["ok"] is False and check["detail"].startswith(OUTAGE_LINE)
        finally:
            server.start()
        assert journal.probe() and not journal.outage.down
        assert _journal_check(journal)["ok"] is True
    finally:
        journal.close()


def _journal_check(journal: Journal) -> dict:
    ready, report = readiness({}, {}, [], None, time.time(), Check(not journal.outage.down, journal.outage.detail))
    assert ready is (not journal.outage.down)
    assert ("journal" in report["failing"]) is journal.outage.down
    return report["checks"]["journal"]
