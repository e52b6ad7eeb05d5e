"""Gateway nodes on the tests' PostgreSQL (tests/postgres.py) and one shared folder tree, for the tests of several
nodes: a node's journal configuration, a node's whole config.yaml, drops with known messageIds, and the archive
system that takes received messages out of the shared inbox and counts how often it saw each."""

from __future__ import annotations

import collections
import os
import resource
import shutil
import threading
import time
from pathlib import Path

from lxml import etree

from tests.dpo.network import A, SandboxProcess, gateway_config
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.foundation.process import current_status
from tests.postgres import PostgresDatabase

# The archive system's folders, and the work area and the inbox's staging folder beside them, on the share every
# node mounts (docs/production.md); each node's state (packages in transit) stays its own.
SHARED = ("outbox", "status", "inbox", "failed", "sent", "work", "inbox_staging")
POLLING = {"mode": "polling", "scan_interval_seconds": 0.3, "quiet_period_seconds": 0.2}
MESSAGE_NS = {"m": "urn:efm-gateway:message:1"}


def journal_yaml(database: PostgresDatabase, folder: Path) -> str:
    """config.yaml's `journal:` block for `database`, its password in a file (0600) in `folder`, never inline."""
    password_file = folder / "journal-password"
    password_file.write_text(database.password + "\n")
    password_file.chmod(0o600)
    return f'journal:\n  url: "{database.url}"\n  password_file: {password_file}\n'


def postgres_journal(config: Path, database: PostgresDatabase, node_name: str) -> None:
    """Point a gateway's config.yaml at `database`, as the node `node_name`."""
    config.write_text(config.read_text() + journal_yaml(database, config.parent) + f"node:\n  name: {node_name}\n")


def node_config(tmp_path: Path, sandbox: SandboxProcess, database: PostgresDatabase, name: str,
                orgnr: str = A, **overrides: dict) -> Path:
    """config.yaml of node `name` of `orgnr` in tmp_path/name: the archive system's folders in tmp_path/share,
    polling intake (as on a share), its journal on `database`. `overrides` as gateway_config takes them."""
    share = tmp_path / "share"
    folders = {"create_missing": True, "state": str(tmp_path / name / "state"),
               **{folder: str(share / folder) for folder in SHARED}}
    config = gateway_config(tmp_path / name, sandbox, orgnr, folders=folders, intake=dict(POLLING), **overrides)
    postgres_journal(config, database, name)
    return config


def drop_messages(outbox: Path, staging: Path, receiver: str, message_ids: list[str], first: int = 0) -> None:
    """One folder drop (a small PDF) per messageId, named m0000, m0001, ... from `first`."""
    outbox.mkdir(parents=True, exist_ok=True)
    for index, message_id in enumerate(message_ids, start=first):
        sidecar = sidecar_xml(receiver=receiver, extra=f"<messageId>{message_id}</messageId>")
        make_folder_drop(outbox, f"m{index:04d}", files={"brev.pdf": pdf_bytes(f"brev {index}")}, sidecar=sidecar,
                         staging=staging)


class ArchiveSystem:
    """The archive system on the shared inbox: takes each message folder out (a folder comes into the inbox whole,
    by one rename) and counts the folders it saw per messageId; a message written into the inbox twice is counted
    twice."""

    def __init__(self, inbox: Path, interval: float = 0.05) -> None:
        self.inbox = inbox
        self.interval = interval
        self.taken: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-system", daemon=True)

    def start(self) -> ArchiveSystem:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def seen(self) -> set[str]:
        """The messageIds the archive got so far."""
        with self._lock:
            return set(self.taken)

    def twice(self) -> dict[str, int]:
        """messageIds the archive got more than once, with how often."""
        with self._lock:
            return {message_id: count for message_id, count in self.taken.items() if count != 1}

    def _run(self) -> None:
        while not self._stop.is_set():
            for folder in sorted(self.inbox.iterdir()) if self.inbox.exists() else []:
                sidecar = folder / "message.xml"
                if folder.name.startswith(".") or not sidecar.exists():
                    continue
                message_id = etree.parse(str(sidecar)).getroot().findtext("m:messageId", namespaces=MESSAGE_NS)
                shutil.rmtree(folder)
                with self._lock:
                    self.taken[message_id or folder.name] += 1
            time.sleep(self.interval)


class FinalStatuses:
    """Which messages' status files in a folder have reached the status each is expected to end at, read as the
    archive system would (one listing, each file parsed until it got there): cheap enough to ask every second
    of a run of thousands of messages."""

    def __init__(self, folder: Path, expected: dict[str, str]) -> None:
        self.folder = folder
        self.expected = expected  # status file name -> its final status
        self.reached: set[str] = set()

    def count(self) -> int:
        present = set(os.listdir(self.folder)) if self.folder.exists() else set()
        for name in present & (self.expected.keys() - self.reached):
            if current_status(self.folder / name) == self.expected[name]:
                self.reached.add(name)
        return len(self.reached)

    def missing(self) -> dict[str, str | None]:
        """Each status file not at its final status, with the status it is at (None: not there)."""
        return {name: current_status(self.folder / name) for name in sorted(self.expected)
                if current_status(self.folder / name) != self.expected[name]}


class CpuUse:
    """CPU seconds a run cost: this test's own processes (the nodes and the sandbox, once reaped) and the
    PostgreSQL server's (its postmaster and every backend that ended). What a run costs on an idle machine is
    about this sum over its cores, whatever else shared the machine while it ran."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._postmaster = database.server.folder / "data" / "postmaster.pid"
        self._began = self._now()

    def _now(self) -> tuple[float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return children.ru_utime + children.ru_stime, self._postgres()

    def _postgres(self) -> float:
        try:
            pid = self._postmaster.read_text().split()[0]
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        # utime, stime, cutime, cstime (fields 14 to 17 of proc(5)), in clock ticks
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def summary(self) -> str:
        """Reap the processes first (stop them) for their share to count."""
        ours, postgres = (now - then for now, then in zip(self._now(), self._began, strict=True))
        return f"CPU: nodes and sandbox {ours:.0f} s, PostgreSQL {postgres:.0f} s"


def stop_then_check(processes: list, sandbox) -> None:
    """Stop every daemon (DaemonProcess) that still runs, then the sandbox, and only then check the daemons' logs: one
    log's unexpected ERROR line must not leave the other processes running for the rest of the suite."""
    try:
        for process in processes:
            if process.alive():
                process.stop(check_log=False)
    finally:
        sandbox.stop()
    for process in processes:
        process.check_log()

