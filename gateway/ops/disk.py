"""Free space per folder, against the floors in config (disk_floor_mb)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from gateway.config import Config

MIB = 1 << 20


@dataclass(frozen=True)
class FolderSpace:
    key: str  # the config key, e.g. "folders.work"
    path: Path
    free_bytes: int | None  # None: the folder cannot be read (a share gone)
    floor_bytes: int

    @property
    def below_floor(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.floor_bytes


def watched_folders(config: Config) -> dict[str, Path]:
    """The folders whose free space counts, by their name in disk_floor_mb."""
    folders = config.folders
    return {
        "outbox": folders.outbox,
        "status": folders.status,
        "inbox": folders.inbox,
        "failed": folders.failed,
        "sent": folders.sent,
        "state": folders.state,
        "work": folders.work_area,
        "inbox_staging": folders.inbox_staging,
    }


def folder_space(config: Config) -> list[FolderSpace]:
    floors = config.disk_floor_mb
    spaces = []
    for name, path in watched_folders(config).items():
        try:
            free: int | None = shutil.disk_usage(path).free
        except OSError:
            free = None
        spaces.append(FolderSpace(f"folders.{name}", path, free, int(getattr(floors, name) * MIB)))
    return spaces


def intake_hold_reason(config_now: Callable[[], Config]) -> Callable[[], str | None]:
    """For the intake loop: why new drops must wait (each folder under its floor), or None."""
    names = [f.name for f in fields(type(config_now().disk_floor_mb))]

    def reason() -> str | None:
        config = config_now()
        floors = config.disk_floor_mb
        if not any(getattr(floors, name) for name in names):
            return None
        low = [space for space in folder_space(config) if space.below_floor]
        if not low:
            return None
        return "; ".join(
            f"{space.key} ({space.path}) has {space.free_bytes / MIB:.0f} MiB free, under its floor of "
            f"{space.floor_bytes / MIB:.0f} MiB (disk_floor_mb.{space.key.removeprefix('folders.')})"
            for space in low
        ) + "; free some space (or lower the floor and send SIGHUP)"

    return reason
