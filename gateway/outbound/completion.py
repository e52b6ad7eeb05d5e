"""When a sent message is finished: decided from the statuses it holds, whatever order they came in."""

from __future__ import annotations

from gateway.contract.statuses import Status
from gateway.journal.phases import Phase
from gateway.journal.store import Journal

# A receipt (arkivmelding_kvittering) follows only an arkivmelding; other messages end at LEVERT.
EXPECTS_RECEIPT = frozenset({"arkivmelding"})


def settle(journal: Journal, row: int) -> None:
    """Inside a transaction: end a SENT message whose statuses say it is done (LEST, or LEVERT without a
    receipt to wait for) or failed (FEIL from the receiver's kvittering)."""
    record = journal.get(row)
    if record.phase != Phase.SENT:
        return
    statuses = {event.status for event in journal.events(row)}
    if Status.FEIL in statuses:
        journal.move(row, Phase.FAILED)
    elif Status.LEST in statuses or (record.message_type not in EXPECTS_RECEIPT and Status.LEVERT in statuses):
        journal.move(row, Phase.DONE)
