"""What the benchmarks that drive real gateway processes share: the drops they make, when a message reached SENDT
as its status file says, and the CPU a process (and the children it reaped) has used."""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import datetime
from pathlib import Path

import psutil
from lxml import etree

NS = {"s": "urn:efm-gateway:status:1"}


def fake_pdf(size: int, seed: int) -> bytes:
    body = os.urandom(size - 64) if seed else b"\0" * (size - 64)
    return b"%PDF-1.4\n%" + body + b"\n%%EOF\n"


def stage_messages(staging: Path, count: int, pdf_kib: int, receiver: str) -> list[tuple[Path, str]]:
    """`count` folder drops to `receiver` (one fake PDF of `pdf_kib` KiB and a sidecar naming its messageId), made in
    `staging` ready to be moved into an outbox; returns each folder with its messageId."""
    from tests.foundation.drops import sidecar_xml

    staging.mkdir()
    staged = []
    for index in range(count):
        folder = staging / f"m{index:05d}"
        folder.mkdir()
        (folder / "brev.pdf").write_bytes(fake_pdf(pdf_kib * 1024, index + 1))
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=receiver, extra=f"<messageId>{message_id}</messageId>")
        (folder / "message.xml").write_bytes(sidecar)
        staged.append((folder, message_id))
    return staged


def status_time(path: Path, value: str = "SENDT") -> float | None:
    """When the status file at `path` says its message reached `value`; None before (or when it is not there)."""
    try:
        root = etree.parse(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError):
        return None
    for event in root.findall("s:history/s:status", NS):
        if event.findtext("s:value", namespaces=NS) == value:
            return datetime.fromisoformat(event.findtext("s:time", namespaces=NS)).timestamp()
    return None


class StatusWatch:
    """The moments messages reached a status (SENDT unless told), read from their status files
    (`message_id -> path`) as they are written; a file is parsed again only when it changed."""

    def __init__(self, status_files: dict[str, Path], value: str = "SENDT") -> None:
        self.status_files = status_files
        self.value = value
        self.reached_at: dict[str, float] = {}
        self._seen_stamp: dict[str, int] = {}

    def poll(self) -> None:
        for message_id, path in self.status_files.items():
            if message_id in self.reached_at:
                continue
            try:
                stamp = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if self._seen_stamp.get(message_id) == stamp:
                continue
            self._seen_stamp[message_id] = stamp
            moment = status_time(path, self.value)
            if moment is not None:
                self.reached_at[message_id] = moment

    @property
    def done(self) -> bool:
        return len(self.reached_at) == len(self.status_files)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) seconds of process `pid` so far, its reaped children included (a server's ended sessions);
    (0, 0) when it is gone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.children_user, times.system + times.children_system
    return 0.0, 0.0


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) seconds of `pid` and every live descendant, with the children each has reaped: a server
    whose sessions come and go (PostgreSQL's postmaster) is measured whole."""
    user, system = cpu_seconds(pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children(recursive=True):
            child_user, child_system = cpu_seconds(child.pid)
            user += child_user
            system += child_system
    return user, system
