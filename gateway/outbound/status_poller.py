"""Poll a channel for the statuses of our open messages, a batch per round (DPV, DPF, DPI).

A cursor in the journal walks the open messages in row order, so 10,000 open messages cost at most
`batch` messages' worth of requests per round, and every message is reached in turn. Delivered
messages (waiting for LEST) and sent ones that expired stay in the walk for `watch_days`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gateway.channels.base import Channel, SentMessage
from gateway.clock import Clock
from gateway.contract.statuses import Status
from gateway.errors import ChannelError
from gateway.journal.store import Journal
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.outbound.completion import record_status
from gateway.receipts.writer import StatusWriter

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400.0


class StatusPoller:
    def __init__(
        self,
        journal: Journal,
        statuses: StatusWriter,
        clock: Clock,
        channel: Channel,
        batch: int,
        watch_days: float = 30.0,
    ) -> None:
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.channel = channel
        self.batch = batch
        self.watch_days = watch_days
        self.cursor_name = f"status-poll:{channel.name}"
        self.repeated = RepeatedErrors(log, noun="polls")

    def poll(self) -> int:
        """One round: the next batch of open messages; returns how many statuses were new."""
        self.repeated.flush()
        after = self.journal.cursor(self.cursor_name)
        since = self.clock.now().timestamp() - self.watch_days * DAY_SECONDS
        records = self.journal.awaiting_status(self.channel.name, after, self.batch, since)
        if not records and after:
            records = self.journal.awaiting_status(self.channel.name, 0, self.batch, since)  # wrap around
        if not records:
            return 0
        by_id = {record.message_id: record for record in records if record.detail.get("reference")}
        sent = [
            SentMessage(record.message_id, record.detail["reference"], datetime.fromtimestamp(record.created_at, UTC))
            for record in by_id.values()
        ]
        try:
            updates = self.channel.poll_statuses(sent) if sent else []
        except ChannelError as exc:
            self.repeated.log(
                logging.WARNING, f"status poll on {self.channel.name}: {same_kind(str(exc))}",
                "polling %s for the statuses of %d message(s) failed: %s; the next round tries again",
                self.channel.name, len(sent), exc,
            )
            return 0
        added = 0
        for update in updates:
            record = by_id.get(update.message_id)
            if record is None:
                continue
            status = Status(update.status)
            errors = [update.description] if status == Status.FEIL else None
            if record_status(self.journal, record.row, status, update.stamped_at, update.description, errors):
                added += 1
                log.info("message %s: %s on %s", record.message_id, status.value, self.channel.name)
        # A full batch: more may follow, go on from here next round. A short one: start over.
        self.journal.set_cursor(self.cursor_name, records[-1].row if len(records) == self.batch else 0)
        if added:
            self.statuses.flush_soon()
        return added
