"""A sent message's statuses, and when it is finished: decided from the set of statuses it holds, in
whatever order they came.

- FEIL (a kvittering ERROR, a channel's failure) ends it as failed, even after LEST or an expiry: the
  status file's current status is FEIL then too.
- LEST ends it as done.
- LEVERT ends it as done where no receipt is expected; where one is, it is delivered: finished for
  expiry and retention, while LEST may still come.
- A delivery outranks an expiry: LEVERT or LEST after LEVETID_UTLOPT makes the message delivered or
  done, and the history keeps both events.
"""

from __future__ import annotations

from datetime import datetime

from gateway.contract.statuses import Status
from gateway.journal.engine import JournalUnavailable
from gateway.journal.phases import Phase
from gateway.journal.store import Journal

SETTLEABLE = (Phase.SENT, Phase.DELIVERED, Phase.EXPIRED, Phase.DONE)
# Messages journaled before channels said whether they expect one: a kvittering follows an arkivmelding.
_DEFAULT_RECEIPT_TYPES = frozenset({"arkivmelding"})


class RowBusy(JournalUnavailable):
    """Another node is changing the message now (its step holds the row): this step gives way, and is made again at
    its next turn (a transfer not confirmed is offered again; a status is asked again next round)."""

    out_of_reach = False
    sqlstate = "55P03"


def _hold_row(journal: Journal, row: int) -> None:
    """Where nodes share the journal: lock the message's row first, or give way (RowBusy) when another node's step
    holds it. Waiting for it while this transaction holds other rows would close a circle of waits with that node's
    (two nodes each applying a status of two messages, in the opposite order: a deadlock)."""
    if not journal.engine.locks_rows:
        return
    if not journal.query("SELECT id FROM messages WHERE id = ? FOR UPDATE SKIP LOCKED", (row,)):
        raise RowBusy(f"message row {row} is being changed by another node's step")


def expects_receipt(detail: dict, message_type: str | None) -> bool:
    if "expects_receipt" in detail:
        return bool(detail["expects_receipt"])
    return message_type in _DEFAULT_RECEIPT_TYPES


def settle(journal: Journal, row: int) -> None:
    """Inside a transaction: move a sent message to the phase its statuses call for."""
    record = journal.get(row)
    if record.phase not in SETTLEABLE:
        return
    statuses = {event.status for event in journal.events(row)}
    if Status.FEIL in statuses:
        journal.move(row, Phase.FAILED)  # as the status file's current status says
    elif record.phase == Phase.DONE:
        return
    elif Status.LEST in statuses:
        journal.move(row, Phase.DONE)
    elif Status.LEVERT in statuses and record.phase != Phase.DELIVERED:
        waiting = expects_receipt(record.detail, record.message_type)
        journal.move(row, Phase.DELIVERED if waiting else Phase.DONE)


def record_status(
    journal: Journal, row: int, status: Status, stamped_at: datetime | None, description: str,
    errors: list[str] | None = None,
) -> bool:
    """Add a status to a sent message and settle it, in one step; False when it was there already.

    Nothing happens to a message before we sent it: a stamp earlier than our SENDT is the other
    side's clock running behind, and the status counts from our SENDT.
    """
    with journal.transaction():
        _hold_row(journal, row)
        if stamped_at is not None:
            sent_at = next((e.at for e in journal.events(row) if e.status == Status.SENDT), None)
            if sent_at is not None and stamped_at < sent_at:
                stamped_at = sent_at
        added = journal.add_event(row, status, at=stamped_at, description=description)
        if added and errors:
            journal.update(row, errors=[*journal.get(row).errors, *errors])
        settle(journal, row)
    return added
