"""Quarantine: an incoming message that cannot be accepted keeps its raw package in state/quarantine/ for an
operator, and its journal row says FEIL with the reason; the next message goes on.

A kept package is named `<messageId>.<transfer id>` and the channel's `package_suffix`, one per transfer (a
sender's new copy beside the first); a package that could not even be read is `unreadable.<transfer id>`
with its reason beside it. Transfer ids are escaped into the name (`transfer_ids.file_part`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from gateway.contract.statuses import Status
from gateway.formats.sbd import StandardBusinessDocument
from gateway.fsio import PRIVATE_FILE_MODE, atomic_write_bytes, atomic_writer
from gateway.inbound.incoming_rows import IncomingRows
from gateway.inbound.transfer_ids import file_part, from_file_part
from gateway.journal import transfer_failures
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields

log = logging.getLogger(__name__)

QUARANTINE_FOLDER = "quarantine"  # in the state folder
EXPLANATION_SUFFIX = ".error.txt"


def kept_name(message_id: str, reference: str, package_suffix: str) -> str:
    """The name of the package transfer `reference` of message `message_id` is kept under."""
    return f"{message_id}.{file_part(reference)}{package_suffix}"


def reference_of_kept(message_id: str, name: str) -> str:
    """The transfer id in `name`, a kept package of message `message_id` (whatever its channel's suffix:
    an escaped transfer id holds no dot)."""
    return from_file_part(name.removeprefix(f"{message_id}.").split(".", 1)[0])


def find_kept(quarantine: Path, record: MessageRecord) -> Path | None:
    """The raw package the receiver kept when it quarantined `record` (the latest, when a resend left several)."""
    named = record.detail.get("kept")
    if named and "/" not in named and (quarantine / named).is_file():
        return quarantine / named
    try:
        entries = sorted(os.listdir(quarantine))
    except FileNotFoundError:
        return None
    prefix = f"{record.message_id}."
    found = [entry for entry in entries if entry.startswith(prefix) and not entry.endswith(EXPLANATION_SUFFIX)]
    return quarantine / found[-1] if found else None


def another_copy(record: MessageRecord, reference: str) -> bool:
    """Whether transfer `reference` is a new copy of the quarantined message `record` (not the same transfer
    offered again because its rejection did not get through)."""
    if record.phase != Phase.QUARANTINED:
        return False
    kept = record.detail.get("kept") or ""
    return record.detail.get("reference", reference_of_kept(record.message_id, kept)) != reference


class Quarantine:
    """The quarantine of one channel's incoming messages."""

    def __init__(self, folder: Path, journal: Journal, rows: IncomingRows, package_suffix: str) -> None:
        if package_suffix and not package_suffix.startswith("."):
            raise ValueError(f"a package suffix starts with a dot, not {package_suffix!r}")
        self.folder = folder
        self.journal = journal
        self.rows = rows
        self.channel_name = rows.channel_name
        self.package_suffix = package_suffix
        folder.mkdir(exist_ok=True)

    def message(
        self,
        sbd: StandardBusinessDocument,
        reference: str,
        download: BinaryIO,
        reason: str,
        existing: MessageRecord | None = None,
    ) -> None:
        """Keep the raw package for an operator, with a FEIL status; the next message goes on."""
        kept = self.folder / kept_name(sbd.message_id, reference, self.package_suffix)
        _keep(download, kept)  # beside the packages of earlier copies: each transfer its own
        with self.journal.transaction():
            if existing is None:
                existing = self.journal.find_live("in", sbd.message_id)
            if existing is None:
                existing = self.rows.create(sbd, Phase.QUARANTINED, errors=[reason],
                                            detail={"kept": kept.name, "reference": reference})
            elif another_copy(existing, reference):
                # A new copy, bad as well: both quarantines stay in view (the first as ANNET).
                existing = self.rows.reopen(existing, reference, kept=kept.name)
                self.journal.move(existing.row, Phase.QUARANTINED, errors=[reason])
            elif existing.phase == Phase.RECEIVED:
                self.journal.move(existing.row, Phase.QUARANTINED, errors=[reason])
            self.journal.add_event(existing.row, Status.FEIL, description=f"quarantined: {reason}")
            transfer_failures.forget(self.journal, self.channel_name, reference)
        log.warning("message %s from %s quarantined: %s", sbd.message_id, sbd.sender, reason,
                    extra=event_fields(sbd.message_id, None, self.channel_name, "FEIL"))

    def unreadable(self, reference: str, download: BinaryIO | None, reason: str) -> None:
        """A transfer that could not be read as a message: its package (when there is one) and the reason."""
        name = f"unreadable.{file_part(reference)}"
        if download is not None:
            _keep(download, self.folder / f"{name}{self.package_suffix}")
        atomic_write_bytes(self.folder / f"{name}{EXPLANATION_SUFFIX}", f"{reason}\n".encode(), PRIVATE_FILE_MODE)
        log.warning("incoming transfer %s quarantined: %s", reference, reason)

    def again(self, record: MessageRecord, reason: str) -> None:
        """A released message (see `efm-gateway release`) that still cannot be accepted goes back."""
        with self.journal.transaction():
            current = self.journal.get(record.row)
            if current.phase != Phase.RECEIVED:
                return
            self.journal.move(record.row, Phase.QUARANTINED, errors=[reason])
            self.journal.add_event(record.row, Status.FEIL, description=f"quarantined: {reason}")
        log.warning("released message %s quarantined again: %s", record.message_id, reason,
                    extra=event_fields(record.message_id, channel=self.channel_name, status="FEIL"))


def _keep(download: BinaryIO, kept: Path) -> None:
    """A copy of the downloaded package, whole or not at all."""
    download.seek(0)
    with atomic_writer(kept, PRIVATE_FILE_MODE) as target:  # a received message: the gateway's eyes only
        shutil.copyfileobj(download, target, 1 << 20)


__all__ = ["QUARANTINE_FOLDER", "Quarantine", "another_copy", "find_kept", "kept_name", "reference_of_kept"]
