"""Crash-safe file-system steps: atomic writes, durable renames, and file-name checks."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".efm-tmp-"


def fsync_dir(folder: Path) -> None:
    """Make a rename or create in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Write to a temporary name beside `target`, fsync, rename over it, fsync the folder.

    Readers see the old file or the new one, never a partial one.
    """
    folder = target.parent
    # Unique per writer (two threads may replace the same file at once: the last rename wins, whole),
    # and short: the target's own name may already be near the file system's 255-byte limit.
    temp = folder / f"{TEMP_PREFIX}{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}"
    with open(temp, "wb") as handle:
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            temp.unlink(missing_ok=True)
            raise
    os.replace(temp, target)
    fsync_dir(folder)


def atomic_write_bytes(target: Path, content: bytes) -> None:
    with atomic_writer(target) as handle:
        handle.write(content)


def durable_rename(source: Path, target: Path) -> None:
    """Rename without overwriting, and make it durable in both folders."""
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite it")
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def unique_target(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name.1`, `.2`… when taken: moved files never overwrite."""
    candidate = folder / name
    counter = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{name}.{counter}"
        counter += 1
    return candidate


def is_temporary_name(name: str) -> bool:
    """Names that writers use while a file is still being written; intake ignores them."""
    return name.startswith((".", "~")) or name.endswith((".tmp", ".part"))


def file_name_problem(name: str) -> str | None:
    """Why `name` is not a safe plain file name, or None when it is."""
    if not name:
        return "the file name is empty"
    if "/" in name or "\\" in name:
        return f"the file name {name!r} contains a path separator; give a plain file name"
    if name in (".", "..") or ".." in name.split("."):
        return f"the file name {name!r} contains '..'; give a plain file name"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"the file name {name!r} contains control characters; remove them"
    if max(name) >= "\udc80" and any("\udc80" <= ch <= "\udcff" for ch in name):
        return (
            f"the file name {name.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; "
            "save it with UTF-8 file names"
        )
    if unicodedata.normalize("NFC", name) != name:
        return (
            f"the file name {name!r} is not in Unicode NFC form (letters like 'å' are stored as two "
            "characters); save it with composed (NFC) characters"
        )
    if len(name.encode("utf-8")) > 255:
        return f"the file name {name[:40]!r}… is longer than 255 bytes; shorten it"
    return None
