"""The journal rows of incoming messages, as the inbox writer and the quarantine make and reopen them."""

from __future__ import annotations

from gateway.clock import isoformat
from gateway.formats.sbd import StandardBusinessDocument
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.receipts.writer import status_file_name


class IncomingRows:
    """Rows of messages received on one channel."""

    def __init__(self, journal: Journal, channel_name: str) -> None:
        self.journal = journal
        self.channel_name = channel_name

    def create(self, sbd: StandardBusinessDocument, phase: Phase, **fields: object) -> MessageRecord:
        """Inside a step: the row of a message seen for the first time."""
        # When the sender made it: the start of the receive latency the metrics report.
        given = fields.pop("detail", None) or {}
        detail = {"sent_at": isoformat(sbd.created), **given}  # type: ignore[dict-item]
        return self.journal.create(
            direction="in",
            message_id=sbd.message_id,
            status_name=status_file_name(None, sbd.message_id, "in"),
            phase=phase,
            deadline=sbd.expected_response,
            conversation_id=sbd.conversation_id,
            sender=sbd.sender,
            receiver=sbd.receiver,
            message_type=sbd.message_type,
            process=sbd.process,
            channel=self.channel_name,
            detail=detail,
            **fields,
        )

    def reopen(self, quarantined: MessageRecord, reference: str, **detail: object) -> MessageRecord:
        """Inside a step: a quarantined message back to RECEIVED for its new copy (transfer `reference`). The
        first copy's FEIL stays in its history (as ANNET, with its words), its package in quarantine/."""
        self.journal.retire_failure(quarantined.row, f"the sender sent it again (transfer {reference})")
        kept = {key: value for key, value in quarantined.detail.items() if key != "released"}
        kept["previous_errors"] = [*kept.get("previous_errors", []), *quarantined.errors]
        return self.journal.move(quarantined.row, Phase.RECEIVED, errors=[],
                                 detail={**kept, **detail, "reference": reference})


__all__ = ["IncomingRows"]
