"""The folders on disk: made and checked at start, and how the outbox is watched (events or polling)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from gateway.config import Config
from gateway.errors import ConfigError


def prepare_folders(config: Config) -> None:
    """Create (when allowed) and check every folder; check that atomic renames can work between them."""
    folders = config.folders
    named = {
        "folders.outbox": folders.outbox,
        "folders.status": folders.status,
        "folders.inbox": folders.inbox,
        "folders.failed": folders.failed,
        "folders.sent": folders.sent,
        "folders.state": folders.state,
        "folders.work": folders.work_area,
        "folders.inbox_staging": folders.inbox_staging,
    }
    # The default work and staging folders are the gateway's own, inside state/: made whatever create_missing says.
    own = {folders.state / "inbox-staging", folders.state / "work"}
    for key, folder in named.items():
        if not folder.exists():
            if folders.create_missing or folder in own:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"{key}: cannot create {folder} ({exc.strerror}); create it or fix the path"
                    ) from None
            else:
                raise ConfigError(
                    f"{key}: the folder {folder} does not exist; create it (or mount the share), "
                    "or set folders.create_missing: true"
                )
        if not folder.is_dir():
            raise ConfigError(f"{key}: {folder} is not a folder; point {key} at a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: the folder {folder} is not writable by this user; fix its permissions")
    group = folders.group_id
    if group is not None and os.geteuid() != 0 and group not in (os.getegid(), *os.getgroups()):
        raise ConfigError(
            f"folders.group: this user is not in the group {folders.group}, so it cannot give the archive system "
            f"its files; add it (usermod -a -G {folders.group} <the gateway's user>) and start again"
        )
    # Claims, moves to failed/ and sent/, and inbox hand-over are renames: each pair must share a file system.
    same_fs_pairs = [
        ("folders.work", "folders.outbox", "claiming a drop"),
        ("folders.failed", "folders.work", "moving a rejected drop to failed/"),
        ("folders.sent", "folders.work", "moving a sent drop to sent/"),
        ("folders.inbox_staging", "folders.inbox", "handing a received message to the inbox"),
    ]
    devices = {key: os.stat(folder).st_dev for key, folder in named.items()}
    for first, second, why in same_fs_pairs:
        if devices[first] != devices[second]:
            raise ConfigError(
                f"{first} ({named[first]}) and {second} ({named[second]}) are on different file systems, "
                f"but {why} needs an atomic rename between them; put them on one file system"
                + (" (set folders.work to a folder on the outbox's share)" if first == "folders.work" else "")
                + (" (set folders.inbox_staging to a folder on the inbox's share)"
                   if first == "folders.inbox_staging" else "")
            )


NETWORK_FILESYSTEMS = re.compile(r"^(nfs\d?|cifs|smb\d?|smbfs|fuse\.sshfs|9p|afs|ceph|glusterfs|davfs)$")


def filesystem_type(folder: Path, mounts_file: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the file system holding `folder`, from the mount table (longest matching mount point)."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    target = str(folder.resolve())
    best: tuple[int, str] | None = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), parts[2])
    return best[1] if best else None


def intake_uses_polling(config: Config, mounts_file: Path = Path("/proc/self/mounts")) -> tuple[bool, str]:
    """Whether intake polls instead of watching, and why (for the start-up log)."""
    mode = config.intake.mode
    if mode == "polling":
        return True, "intake.mode is polling"
    if mode == "events":
        return False, "intake.mode is events"
    fs_type = filesystem_type(config.folders.outbox, mounts_file)
    if fs_type and NETWORK_FILESYSTEMS.match(fs_type):
        return True, f"the outbox is on a {fs_type} share, where file events do not fire: polling"
    return (
        False,
        f"the outbox is on {fs_type or 'a local file system'}: file events, with a scan every "
        f"{config.intake.scan_interval_seconds:g} s",
    )
