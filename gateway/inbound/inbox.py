"""The inbox's side of received messages, whatever channel brought them: the hand-over from the
staging area, its recovery after a crash, and noticing that the archive system took a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.fsio import durable_rename, fsync_dir
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.progress import progress
from gateway.receipts.writer import StatusWriter

log = logging.getLogger(__name__)


class Inbox:
    def __init__(self, config: Config, journal: Journal, statuses: StatusWriter) -> None:
        self.config = config
        self.journal = journal
        self.statuses = statuses
        self._inbox_device = os.stat(config.folders.inbox).st_dev
        self._absent_before: set[int] = set()

    def hand_over(self, record: MessageRecord) -> None:
        """Rename an assembled message from the staging area into the inbox, if it is still waiting there."""
        if record.phase != Phase.IN_INBOX:
            return
        folder_name = record.detail.get("inbox_folder", record.message_id)
        staging = self.config.folders.inbox_staging / folder_name
        if not staging.exists():
            return
        target = self.config.folders.inbox / folder_name
        if target.exists():
            with contextlib.suppress(FileNotFoundError):  # another node's hand-over moved it meanwhile
                shutil.rmtree(staging)  # handed over already; a leftover copy
            return
        try:
            durable_rename(staging, target)
        except (FileNotFoundError, FileExistsError):
            # Nodes share the staging folder on the inbox's share: another node's hand-over of this message (the
            # node that received it, or one finishing hand-overs at its start) moved it first, and once.
            if staging.exists():
                raise
            log.info("message %s was handed over to the inbox by another node", record.message_id)

    def recover(self) -> int:
        """At start-up: finish every hand-over to the inbox that a crash cut off."""
        finished = 0
        for row, folder in self.journal.inbox_folders():
            if (self.config.folders.inbox_staging / folder).exists():
                self.hand_over(self.journal.get(row))
                finished += 1
        return finished

    def check_picked_up(self) -> int:
        """Messages the archive system has taken out of the inbox: INNKOMMENDE_LEVERT, LEVERT owed."""
        inbox = self.config.folders.inbox
        try:
            device = os.stat(inbox).st_dev
        except OSError:
            device = None
        if device != self._inbox_device:
            # An unmounted share shows an empty folder on another file system: that is not "taken".
            log.warning("the inbox %s is not on the file system it was on at start; is the share mounted?", inbox)
            self._absent_before = set()
            return 0
        # Order matters: the rows first, then staging, then the inbox. A folder moving from staging to
        # the inbox meanwhile is seen in one listing or the other, and never looks taken.
        waiting = self.journal.inbox_folders()
        in_transit = set(os.listdir(self.config.folders.inbox_staging))
        present = set(os.listdir(inbox))
        absent = {row for row, folder in waiting if folder not in present and folder not in in_transit}
        # Gone on two checks in a row, so a share's hiccup is not taken for the archive's pick-up.
        confirmed, self._absent_before = absent & self._absent_before, absent - self._absent_before
        taken = 0
        for row, _folder in waiting:
            if row not in confirmed:
                continue
            progress()  # a day's post taken at once is many steps: the job moves, it is not hung
            with self.journal.transaction():
                self.journal.move(row, Phase.TAKEN)
                self.journal.add_event(row, Status.INNKOMMENDE_LEVERT, description="taken by the archive system")
                self.journal.queue_status_send(row, Status.LEVERT)
            taken += 1
        if taken:
            self.statuses.flush_soon()
        return taken


def sync_tree(folder: Path) -> None:
    """fsync `folder` and every folder under it (documents may sit in subfolders), deepest first."""
    subfolders = [Path(root) / name for root, names, _files in os.walk(folder) for name in names]
    for subfolder in reversed(subfolders):
        fsync_dir(subfolder)
    fsync_dir(folder)
