"""One daemon per state folder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gateway.errors import JournalError


class InstanceLock:
    """One daemon per state folder: an flock held for the process's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "another process"
            raise JournalError(
                f"another efm-gateway (pid {holder}) is running on the state folder {self.path.parent}; "
                "stop it first, or give this one its own folders.state"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
