"""A periodic job on a full disk: one line when it first finds a file system full, one when it works again,
and no traceback in between. A full disk is an expected condition (the operator frees space, the job goes on
by itself at its next run), not a bug; any other exception still reaches the scheduler with its traceback."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.diskspace import DiskFull, full_folder, is_disk_full
from gateway.errors import JournalError

log = logging.getLogger(__name__)


class FullDiskGuard:
    """`run` for the scheduler, saying a full disk once per episode instead of raising it at every run."""

    def __init__(self, name: str, run: Callable[[], object], journal_folder: Path, folders: Sequence[Path]) -> None:
        self.name = name
        self.run = run
        self.journal_folder = journal_folder  # where SQLite's "database or disk is full" points
        self.folders = tuple(folders)
        self.full: DiskFull | None = None

    def __call__(self) -> None:
        try:
            self.run()
        except (OSError, sqlite3.Error, JournalError) as exc:
            if not is_disk_full(exc):
                raise
            if self.full is None:
                folder = (self.journal_folder if isinstance(exc, sqlite3.Error | JournalError)
                          else full_folder(exc, [self.journal_folder, *self.folders]))
                self.full = DiskFull(folder, 0)
                log.error("job %s: %s (%s); it runs again at its interval and goes on by itself once there is room",
                          self.name, self.full.describe(), exc)
            return
        if self.full is not None:
            log.info("job %s works again: %s has room", self.name, self.full.folder)
            self.full = None
