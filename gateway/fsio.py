"""Crash-safe file-system steps: atomic writes, durable renames, and file-name checks."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat as stat_module
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
def atomic_writer(target: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Write to a temporary name beside `target`, fsync, rename over it, fsync the folder.

    Readers see the old file or the new one, never a partial one. `mode`: the file's, whatever the umask.
    """
    folder = target.parent
    # Unique per writer (two threads may replace the same file at once: the last rename wins, whole),
    # and short: the target's own name may already be near the file system's 255-byte limit.
    temp = folder / f"{TEMP_PREFIX}{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}"
    with open(temp, "wb") as handle:
        try:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            temp.unlink(missing_ok=True)
            raise
    os.replace(temp, target)
    fsync_dir(folder)


def atomic_write_bytes(target: Path, content: bytes, mode: int | None = None) -> None:
    with atomic_writer(target, mode) as handle:
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
    # The receiving archive often runs on Windows, where these names cannot be saved.
    unsafe = sorted(set(name) & set(WINDOWS_UNSAFE_CHARACTERS))
    if unsafe:
        return (
            f"the file name {name!r} contains {' '.join(unsafe)}, which Windows file names cannot hold "
            f"(none of {' '.join(WINDOWS_UNSAFE_CHARACTERS)} may be used); rename it"
        )
    if name[-1] in ". ":
        return f"the file name {name!r} ends with a dot or a space, which Windows drops; rename it"
    if _WINDOWS_RESERVED.fullmatch(name):
        return (
            f"the file name {name!r} is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9); "
            "rename it"
        )
    return None


WINDOWS_UNSAFE_CHARACTERS = '<>:"|?*'
_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?", re.IGNORECASE | re.DOTALL)
_ESCAPED = re.compile(r'[\udc80-\udcff\x00-\x1f\x7f<>:"|?*\\]')


_UNPRINTABLE = re.compile(r"[\udc80-\udcff\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` with every byte that was not valid UTF-8 and every control character as %XX, so it can
    be stored in the journal, written into XML and shown on one line."""
    if not _UNPRINTABLE.search(text):
        return text
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"%{code - 0xDC00 if code >= 0xDC80 else code:02X}"

    return _UNPRINTABLE.sub(escape, text)


def text_name(name: str) -> str:
    """`name` as plain text safe to store and show anywhere: every byte that is not valid UTF-8, every
    control character and every character Windows refuses becomes %XX.

    Unchanged for every name that `file_name_problem` accepts (so the journal's names of accepted
    drops are their names on disk).
    """
    if not _ESCAPED.search(name):
        return name
    out = []
    for ch in name:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"%{ord(ch) - 0xDC00:02X}")
        elif _ESCAPED.fullmatch(ch):
            out.append("".join(f"%{byte:02X}" for byte in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words for the archivist."""
    if stat_module.S_ISLNK(mode):
        return "a symbolic link"
    if stat_module.S_ISDIR(mode):
        return "a folder"
    if stat_module.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat_module.S_ISSOCK(mode):
        return "a socket"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "a device file"
    if stat_module.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


class UnreadableFile(OSError):
    """A file intake must not or cannot read; `reason` says why in words for the archivist."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def permission_denied(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM)


def open_regular(path: Path) -> int:
    """Open `path` for reading only if it is a regular file, never through a symbolic link and never
    blocking (a FIFO or device opened for reading can wait for ever or never end). Returns the fd.

    Raises UnreadableFile with the reason otherwise.
    """
    name = path.name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise UnreadableFile(path, f"{name!r} is not there") from None
    except OSError as exc:
        raise UnreadableFile(path, f"{name!r} cannot be read: {exc.strerror}") from None
    if not stat_module.S_ISREG(info.st_mode):
        raise UnreadableFile(path, f"{name!r} is {kind_of(info.st_mode)}, not a regular file; drop the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if permission_denied(exc):
            raise UnreadableFile(
                path,
                f"{name!r} cannot be read by the gateway (permission denied); give the gateway's user read "
                "permission on it",
            ) from None
        if exc.errno == errno.ELOOP:
            raise UnreadableFile(path, f"{name!r} is a symbolic link; drop the file itself") from None
        raise UnreadableFile(path, f"{name!r} cannot be read: {exc.strerror}") from None
    opened = os.fstat(fd)
    if not stat_module.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        raise UnreadableFile(path, f"{name!r} changed while it was opened; drop it again")
    return fd


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, checked before reading (see `open_regular`)."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UnreadableFile(path, f"{path.name!r} is {size} bytes; at most {limit} bytes are allowed")
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            try:
                chunk = os.read(fd, min(remaining, 1 << 20))
            except OSError as exc:
                raise UnreadableFile(path, f"{path.name!r} cannot be read: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    content = b"".join(chunks)
    if len(content) > limit:
        raise UnreadableFile(path, f"{path.name!r} grew past {limit} bytes while it was read")
    return content


MAX_SAFE_PART_BYTES = 200  # below the 255 of every common file system, with room for " (12)" and the like
_UNSAFE_IN_NAMES = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')


def archive_safe_names(names: list[str]) -> dict[str, str]:
    """For each incoming document path (parts split by '/'), a path that any archive's file system can hold:
    Windows' characters and reserved device names (aux.pdf), trailing dots and spaces, and over-long parts are
    changed, and two names that differ only in case or Unicode form (A.pdf, a.pdf) get distinct names. A name
    that needs no change keeps it (the first of several that collide does); a changed one gets " (2)" and so on
    when what it would become is taken.
    """
    taken: set[str] = set()
    safe: dict[str, str] = {}
    for name in names:  # first every name that can stay as it is, so that no changed name takes its place
        if "/".join(_safe_part(part) for part in name.split("/")) == name and _folded(name) not in taken:
            taken.add(_folded(name))
            safe[name] = name
    for name in names:
        if name in safe:
            continue
        parts = [_safe_part(part) for part in name.split("/")]
        candidate = "/".join(parts)
        counter = 2
        while _folded(candidate) in taken:
            stem, dot, suffix = parts[-1].rpartition(".")
            numbered = f"{stem} ({counter}).{suffix}" if dot and stem else f"{parts[-1]} ({counter})"
            candidate = "/".join([*parts[:-1], numbered])
            counter += 1
        taken.add(_folded(candidate))
        safe[name] = candidate
    return {name: safe[name] for name in names}


def _folded(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


def _safe_part(part: str) -> str:
    part = unicodedata.normalize("NFC", _UNSAFE_IN_NAMES.sub("_", part))
    stripped = part.rstrip(". ")
    if stripped != part:
        part = stripped + "_"  # Windows drops trailing dots and spaces: "rapport." would become "rapport"
    if _WINDOWS_RESERVED.fullmatch(part):
        part = "_" + part
    encoded = part.encode("utf-8")
    if len(encoded) > MAX_SAFE_PART_BYTES:
        stem, dot, suffix = part.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix.encode("utf-8")) <= 16 else ""
        room = MAX_SAFE_PART_BYTES - len(suffix.encode("utf-8"))
        part = encoded[:room].decode("utf-8", "ignore") + suffix
    return part or "_"


# What the gateway hands the archive system (status files, received messages, sent originals) is readable by
# its owner and one group, whatever umask the process runs with; the journal, the keys and what only the
# gateway reads are its owner's alone.
SHARED_FILE_MODE = 0o640
SHARED_FOLDER_MODE = 0o750
TAKEN_FOLDER_MODE = 0o770  # an inbox message's folders: the archive system removes (or moves) what is inside
PRIVATE_FILE_MODE = 0o600


def share_fd(fd: int, group: int | None) -> None:
    """Give the open file `fd` the shared mode, and `group` when one is set."""
    os.fchmod(fd, SHARED_FILE_MODE)
    if group is not None:
        os.fchown(fd, -1, group)


def share_tree(top: Path, group: int | None, folder_mode: int = SHARED_FOLDER_MODE) -> None:
    """Files under `top` get the shared mode, `top` and the folders under it `folder_mode`, all of them `group`
    when one is set. Links are left alone, and so is what this user does not own (an archive system's drop,
    moved to sent/ as it was)."""
    for root, folders, files in os.walk(top):
        for name in files:
            _share_entry(Path(root) / name, SHARED_FILE_MODE, group)
        for name in folders:
            _share_entry(Path(root) / name, folder_mode, group)
    _share_entry(top, folder_mode, group)


def _share_entry(path: Path, mode: int, group: int | None) -> None:
    try:
        if stat_module.S_ISLNK(os.lstat(path).st_mode):
            return
        os.chmod(path, mode)
        if group is not None:
            os.chown(path, -1, group)
    except PermissionError:
        return
