"""Write status files from the journal: atomically, and again after a crash if a write was lost."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.status import StatusReport, render_status
from gateway.fsio import atomic_write_bytes
from gateway.journal.store import Journal, MessageRecord

log = logging.getLogger(__name__)


def status_file_name(drop_name: str | None, message_id: str, direction: str) -> str:
    if direction == "in":
        return f"in.{message_id}.xml"
    return f"{drop_name}.{message_id}.xml"


class StatusWriter:
    def __init__(self, journal: Journal, folder: Path, clock: Clock) -> None:
        self.journal = journal
        self.folder = folder
        self.clock = clock

    def report(self, record: MessageRecord) -> StatusReport:
        return StatusReport(
            message_id=record.message_id,
            direction="outgoing" if record.direction == "out" else "incoming",
            events=tuple(self.journal.events(record.row)),
            updated=self.clock.now(),
            conversation_id=record.conversation_id,
            drop_name=record.drop_name,
            client_reference=record.client_reference,
            sender=record.sender,
            receiver=record.receiver,
            message_type=record.message_type,
            process=record.process,
            deadline=record.deadline,
            channel=record.channel,
            route_reason=record.route_reason,
            errors=record.errors,
        )

    def write(self, record: MessageRecord) -> None:
        atomic_write_bytes(self.folder / record.status_name, render_status(self.report(record)))

    def flush(self, limit: int = 500) -> int:
        """Rewrite every status file whose message changed since it was last written."""
        written = 0
        while True:
            dirty = self.journal.dirty(limit)
            if not dirty:
                return written
            for record in dirty:
                self.write(record)
            self.journal.mark_clean(dirty)
            written += len(dirty)
            if len(dirty) < limit:
                return written
