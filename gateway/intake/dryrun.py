"""`efm-gateway validate`: the daemon's verdict on one outbox entry, judged in place and read-only.

The same rules as the scanner and validation, on the entry where it lies: nothing is copied, moved
or written, only regular files are opened (never through a link, never a FIFO or device), and
sizes are checked before anything is read.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import Config
from gateway.drops.claims import ClaimedDrop
from gateway.fsio import is_temporary_name, kind_of, printable
from gateway.intake.outbox import CANNOT_MOVE, MAX_DROP_NAME_BYTES
from gateway.intake.validate import Verdict, validate_claimed
from gateway.journal.engines import engine_for
from gateway.journal.reader import JournalReader


def judge_in_place(drop: Path, config: Config) -> Verdict:
    """What the daemon would conclude about `drop` (a drop folder or a flat sidecar) in the outbox."""
    name = drop.name
    info = os.lstat(drop)

    def refused(reason: str) -> Verdict:
        return Verdict(None, (reason,), str(uuid.uuid4()))

    if is_temporary_name(name):
        return refused(
            f"{name!r} has a temporary name (starting with . or ~, or ending with .tmp or .part): the daemon "
            "ignores it until it is renamed"
        )
    if stat.S_ISDIR(info.st_mode):
        kind, drop_name, folder = "folder", name, drop
        try:
            with os.scandir(drop):
                pass
        except PermissionError:
            return refused(
                f"the folder {name!r} cannot be read by the gateway (permission denied); give the gateway's user "
                "permission to read, enter and move it (rwx), then drop it again"
            )
        if _in_outbox(drop, config) and not os.access(drop, os.W_OK):
            return refused(CANNOT_MOVE.format(entry=printable(name), error="Permission denied"))
    elif stat.S_ISREG(info.st_mode) and name.lower().endswith(".xml"):
        kind, drop_name, folder = "flat", name[: -len(".xml")], drop.parent
    elif stat.S_ISREG(info.st_mode):
        return refused(
            f"{name!r} is a document, not a drop: validate the drop folder, or the flat sidecar <name>.xml "
            "that lists it"
        )
    else:
        what = "a sidecar" if name.lower().endswith(".xml") else "a document"
        return refused(
            f"{name!r} in the outbox is {kind_of(info.st_mode)}, not a regular file; the gateway takes only regular "
            f"files and folders, so it cannot be {what}: drop the file itself"
        )
    encoded = drop_name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_DROP_NAME_BYTES:
        return refused(
            f"the drop name is {len(encoded)} bytes long; drop names may be at most {MAX_DROP_NAME_BYTES} bytes: "
            "give it a shorter name"
        )
    claimed = ClaimedDrop(f"dry-run~{'d' if kind == 'folder' else 'f'}~{drop_name}", kind, drop_name, folder)
    journal = _journal_reader(config)
    try:
        return validate_claimed(claimed, config, journal, SystemClock())
    finally:
        if journal is not None:
            journal.close()


def _journal_reader(config: Config) -> JournalReader | None:
    """The configured journal, read-only: the SQLite file when it is there, or the shared PostgreSQL database
    (where `validate` asks whether a messageId is already taken)."""
    if config.journal.url is None:
        journal_path = config.folders.journal_path
        return JournalReader(journal_path) if journal_path.is_file() else None
    engine = engine_for(config.journal, config.folders.journal_path)
    try:
        # A connection of its own first: a database that does not answer is one line (a JournalError) at once.
        probe = engine.writer()
        try:
            made = engine.schema_version(probe) > 0
        finally:
            probe.close()
    except BaseException:
        engine.close()
        raise
    if not made:  # no node has run yet: nothing to look up, as without the SQLite file
        engine.close()
        return None
    return JournalReader(engine)


def _in_outbox(drop: Path, config: Config) -> bool:
    """Whether `drop` lies in the configured outbox (only there does it matter that it can be moved)."""
    try:
        return os.path.samefile(drop.parent, config.folders.outbox)
    except OSError:
        return False
