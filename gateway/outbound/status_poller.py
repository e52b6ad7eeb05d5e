"""Poll a channel for the statuses of our open messages, a batch per round (DPV, DPF, DPI).

Each round takes the messages whose next poll is due, those due longest first: three quarters of the
batch from those waiting for LEVERT, the rest from those that may still get LEST or a late LEVERT
(delivered ones, and sent ones that expired, for `watch_days` after they were made). 10,000 open
messages cost at most `batch` messages' worth of requests per round, every message is reached in turn,
and the late ones never crowd out the messages whose deadline is near. The batch is asked in requests of
the channel's `statuses_per_request`, up to `in_flight` at once.

After each answer the message's next poll is set by how long its status has stood still (poll_schedule.py:
every round for a day, then less often, down to once an hour after 30 days). A message its provider no
longer has (the channel's `ends_polling` update, from a 404 or 410) gets ANNET with the channel's words
and is not asked for again. While the channel is paused (it asked us to wait: 429, 503, Retry-After)
nothing is asked of it, and such an answer to a poll pauses it for every caller.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from gateway.channels.base import Channel, SentMessage, StatusUpdate
from gateway.clock import Clock
from gateway.contract.statuses import Status
from gateway.delivery.circuit import ChannelCircuit, ChannelPaused
from gateway.errors import ChannelError, JournalError
from gateway.journal.claims import Claim, FencedOut, gave_way
from gateway.journal.completion import record_status
from gateway.journal.item_claims import ItemClaims
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.outbound.poll_schedule import DAY_SECONDS, PollSchedule
from gateway.progress import carried, progress
from gateway.receipts.writer import StatusWriter

log = logging.getLogger(__name__)

WAITING = (Phase.SENT.value,)
LATE = (Phase.DELIVERED.value, Phase.EXPIRED.value)


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
        circuit: ChannelCircuit | None = None,
        schedule: PollSchedule | None = None,
        items: ItemClaims | None = None,
    ) -> None:
        """`items`: this node's claims where nodes share the journal (PostgreSQL): every node polls, each message
        claimed by one for the round; None on SQLite, whose one node polls all."""
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.channel = channel
        self.batch = batch
        self.watch_days = watch_days
        self.repeated = RepeatedErrors(log, noun="polls")
        self.in_flight = in_flight
        self.circuit = circuit
        self.schedule = schedule or PollSchedule()
        self.items = items
        self._claims: dict[int, Claim] = {}  # row -> this node's claim on polling it this round

    def due(self) -> list[MessageRecord]:
        """The messages this round asks about: most of the batch for those waiting for LEVERT (they have a
        deadline); what is left of it for those that may still get LEST or a late LEVERT."""
        now = self.clock.now().timestamp()
        if self.items is not None:
            # Each claim is noted as soon as it is made: poll() lets go of every noted claim, also when the database
            # fails between the two steps (a claim never let go would be renewed for ever, its message never polled).
            self._claims = self.items.polls(self.channel.name, WAITING, self.batch - self.batch // 4)
            self._claims.update(self.items.polls(self.channel.name, LATE, self.batch - len(self._claims)))
            return self.journal.polls_of(list(self._claims))
        records = self.journal.due_for_poll(self.channel.name, WAITING, now, self.batch - self.batch // 4)
        return records + self.journal.due_for_poll(self.channel.name, LATE, now, self.batch - len(records))

    def poll(self) -> int:
        """One round; returns how many statuses were new."""
        self.repeated.flush()
        if self.circuit is not None and self.circuit.seconds_left() > 0:
            log.debug("%s is paused: no status poll this round", self.channel.name)
            return 0
        try:
            return self._round()
        finally:
            claims, self._claims = self._claims, {}
            if self.items is not None:
                with contextlib.suppress(sqlite3.Error, JournalError):
                    self.items.held.let_go_all(list(claims.values()))

    def _round(self) -> int:
        records = self._askable(self.due())
        if not records:
            return 0
        by_id = {record.message_id: record for record in records}
        sent = [
            SentMessage(record.message_id, record.detail["reference"], datetime.fromtimestamp(record.created_at, UTC))
            for record in records
        ]
        try:
            updates, answered = self._ask(sent)
        except ChannelError as exc:
            self._failed(exc, len(sent))
            return 0
        added = 0
        ended: set[str] = set()
        for update in updates:
            progress()
            record = by_id.get(update.message_id)
            if record is None:
                continue
            if self._record(record, update):
                added += 1
            if update.ends_polling:
                ended.add(record.message_id)
                log.info("message %s: %s no longer has it; its status is not asked for any more",
                         record.message_id, self.channel.name,
                         extra=event_fields(record.message_id, record.drop_name, self.channel.name, "ANNET"))
        self._schedule([by_id[message_id] for message_id in answered if message_id in by_id], ended)
        if added:
            self.statuses.flush_soon()
        return added

    def _askable(self, records: list[MessageRecord]) -> list[MessageRecord]:
        """`records` that are still worth a request; the others (no reference, or late ones past the watch
        period) are not polled again."""
        since = self.clock.now().timestamp() - self.watch_days * DAY_SECONDS
        askable, done = [], []
        for record in records:
            late = record.phase != Phase.SENT and record.created_at < since
            (done if late or not record.detail.get("reference") else askable).append(record)
        self._set_next_polls(dict.fromkeys((record.row for record in done), None))
        return askable

    def _set_next_polls(self, next_polls: dict[int, float | None]) -> None:
        """journal.set_next_polls for the rows whose claim is still this node's (the others refused, a line each)."""
        if self.items is None or not next_polls:
            self.journal.set_next_polls(next_polls)
            return
        with self.journal.transaction():
            kept = {}
            for row, when in next_polls.items():
                claim = self.items.held.current(self._claims[row])
                try:
                    self.items.held.claims.check(claim)
                except FencedOut:
                    continue
                kept[row] = when
            self.journal.set_next_polls(kept)

    def _record(self, record: MessageRecord, update: StatusUpdate) -> bool:
        status = Status(update.status)
        errors = [update.description] if status == Status.FEIL else None
        try:
            with self._fencing(record.row):
                if not record_status(self.journal, record.row, status, update.stamped_at, update.description, errors):
                    return False
        except FencedOut:
            return False  # another node took the message over while this one was asking (said in one line)
        except sqlite3.OperationalError as exc:
            if not gave_way(exc):
                raise
            log.info("message %s: its %s waits, another node is changing it; asked again next round",
                     record.message_id, status.value)
            return False
        log.info("message %s: %s on %s", record.message_id, status.value, self.channel.name,
                 extra=event_fields(record.message_id, record.drop_name, self.channel.name, status.value))
        return True

    def _fencing(self, row: int) -> contextlib.AbstractContextManager[None]:
        if self.items is None:
            return contextlib.nullcontext()
        return self.items.held.fencing(self._claims.get(row))

    def _schedule(self, answered: list[MessageRecord], ended: set[str]) -> None:
        """Each answered message's next poll, by how long its status has stood still; never again for `ended`."""
        now = self.clock.now().timestamp()
        changed = self.journal.last_status_changes([record.row for record in answered])
        self._set_next_polls({
            record.row: None if record.message_id in ended
            else self.schedule.next_poll(now, changed.get(record.row, record.created_at))
            for record in answered
        })

    def _failed(self, exc: ChannelError, count: int) -> None:
        if isinstance(exc, ChannelPaused):
            log.debug("status poll on %s: %s", self.channel.name, exc)
            return
        self.repeated.log(
            logging.WARNING, f"status poll on {self.channel.name}: {same_kind(str(exc))}",
            "polling %s for the statuses of %d message(s) failed: %s; the next round tries again",
            self.channel.name, count, exc,
        )

    def _ask_one(self, chunk: Sequence[SentMessage]) -> list[StatusUpdate]:
        """One request's worth, unless the channel is paused; an answer asking us to wait pauses it."""
        if self.circuit is None:
            return self.channel.poll_statuses(chunk)
        self.circuit.guard()
        try:
            return self.channel.poll_statuses(chunk)
        except ChannelError as exc:
            self.circuit.heed(exc)
            raise

    def _ask(self, sent: list[SentMessage]) -> tuple[list[StatusUpdate], list[str]]:
        """The statuses of `sent`, a request's worth at a time, several requests on the wire at once, and the
        messages whose request was answered. The round fails only when every request failed."""
        size = max(1, self.channel.capabilities.statuses_per_request)
        chunks = [sent[start:start + size] for start in range(0, len(sent), size)]
        if len(chunks) == 1:
            return self._ask_one(chunks[0]), [message.message_id for message in chunks[0]]
        failures: list[ChannelError] = []
        answered: list[str] = []
        alive = carried()  # every answer, in whichever thread, is a sign of life of this round

        def one(chunk: Sequence[SentMessage]) -> list[StatusUpdate]:
            try:
                found = self._ask_one(chunk)
            except ChannelError as exc:
                failures.append(exc)
                return []
            finally:
                alive()
            answered.extend(message.message_id for message in chunk)
            return found

        with ThreadPoolExecutor(max_workers=min(self.in_flight, len(chunks)),
                                thread_name_prefix=f"status-poll-{self.channel.name.lower()}") as pool:
            updates = [update for found in pool.map(one, chunks) for update in found]
        if len(failures) == len(chunks):
            raise next((failure for failure in failures if not isinstance(failure, ChannelPaused)), failures[0])
        shown = [failure for failure in failures if not isinstance(failure, ChannelPaused)]
        if shown:
            self.repeated.log(
                logging.WARNING, f"status poll on {self.channel.name}: {same_kind(str(shown[0]))}",
                "polling %s: %d of %d requests failed (%s); those messages are asked again in a later round",
                self.channel.name, len(failures), len(chunks), shown[0],
            )
        return updates, answered
