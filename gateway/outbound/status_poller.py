"""Poll a channel for the statuses of our open messages, a batch per round (DPV, DPF, DPI).

Two cursors in the journal walk the messages in row order: one over those waiting for LEVERT (three
quarters of each batch), one over those that may still get LEST or a late LEVERT (delivered ones, and
sent ones that expired, for `watch_days`). 10,000 open messages cost at most `batch` messages' worth
of requests per round, every message is reached in turn, and the late walk never crowds out the
messages whose deadline is near. Each walk's query is an index range, however large the journal.
The batch is asked in requests of the channel's `statuses_per_request`, up to `in_flight` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from gateway.channels.base import Channel, SentMessage, StatusUpdate
from gateway.clock import Clock
from gateway.contract.statuses import Status
from gateway.errors import ChannelError
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
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
        in_flight: int = 8,
    ) -> None:
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.channel = channel
        self.batch = batch
        self.watch_days = watch_days
        self.cursor_name = f"status-poll:{channel.name}"
        self.repeated = RepeatedErrors(log, noun="polls")
        self.in_flight = in_flight

    def _next(
        self, walk: str, limit: int, query: Callable[[str, int, int], list[MessageRecord]]
    ) -> list[MessageRecord]:
        """The next `limit` rows of one walk, its cursor moved on (back to the start after its last row)."""
        if limit <= 0:
            return []
        name = f"{self.cursor_name}:{walk}"
        after = self.journal.cursor(name)
        records = query(self.channel.name, after, limit)
        if len(records) < limit and after:
            records += [r for r in query(self.channel.name, 0, limit - len(records)) if r.row <= after]
        # A full batch: more may follow, go on from here. A short one: the walk starts over.
        self.journal.set_cursor(name, records[-1].row if len(records) == limit else 0)
        return records

    def poll(self) -> int:
        """One round: the next batch of messages waiting for LEVERT first (they have a deadline), and with
        what is left of the batch the next of those that may still get LEST or a late LEVERT. Returns how
        many statuses were new."""
        self.repeated.flush()
        # Most of the batch goes to messages waiting for LEVERT; a quarter is kept for the late walk, so
        # neither starves the other however many there are of each.
        records = self._next("sent", self.batch - self.batch // 4, self.journal.awaiting_delivery)
        since = self.clock.now().timestamp() - self.watch_days * DAY_SECONDS
        records += self._next(
            "late", self.batch - len(records),
            lambda channel, after, limit: self.journal.awaiting_late_status(channel, after, limit, since),
        )
        if not records:
            return 0
        by_id = {record.message_id: record for record in records if record.detail.get("reference")}
        sent = [
            SentMessage(record.message_id, record.detail["reference"], datetime.fromtimestamp(record.created_at, UTC))
            for record in by_id.values()
        ]
        try:
            updates = self._ask(sent) if sent else []
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
                log.info("message %s: %s on %s", record.message_id, status.value, self.channel.name,
                         extra=event_fields(record.message_id, record.drop_name, self.channel.name, status.value))
        if added:
            self.statuses.flush_soon()
        return added

    def _ask(self, sent: list[SentMessage]) -> list[StatusUpdate]:
        """The statuses of `sent`, a request's worth at a time, several requests on the wire at once. The
        round fails only when every request failed."""
        size = max(1, self.channel.capabilities.statuses_per_request)
        chunks = [sent[start:start + size] for start in range(0, len(sent), size)]
        if len(chunks) == 1:
            return self.channel.poll_statuses(chunks[0])
        failures: list[ChannelError] = []

        def one(chunk: Sequence[SentMessage]) -> list[StatusUpdate]:
            try:
                return self.channel.poll_statuses(chunk)
            except ChannelError as exc:
                failures.append(exc)
                return []

        with ThreadPoolExecutor(max_workers=min(self.in_flight, len(chunks)),
                                thread_name_prefix=f"status-poll-{self.channel.name.lower()}") as pool:
            updates = [update for found in pool.map(one, chunks) for update in found]
        if len(failures) == len(chunks):
            raise failures[0]
        if failures:
            self.repeated.log(
                logging.WARNING, f"status poll on {self.channel.name}: {same_kind(str(failures[0]))}",
                "polling %s: %d of %d requests failed (%s); those messages are asked again in a later round",
                self.channel.name, len(failures), len(chunks), failures[0],
            )
        return updates
