"""Send the status messages we owe senders (MOTTATT on receipt, LEVERT on pick-up).

A status message is never answered with another status: only received business messages queue
one. A duplicate after a crash is harmless: receivers keep statuses as a set. One that cannot be
sent is retried with back-off until the received message's deadline, and for an hour past it (a
LEVERT is often owed after the deadline, when the archive took the message late), then given up
with a log line.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from gateway.channels.base import Channel
from gateway.clock import Clock
from gateway.contract.statuses import Status
from gateway.delivery.backoff import RetryPolicy, retry_after_of
from gateway.delivery.circuit import Circuits
from gateway.errors import ChannelError, JournalError, PermanentChannelError, RetryableChannelError
from gateway.journal.claims import Claim, FencedOut
from gateway.journal.item_claims import ItemClaims
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.outbound.compose import status_sbd
from gateway.progress import carried

log = logging.getLogger(__name__)

# One hiccup after the deadline must not lose a status the sender waits for: an hour more of tries.
GRACE_PAST_DEADLINE_S = 3600.0
DUE_LIMIT = 200  # status messages a pass takes


class StatusSender:
    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        channels: Mapping[str, Channel],
        orgnr: str,
        retry: RetryPolicy | None = None,
        workers: int = 4,
        circuits: Circuits | None = None,
        items: ItemClaims | None = None,
    ) -> None:
        """`items`: this node's claims where nodes share the journal (PostgreSQL): every node sends, each status
        claimed by one; None on SQLite, whose one node sends all."""
        self.journal = journal
        self.clock = clock
        self.channels = channels
        self.orgnr = orgnr
        # Small, and harmless twice: never left waiting long (at most ten minutes between tries).
        self.retry = retry or RetryPolicy(first_seconds=10, max_seconds=600)
        self.circuits = circuits or Circuits(clock)
        self.repeated = RepeatedErrors(log, noun="status messages")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="status-send")
        self.items = items

    def send_due(self) -> int:
        """Send every status that is due, a few at a time; returns how many went. Each one sent or tried is a sign
        of life of the job that runs this: hundreds owed at once (an archive taking a day's post) take longer
        than the job's interval and grace, and it is moving, not hung."""
        self.repeated.flush()
        alive = carried()
        if self.items is None:
            due, send = self.journal.due_status_sends(), self._send_one
        else:
            due, send = self.items.status_sends(DUE_LIMIT), self._send_claimed

        def one(item: tuple) -> int:
            try:
                return send(*item)
            finally:
                alive()

        return sum(self._pool.map(one, due))

    def _send_claimed(self, row: int, status: str, attempts: int, claim: Claim) -> int:
        """One status this node claimed: every journal step about it checks the claim; let go after."""
        assert self.items is not None
        held = self.items.held
        try:
            with held.fencing(claim):
                return self._send_one(self.journal.get(row), Status(status), attempts, claim)
        except FencedOut:
            return 0  # another node took it over while this one was sending it (said in one line)
        finally:
            with contextlib.suppress(sqlite3.Error, JournalError):
                held.let_go(claim)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _done(self, record: MessageRecord, status: Status, claim: Claim | None) -> None:
        """Sent, or given up: owed no more. A claimed one's claim goes with it (not released after: one step)."""
        if claim is None or self.items is None:
            self.journal.status_send_done(record.row, status)
        else:
            self.items.status_send_done(record.row, status, claim)

    def _send_one(self, record: MessageRecord, status: Status, attempts: int, claim: Claim | None = None) -> int:
        channel = self.channels.get(record.channel or "")
        if (
            channel is None or not channel.capabilities.carries_status_messages
            or not record.sender or not record.conversation_id or not record.process
        ):
            self._done(record, status, claim)
            return 0
        circuit = self.circuits[channel.name]
        probe = circuit.is_open and circuit.take_probe()
        if circuit.is_open and not probe:
            return 0  # the channel is paused: this waits, and goes when the channel answers again
        try:
            sbd = status_sbd(
                sender=self.orgnr,
                receiver=record.sender,
                message_id=record.message_id,
                conversation_id=record.conversation_id,
                process=record.process,
                status=status.value,
                created=self.clock.now(),
            )
            try:
                channel.send_status(sbd)
            except RetryableChannelError as exc:
                circuit.failed(exc)
                raise
            except PermanentChannelError:
                circuit.succeeded()
                raise
            finally:
                if probe:
                    circuit.probe_done()
            circuit.succeeded()
        except PermanentChannelError as exc:
            log.warning("status %s for message %s cannot be sent: %s", status.value, record.message_id, exc)
            self._done(record, status, claim)
            return 0
        except Exception as exc:
            # Network trouble, or anything else (a full disk): back off for this one, the others go on.
            # Like a business message: while the channel carries others, a retry within about a minute.
            delay = self.retry.delay(attempts + 1, retry_after_of(exc), channel_working=circuit.working())
            now = self.clock.now().timestamp()
            past_deadline = record.deadline is not None and now >= record.deadline.timestamp()
            if past_deadline and now >= record.deadline.timestamp() + GRACE_PAST_DEADLINE_S:
                log.warning(
                    "status %s for message %s from %s given up: it could not be sent before the message's "
                    "deadline %s (%s)", status.value, record.message_id, record.sender,
                    record.deadline.isoformat(), exc,
                )
                self._done(record, status, claim)
                return 0
            if isinstance(exc, ChannelError | OSError | sqlite3.OperationalError):
                self.repeated.log(
                    logging.WARNING, f"status on {channel.name}: {same_kind(str(exc))}",
                    "status %s for %s on %s: %s; trying again in %.0f s",
                    status.value, record.message_id, channel.name, exc, delay,
                )
            else:
                log.exception("status %s for %s failed; trying again in %.0f s", status.value, record.message_id, delay)
            due = now + delay
            if record.deadline is not None:
                limit = record.deadline.timestamp() + (GRACE_PAST_DEADLINE_S if past_deadline else 0.0)
                due = min(due, limit)  # a try at the deadline, and a last one at the end of the grace
            self.journal.status_send_later(record.row, status, due)
            return 0
        self._done(record, status, claim)
        return 1
