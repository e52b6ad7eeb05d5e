"""A full disk at the receiver: nothing half-written, one clear line naming the folder, no re-download loop,
and every message arrives once when space is freed. B's folders live on a small tmpfs of their own."""

from __future__ import annotations

import collections
import os
import re
import shutil
import threading
import time
import uuid

import pytest

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, stop_all, wait
from tests.dpo.statusfiles import all_reached, current, history
from tests.foundation.drops import pdf_bytes, sidecar_xml
from tests.logcheck import log_records

from .support import (
    BROKER_POSTS,
    DOWNLOADS,
    MIB,
    ballast_file,
    counting,
    drop_messages,
    fired,
    mount_tmpfs,
    set_faults,
    unmount,
)

FULL_LINE = r"could not be stored: the file system of .* is full"


def test_a_full_disk_stops_downloads_says_where_and_resumes_when_space_is_freed(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    var_b = tmp_path / "b" / "var"
    mount_tmpfs(var_b, 16)
    gateways = []
    try:
        b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B), allowed_log=(FULL_LINE,)).start()
        gateways.append(b)
        ballast = ballast_file(var_b, leave_free=MIB + MIB // 2)
        set_faults(sandbox, counting("GET", DOWNLOADS))
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        gateways.append(a)
        ids = drop_messages(a, 3, size=2 * MIB)  # each document more than B has room for
        wait(lambda: all(current(a.status, m) == "SENDT" for m in ids), message="three sent")
        a.process.stop()  # from here on every download counted is B's (A would fetch B's MOTTATT too)

        wait(lambda: [t for _l, t in log_records(b.log()) if "is full" in t], message="B notices the full disk")
        downloads_when_full = fired(sandbox)[0]
        time.sleep(4)  # a dozen polls of B
        assert fired(sandbox)[0] == downloads_when_full, "nothing is downloaded again while the disk is full"
        assert downloads_when_full <= 3
        assert os.listdir(b.inbox) == [], "nothing half-written in the inbox"
        assert os.listdir(b.var / "state" / "inbox-staging") == [], "nor left behind in staging"
        full = [(level, text) for level, text in log_records(b.log()) if "is full" in text]
        assert len(full) == 1, full
        [(level, text)] = full
        assert level == "ERROR" and "Traceback" not in b.log()
        assert str(var_b / "state" / "inbox-staging") in text, "the line names the folder whose file system is full"
        assert "MiB free" in text and "MiB needed" in text and "downloading stops until there is room" in text

        ballast.unlink()
        wait(lambda: sorted(os.listdir(b.inbox)) == sorted(ids), timeout=30, message="all three in B's inbox")
        assert "has room again" in b.log()
        for message_id in ids:
            assert (b.inbox / message_id / "brev.pdf").stat().st_size > 2 * MIB
        assert fired(sandbox)[0] <= downloads_when_full + 3, "each downloaded once more, no more"
    finally:
        try:
            stop_all(gateways, sandbox)
        finally:
            unmount(var_b)  # also when a log check fails: a tmpfs left mounted would outlive the test


def test_a_full_disk_at_the_sender_stops_sending_says_where_and_resumes_when_space_is_freed(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    var_a = tmp_path / "a" / "var"
    mount_tmpfs(var_a, 32)
    gateways = []
    try:
        set_faults(sandbox, counting("POST", BROKER_POSTS))
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A),
                    allowed_log=(SENDER_FULL_LINE, STATUS_FULL_LINE))
        for name in ("outbox", "status", "inbox", "failed", "sent", "state"):
            (var_a / name).mkdir(exist_ok=True)
        staging = var_a / "drops"
        ids = _staged_drops(staging, 2, 5 * MIB)  # packed on disk (past 4 MiB), beside the drop
        a.start()
        gateways.append(a)
        ballast = ballast_file(var_a, leave_free=2 * MIB)
        for folder in sorted(staging.iterdir()):
            folder.rename(a.outbox / folder.name)  # one rename each, as the contract says: no space needed

        wait(lambda: [t for _l, t in log_records(a.log()) if "is full" in t], message="A notices the full disk")
        time.sleep(3)  # ten send passes
        full = [(level, text) for level, text in log_records(a.log()) if "is full" in text]
        # One line for the package that could not be made; the status files, on the same full file
        # system, may say so once too (the files themselves, or the journal's note of them, whichever met the full
        # disk first): each folder's trouble is said once, not at every pass.
        packing = [entry for entry in full if "could not be prepared" in entry[1]]
        status_files = [entry for entry in full if re.search(STATUS_FULL_LINE, entry[1])]
        assert len(packing) == 1 and len(status_files) <= 1 and len(full) == len(packing) + len(status_files), full
        [(level, text)] = packing
        assert level == "ERROR" and "Traceback" not in a.log()
        assert str(var_a / "state" / "outgoing") in text and "MiB needed" in text
        assert "sending stops until there is room" in text
        assert fired(sandbox)[0] == 0, "nothing half-packed was uploaded"
        assert os.listdir(var_a / "state" / "outgoing") == [], "no torn package holds the space"

        ballast.unlink()
        wait(lambda: all(current(a.status, m) == "SENDT" for m in ids), timeout=20, message="both sent")
        assert "has room again" in a.log()
        assert sorted(os.listdir(a.var / "sent")) == ["brev-0", "brev-1"]
    finally:
        try:
            stop_all(gateways, sandbox)
        finally:
            unmount(var_a)  # also when a log check fails: a tmpfs left mounted would outlive the test


SENDER_FULL_LINE = r"could not be prepared: the file system of .* is full"
STATUS_FULL_LINE = (r"status files (could not be written to|were written to .* but the journal could not note it:)"
                    r" .* is full")


def _staged_drops(staging, count: int, size: int) -> list[str]:
    ids = []
    for index in range(count):
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>",
                              documents=[{"file": "brev.pdf", "main": True, "mime": "application/pdf"}])
        folder = staging / f"brev-{index}"
        folder.mkdir(parents=True)
        (folder / "brev.pdf").write_bytes(pdf_bytes(f"brev {index}") + os.urandom(size))
        (folder / "message.xml").write_bytes(sidecar)
        ids.append(message_id)
    return ids


class _Archive:
    """B's archive system, once started: takes each message out of the inbox and counts it per messageId."""

    def __init__(self, inbox) -> None:
        self.inbox = inbox
        self.taken: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
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
        if self._thread.is_alive():
            self._thread.join(timeout=10)


# Every line B may log at ERROR while its disk is full: each an expected condition, said in one line.
RECEIVER_FULL_LINES = (r"is full",)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_500_messages_into_a_20_mib_receiver_lose_nothing_double_nothing_and_log_no_traceback(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    var_b = tmp_path / "b" / "var"
    mount_tmpfs(var_b, 20)
    gateways = []
    archive = None
    try:
        b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B), allowed_log=RECEIVER_FULL_LINES).start()
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        gateways += [b, a]
        # Room for a few hundred small messages in the inbox, but not for everything the journal and the
        # status files of 500 want too: the disk fills under every part of B that writes.
        ballast = ballast_file(var_b, leave_free=3 * MIB)
        archive = _Archive(b.inbox)
        archive.start()
        ids = drop_messages(a, 500)
        wait(lambda: "is full" in b.log(), timeout=300, message="B's disk fills up")
        time.sleep(5)  # B's jobs run on a full disk for a while
        ballast.unlink()
        wait(lambda: set(archive.taken) >= set(ids), timeout=600, message="all 500 in B's archive")
        wait(all_reached(a.status, ids, "LEVERT"), timeout=300, message="LEVERT for all")
        assert all("LEVERT" in history(a.status, m) for m in ids)
        time.sleep(2)  # a second delivery still under way would be counted now
    finally:
        if archive is not None:
            archive.stop()
        try:
            stop_all(gateways, sandbox)
        finally:
            unmount(var_b)
    assert set(archive.taken) == set(ids)
    assert {m: n for m, n in archive.taken.items() if n != 1} == {}, "each message delivered once"
    log = b.log()
    assert "Traceback" not in log, "a full disk is an expected condition: no traceback"
    full = [text for level, text in log_records(log) if level == "ERROR"]
    # One line for each part of B that found the disk full, each time it filled again (the archive frees
    # space while B takes more): a handful, never one a run or one a message.
    assert 1 <= len(full) <= 12, full
    assert all("full" in text for text in full), full
