"""The originals of sent messages: on their way from the work area to sent/, then kept there for a while.

Noted in the step that records the message SENT, and kept apart from the message's row (retention may purge
that one sooner): originals that could not be moved on are found again after any restart, and never taken
for a new drop; and sent/ is purged by when the message was sent, not by the times its files brought along
(`cp -a` and `rsync -a` keep the source's mtime through the rename).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.fsio import durable_rename, share_tree, unique_target
from gateway.journal.store import Journal

_COLUMNS = "claim_id, message_id, drop_name, sent_at, sent_name, filed_at"
MAX_SENT_NAME_BYTES = 240  # room for a counter within the file system's 255 bytes
# One claim is filed by one thread at a time (the send that finished, and the pass that moves what waits).
_LOCKS = [threading.Lock() for _ in range(64)]


@dataclass(frozen=True)
class SentOriginals:
    claim_id: str | None  # None: an entry found in sent/ that no row named (sent before the journal kept them)
    message_id: str | None
    drop_name: str
    sent_at: float  # retention counts from here
    sent_name: str | None  # its name in sent/, chosen (and journaled) before the move
    filed_at: float | None  # None while the originals wait in the work area


def _of(row: tuple) -> SentOriginals:
    return SentOriginals(*row)


def note_sent(journal: Journal, claim_id: str, message_id: str, drop_name: str, sent_at: float) -> None:
    """Inside the step that records the message SENT: its originals are owed to sent/ from now on."""
    journal.execute(
        "INSERT INTO sent_originals (claim_id, message_id, drop_name, sent_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (claim_id, message_id, drop_name, sent_at),
    )


def find(journal: Journal, claim_id: str) -> SentOriginals | None:
    rows = journal.query(f"SELECT {_COLUMNS} FROM sent_originals WHERE claim_id = ?", (claim_id,))  # noqa: S608
    return _of(rows[0]) if rows else None


def waiting(journal: Journal, limit: int = 100, noted_before: float | None = None) -> list[SentOriginals]:
    """Originals of sent messages still in the work area (their move to sent/ failed), oldest first; only those noted
    before `noted_before` where given (nodes sharing the journal: a younger one is being moved by its sender now)."""
    if noted_before is not None:
        rows = journal.query(f"SELECT {_COLUMNS} FROM sent_originals WHERE filed_at IS NULL AND sent_at < ? "  # noqa: S608
                             "ORDER BY id LIMIT ?", (noted_before, limit))
    else:
        rows = journal.query(
            f"SELECT {_COLUMNS} FROM sent_originals WHERE filed_at IS NULL ORDER BY id LIMIT ?", (limit,)  # noqa: S608
        )
    return [_of(row) for row in rows]


def _file_in_sent(
    journal: Journal, originals: SentOriginals, claim_folder: Path, sent: Path, now: float, group: int | None
) -> bool:
    """Move `claim_folder` to sent/ under a name journaled first; repeatable after a crash at any point.
    True when the originals are in sent/ now, False when there was nothing left to move."""
    assert originals.claim_id is not None
    name = originals.sent_name
    moved = False
    while os.path.lexists(claim_folder) and not moved:
        if name is None or os.path.lexists(sent / name):
            name = unique_target(sent, _shortened(originals.drop_name)).name
            journal.execute("UPDATE sent_originals SET sent_name = ? WHERE claim_id = ?", (name, originals.claim_id))
        try:
            durable_rename(claim_folder, sent / name)
            moved = True
        except FileExistsError:
            continue  # another message's originals took that name a moment ago: choose again
        except FileNotFoundError:
            if os.path.lexists(claim_folder):
                raise
            return False  # another node moved them a moment ago (nodes sharing the folders); it journals the move
        share_tree(sent / name, group)  # the archive system's to read (what of it is ours to give)
    present = moved or (name is not None and os.path.lexists(sent / name))
    journal.execute(
        "UPDATE sent_originals SET filed_at = ?, sent_name = ? WHERE claim_id = ?",
        (now, name if present else None, originals.claim_id),
    )
    return present


def file_away(journal: Journal, claim_id: str, work: Path, sent: Path, now: float, group: int | None = None) -> bool:
    """Move the noted originals of the claim `claim_id` (its folder in `work`) to sent/, readable by `group`;
    False when none are noted or nothing was left to move. Raises OSError (or sqlite3.Error) when the move
    cannot be made now."""
    with _LOCKS[hash(claim_id) % len(_LOCKS)]:
        noted = find(journal, claim_id)
        if noted is None or noted.filed_at is not None:
            return False  # none owed, or filed by another thread a moment ago
        return _file_in_sent(journal, noted, work / claim_id, sent, now, group)


def purge_sent(journal: Journal, sent: Path, now: float, keep_seconds: float) -> int:
    """Remove what sent/ holds of messages sent before `now - keep_seconds`; returns how many entries.

    An entry no row names (sent before the journal kept sent times, or put there by hand) is noted at
    first sight and kept for the whole period from then: never removed sooner than it should be.
    """
    known = {name for (name,) in journal.query("SELECT sent_name FROM sent_originals WHERE sent_name IS NOT NULL")}
    for entry in sorted(os.listdir(sent)):
        stored = _stored(entry)
        if stored not in known:
            journal.execute(
                "INSERT INTO sent_originals (drop_name, sent_at, sent_name, filed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (stored, now, stored, now),
            )
    removed = 0
    for row, name in journal.query(
        "SELECT id, sent_name FROM sent_originals WHERE filed_at IS NOT NULL AND sent_at < ? ORDER BY sent_at",
        (now - keep_seconds,),
    ):
        if name:
            path = sent / (os.fsdecode(name) if isinstance(name, bytes) else name)
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                    removed += 1
                elif os.path.lexists(path):
                    path.unlink()  # a link is removed as a link: what it points at is not ours
                    removed += 1
            except FileNotFoundError:
                pass
        journal.execute("DELETE FROM sent_originals WHERE id = ?", (row,))
    return removed


def _stored(entry: str) -> str | bytes:
    """An entry's name as the journal can hold it: its bytes when it is not valid UTF-8 (put there by hand)."""
    try:
        entry.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(entry)
    return entry


def _shortened(drop_name: str) -> str:
    encoded = drop_name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_SENT_NAME_BYTES:
        return encoded[:MAX_SENT_NAME_BYTES].decode("utf-8", "ignore") + "~"
    return drop_name or "drop"
