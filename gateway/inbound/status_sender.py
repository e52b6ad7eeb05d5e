"""Send the status messages we owe senders (MOTTATT on receipt, LEVERT on pick-up).

A status message is never answered with another status: only received business messages queue
one. A duplicate after a crash is harmless: receivers keep statuses as a set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from gateway.channels.base import Channel, OutgoingPackage
from gateway.clock import Clock
from gateway.contract.statuses import Status
from gateway.errors import ChannelError, PermanentChannelError
from gateway.formats.keys import OrgIdentity
from gateway.journal.store import Journal, MessageRecord
from gateway.outbound.compose import status_sbd
from gateway.channels.dpo.package import pack_in_memory
from gateway.outbound.sender import RetryPolicy

log = logging.getLogger(__name__)


class StatusSender:
    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        channels: Mapping[str, Channel],
        identity: OrgIdentity,
        orgnr: str,
        retry: RetryPolicy | None = None,
        workers: int = 4,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.channels = channels
        self.identity = identity
        self.orgnr = orgnr
        self.retry = retry or RetryPolicy(first_seconds=10)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="status-send")

    def send_due(self) -> int:
        """Send every status that is due, a few at a time; returns how many went."""
        return sum(self._pool.map(lambda item: self._send_one(*item), self.journal.due_status_sends()))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _send_one(self, record: MessageRecord, status: Status, attempts: int) -> int:
        channel = self.channels.get(record.channel or "")
        if channel is None or not record.sender or not record.conversation_id or not record.process:
            self.journal.status_send_done(record.row, status)
            return 0
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
            package = pack_in_memory(sbd, [], self.identity, None)
            channel.send(
                # A duplicate status is harmless (receivers keep statuses as a set): one request, not two.
                OutgoingPackage(record.message_id, self.orgnr, record.sender, package, repeatable=True),
                on_reference=lambda _reference: None,
            )
        except PermanentChannelError as exc:
            log.warning("status %s for message %s cannot be sent: %s", status.value, record.message_id, exc)
            self.journal.status_send_done(record.row, status)
            return 0
        except Exception as exc:
            # Network trouble, or anything else (a full disk): back off for this one, the others go on.
            delay = self.retry.delay(attempts + 1)
            if isinstance(exc, ChannelError):
                log.warning("status %s for %s: %s; trying again in %.0f s", status.value, record.message_id, exc, delay)
            else:
                log.exception("status %s for %s failed; trying again in %.0f s", status.value, record.message_id, delay)
            self.journal.status_send_later(record.row, status, self.clock.now().timestamp() + delay)
            return 0
        self.journal.status_send_done(record.row, status)
        return 1

