"""A full file system, told in words an operator can act on: which folder's file system, how much is free,
how much is needed; and whether there is room again."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
MIB = 1 << 20


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says a file system is full: ENOSPC, a quota, SQLite's "disk is full"."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def free_bytes(folder: Path) -> int:
    """Bytes free to us on `folder`'s file system (0 when it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def mount_point(folder: Path) -> Path:
    """The mount point of the file system that holds `folder`."""
    path = folder.resolve()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


@dataclass(frozen=True)
class DiskFull:
    """What filled up and what it takes to go on."""

    folder: Path
    needed_bytes: int

    def has_room(self) -> bool:
        return free_bytes(self.folder) >= self.needed_bytes

    def describe(self) -> str:
        needed = f", about {self.needed_bytes / MIB:.1f} MiB needed" if self.needed_bytes else ""
        return (
            f"the file system of {self.folder} (mounted at {mount_point(self.folder)}) is full: "
            f"{free_bytes(self.folder) / MIB:.1f} MiB free{needed}"
        )


def full_folder(exc: BaseException, candidates: Sequence[Path]) -> Path:
    """The folder among `candidates` whose file system `exc` filled: the one holding the file it names, else
    the one with the least space free."""
    name = getattr(exc, "filename", None)
    if name:
        target = Path(os.fsdecode(name)).absolute()
        holding = [folder for folder in candidates if target.is_relative_to(folder.absolute())]
        if holding:
            return max(holding, key=lambda folder: len(folder.parts))
    return min(candidates, key=free_bytes)




class DiskPause:
    """Work that writes (downloading, packing) stops while a file system it needs is full, and goes on by
    itself once there is room: `stop()` when a write fails for want of space, `may_go()` before each round."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what  # "downloading from DPO", "sending": the words for the log lines
        self.full: DiskFull | None = None
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.full is not None

    def stop(self, full: DiskFull) -> bool:
        """Stop until `full` has room; True for the first stop (the caller's one log line), False when stopped."""
        with self._lock:
            if self.full is not None:
                return False
            self.full = full
            return True

    def may_go(self) -> bool:
        """False while the full file system still lacks room; True (the first time with a line) when it has it."""
        with self._lock:
            full = self.full
            if full is None:
                return True
            if not full.has_room():
                return False
            self.full = None
        self.logger.info("%s has room again (%.1f MiB free): %s goes on", full.folder,
                         free_bytes(full.folder) / MIB, self.what)
        return True


__all__ = ["DiskFull", "DiskPause", "free_bytes", "full_folder", "is_disk_full", "mount_point"]
