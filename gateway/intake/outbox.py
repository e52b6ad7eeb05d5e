"""Look at the outbox and decide which drops are complete.

A drop is complete when its sidecar is there and every file it lists is there, and either it
arrived by a rename (a watcher saw it moved in), or every declared size already matches, or none
of its files has changed for the quiet period (measured on the monotonic clock). What never
becomes complete is reported after the incomplete timeout, so nothing waits forever.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.sidecar import FOLDER_SIDECAR_NAME, NAMESPACE
from gateway.fsio import is_temporary_name, kind_of
from gateway.intake.peek import may_declare_sizes, read_listed_files, root_tag

SIDECAR_TAG = f"{{{NAMESPACE}}}message"
# A claim is named <token>~d~<drop name>; with the token it must stay within 255 bytes.
MAX_DROP_NAME_BYTES = 200
FLAT_LISTS_FOLDER = (
    "{sidecar} lists {name!r}, which is a folder in the outbox; a flat sidecar names files only, and a "
    "folder is a drop of its own: list the files, or drop the folder with its own message.xml"
)
CANNOT_MOVE = (
    "the gateway cannot move {entry!r} out of the outbox to take it ({error}); give the gateway's user write "
    "permission on it (a folder must be writable to be moved)"
)


@dataclass(frozen=True)
class Candidate:
    """A drop ready to be claimed, or one that has waited too long and must be rejected."""

    kind: str  # "folder" | "flat"
    name: str  # drop name: the folder name, or the sidecar's name without .xml
    entry: str  # the outbox entry to claim: the folder, or the sidecar file
    documents: tuple[str, ...] = ()  # flat drops: listed documents present in the outbox
    incomplete_reason: str | None = None  # set when the drop is claimed only to be rejected


@dataclass(frozen=True)
class Orphan:
    entry: str
    reason: str


@dataclass
class ScanResult:
    ready: list[Candidate] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    waiting: int = 0
    more: bool = False  # the scan stopped at its bound; scan again soon


@dataclass
class _Seen:
    signature: tuple
    stable_since: float
    first_seen: float


def _file_signature(stat: os.stat_result) -> tuple:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _entry_signature(stat: os.stat_result) -> tuple:
    """What changes when anyone changes an entry, its permissions included."""
    return (stat.st_mode, stat.st_uid, stat.st_gid, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


class _UnreadableFolder(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboxScanner:
    def __init__(
        self,
        outbox: Path,
        clock: Clock,
        quiet_period: float,
        incomplete_timeout: float,
    ) -> None:
        self.outbox = outbox
        self.clock = clock
        self.quiet_period = quiet_period
        self.incomplete_timeout = incomplete_timeout
        self._seen: dict[str, _Seen] = {}
        self._moved_in: set[str] = set()
        self._sidecar_cache: dict[str, tuple[tuple, list[tuple[str, int | None]] | None]] = {}
        self._refused: dict[str, tuple] = {}  # entries that could not be moved, and how they looked then

    def refuse_in_place(self, entry: str) -> None:
        """`entry` was rejected but cannot be moved (permission denied): leave it alone until it changes."""
        try:
            self._refused[entry] = _entry_signature(os.lstat(self.outbox / entry))
        except OSError:
            self._refused.pop(entry, None)
        self.forget(entry)

    def next_change_in(self) -> float | None:
        """Seconds until a waiting entry may be ready: its quiet period or incomplete timeout ends.

        None when nothing waits for a time still to come (one already past it was handled by the scan
        just done, or is retried at the regular interval). An entry that changes again pushes its own
        time back at the next look.
        """
        now = self.clock.monotonic()
        due = min(
            (
                seen.stable_since + self.quiet_period
                if now - seen.stable_since < self.quiet_period
                else seen.first_seen + self.incomplete_timeout
                for seen in self._seen.values()
            ),
            default=None,
        )
        return None if due is None or due <= now else due - now

    def note_moved_in(self, entry: str) -> None:
        """A watcher saw `entry` arrive by rename: it is complete as it stands."""
        self._moved_in.add(entry)

    def forget(self, entry: str) -> None:
        self._seen.pop(entry, None)
        self._moved_in.discard(entry)
        # The cache is keyed by sidecar path: a flat drop's <name>.xml, or a folder's <name>/message.xml.
        self._sidecar_cache.pop(str(self.outbox / entry), None)
        self._sidecar_cache.pop(str(self.outbox / entry / FOLDER_SIDECAR_NAME), None)

    # ---- observation -----------------------------------------------------------------------
    def _observe(self, entry: str, signature: tuple) -> tuple[bool, float]:
        """Record what `entry` looks like now; returns (stable for the quiet period, age since first seen)."""
        now = self.clock.monotonic()
        seen = self._seen.get(entry)
        if seen is None:
            self._seen[entry] = _Seen(signature, now, now)
            return self.quiet_period <= 0, 0.0
        if seen.signature != signature:
            seen.signature = signature
            seen.stable_since = now
        return now - seen.stable_since >= self.quiet_period, now - seen.first_seen

    def _folder_signature(self, folder: Path) -> tuple | None:
        """What the folder holds now; None when it is gone. Raises _UnreadableFolder when it cannot be listed."""
        try:
            entries = []
            with os.scandir(folder) as listing:
                for child in listing:
                    stat = child.stat(follow_symlinks=False)
                    entries.append((child.name, _file_signature(stat)))
            return tuple(sorted(entries))
        except FileNotFoundError:
            return None
        except PermissionError:
            raise _UnreadableFolder(
                f"the folder {folder.name!r} cannot be read by the gateway (permission denied); give the "
                "gateway's user permission to read, enter and move it (rwx), then drop it again"
            ) from None
        except OSError as exc:
            raise _UnreadableFolder(f"the folder {folder.name!r} cannot be read: {exc.strerror}") from None

    def _listed_files(self, path: Path, signature: tuple) -> list[tuple[str, int | None]] | None:
        """The (file, declared size) pairs a sidecar lists, or None when it is not (yet) a readable sidecar."""
        key = str(path)
        cached = self._sidecar_cache.get(key)
        if cached and cached[0] == signature:
            return cached[1]
        listed = read_listed_files(path)
        self._sidecar_cache[key] = (signature, listed)
        return listed

    # ---- scanning ----------------------------------------------------------------------------
    def scan(self, limit: int, only: Iterable[str] | None = None) -> ScanResult:
        """Look at the whole outbox (or only the named entries) and return what is ready."""
        result = ScanResult()
        entries = self._list(only)
        for name in [name for name in entries if name in self._refused]:
            if _entry_signature(entries[name]) == self._refused[name]:
                del entries[name]
            else:
                del self._refused[name]  # changed (permissions fixed?): look at it again
        present = set(entries)
        if only is None:
            for gone in [name for name in self._refused if name not in present and name not in entries]:
                if not os.path.lexists(self.outbox / gone):
                    del self._refused[gone]
            for gone in [name for name in self._seen if name not in present]:
                self.forget(gone)
            if len(self._sidecar_cache) > len(present):
                prefix = len(str(self.outbox)) + 1
                for key in [key for key in self._sidecar_cache if key[prefix:].split("/", 1)[0] not in present]:
                    del self._sidecar_cache[key]
        # First learn which files the readable sidecars name, so that an XML document listed by a
        # sidecar is never mistaken for a broken sidecar of its own.
        listed_by_sidecars: set[str] = set()
        xml_files: dict[str, list[tuple[str, int | None]] | None] = {}
        for name, stat in entries.items():
            if name.lower().endswith(".xml") and not is_temporary_name(name) and _is_regular(stat):
                listed = self._listed_files(self.outbox / name, _file_signature(stat))
                xml_files[name] = listed
                # A flat sidecar names files only: a folder it names stays a drop of its own.
                listed_by_sidecars.update(
                    file for file, _ in listed or () if not (file in entries and _is_folder(entries[file]))
                )
        loose_files: list[tuple[str, os.stat_result]] = []
        for name, stat in entries.items():
            if len(result.ready) >= limit:
                result.more = True
                break
            if is_temporary_name(name):
                continue
            path = self.outbox / name
            drop_name = name[: -len(".xml")] if name in xml_files else name
            if (name in xml_files or stat_module.S_ISDIR(stat.st_mode)) and name not in listed_by_sidecars and (
                len(drop_name.encode("utf-8", "surrogateescape")) > MAX_DROP_NAME_BYTES
            ):
                # Its name in the work area would pass the file system's 255-byte limit.
                result.orphans.append(
                    Orphan(
                        name,
                        f"the drop name is {len(drop_name.encode('utf-8', 'surrogateescape'))} bytes long; "
                        f"drop names may be at most {MAX_DROP_NAME_BYTES} bytes: give it a shorter name",
                    )
                )
                continue
            if stat_module.S_ISDIR(stat.st_mode):
                try:
                    self._consider_folder(name, path, result)
                except _UnreadableFolder as exc:
                    stable, _age = self._observe(name, _entry_signature(stat))
                    if stable:
                        result.orphans.append(Orphan(name, exc.reason))
                    else:
                        result.waiting += 1
            elif (
                name in xml_files
                and name not in listed_by_sidecars
                and (xml_files[name] is not None or root_tag(path) in (SIDECAR_TAG, None))
            ):
                self._consider_flat(name, path, stat, entries, result)
            else:
                loose_files.append((name, stat))
        if only is None and not result.more:
            for name, stat in loose_files:
                if name in listed_by_sidecars:
                    continue
                stable, age = self._observe(name, _file_signature(stat))
                if not _is_regular(stat):
                    # It can never become a drop: say what it is once it has been still for the quiet period.
                    if stable:
                        what = "a sidecar" if name.lower().endswith(".xml") else "a document"
                        result.orphans.append(
                            Orphan(
                                name,
                                f"{name!r} in the outbox is {kind_of(stat.st_mode)}, not a regular file; the "
                                f"gateway takes only regular files and folders, so it cannot be {what}: drop "
                                "the file itself",
                            )
                        )
                    continue
                if stable and age >= self.incomplete_timeout:
                    result.orphans.append(
                        Orphan(
                            name,
                            f"the file {name!r} arrived in the outbox without a sidecar or message folder that "
                            f"names it, and none came within {self.incomplete_timeout:g} seconds. Drop it again "
                            "inside a message folder, or with a sidecar <name>.xml that lists it",
                        )
                    )
        return result

    def _list(self, only: Iterable[str] | None) -> dict[str, os.stat_result]:
        listed: dict[str, os.stat_result] = {}
        if only is not None:
            for name in only:
                try:
                    listed[name] = os.stat(self.outbox / name, follow_symlinks=False)
                except FileNotFoundError:
                    self.forget(name)
            return listed
        with os.scandir(self.outbox) as listing:
            for child in listing:
                try:
                    listed[child.name] = child.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
        return listed

    def _consider_folder(self, name: str, path: Path, result: ScanResult) -> None:
        signature = self._folder_signature(path)
        if signature is None:
            return
        stable, age = self._observe(name, signature)
        sidecar = path / FOLDER_SIDECAR_NAME
        names = {entry[0] for entry in signature}
        if FOLDER_SIDECAR_NAME not in names:
            if stable and age >= self.incomplete_timeout:
                result.ready.append(
                    Candidate(
                        "folder",
                        name,
                        name,
                        incomplete_reason=(
                            f"the folder {name!r} has no {FOLDER_SIDECAR_NAME}, and none came within "
                            f"{self.incomplete_timeout:g} seconds; add a {FOLDER_SIDECAR_NAME} "
                            "that describes the message"
                        ),
                    )
                )
            else:
                result.waiting += 1
            return
        # message.xml is a folder drop's commit marker: once it is there and the folder has been still
        # for the quiet period (or arrived by rename), the folder is complete as it stands, and
        # validation names any file it lacks.
        if name in self._moved_in or stable:
            result.ready.append(Candidate("folder", name, name))
            return
        # Before that, only sizes declared in the sidecar can show the folder complete. Validation
        # parses the sidecar anyway, so it is parsed here only when it may declare a size.
        sidecar_signature = next(entry[1] for entry in signature if entry[0] == FOLDER_SIDECAR_NAME)
        cached = self._sidecar_cache.get(str(sidecar))
        if (cached is None or cached[0] != sidecar_signature) and not may_declare_sizes(sidecar):
            result.waiting += 1
            return
        listed = self._listed_files(sidecar, sidecar_signature)
        sizes = {entry[0]: entry[1][0] for entry in signature}
        complete = listed is not None and all(file in sizes for file, _ in listed)
        declared_match = (
            complete
            and bool(listed)
            and all(
                declared is not None and sizes[file] == declared
                for file, declared in listed  # type: ignore[union-attr]
            )
        )
        if complete and declared_match:
            result.ready.append(Candidate("folder", name, name))
        else:
            result.waiting += 1

    def _consider_flat(
        self, name: str, path: Path, stat: os.stat_result, entries: dict[str, os.stat_result], result: ScanResult
    ) -> None:
        drop_name = name[: -len(".xml")]
        sidecar_signature = _file_signature(stat)
        listed = self._listed_files(path, sidecar_signature)
        files = [file for file, _ in listed] if listed else []
        present = [
            file
            for file in files
            if (file in entries and not _is_folder(entries[file]))
            or (file not in entries and os.path.lexists(self.outbox / file) and not _is_folder_path(self.outbox / file))
        ]
        folders = [file for file in files if file not in present and _is_folder_path(self.outbox / file)]
        signature = (
            sidecar_signature,
            *((file, _file_signature(entries[file]) if file in entries else None) for file in present),
        )
        stable, age = self._observe(name, signature)
        if listed is None:
            # Not readable yet: still being written, or broken. Wait for the quiet period, then let
            # validation explain what is wrong with it.
            if stable or name in self._moved_in:
                result.ready.append(Candidate("flat", drop_name, name))
            else:
                result.waiting += 1
            return
        if folders:
            reason = FLAT_LISTS_FOLDER.format(sidecar=name, name=folders[0])
            result.ready.append(Candidate("flat", drop_name, name, tuple(present), incomplete_reason=reason))
            return
        missing = [file for file in files if file not in present]
        declared_match = (
            not missing
            and bool(listed)
            and all(
                declared is not None and file in entries and entries[file].st_size == declared
                for file, declared in listed
            )
        )
        # A sidecar renamed in is the writer's commit marker: its documents were written before it.
        if not missing and (stable or declared_match or name in self._moved_in):
            result.ready.append(Candidate("flat", drop_name, name, tuple(present)))
        elif missing and age >= self.incomplete_timeout:
            result.ready.append(
                Candidate(
                    "flat",
                    drop_name,
                    name,
                    tuple(present),
                    incomplete_reason=(
                        f"the sidecar {name!r} lists {', '.join(repr(m) for m in missing)}, "
                        "which did not arrive within "
                        f"{self.incomplete_timeout:g} seconds; put the documents in the outbox before the sidecar"
                    ),
                )
            )
        else:
            result.waiting += 1


def _is_regular(stat: os.stat_result) -> bool:
    return stat_module.S_ISREG(stat.st_mode)


def _is_folder(stat: os.stat_result) -> bool:
    return stat_module.S_ISDIR(stat.st_mode)


def _is_folder_path(path: Path) -> bool:
    try:
        return _is_folder(os.lstat(path))
    except OSError:
        return False
