"""What the journal holds of a message, as the rest of the gateway reads it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.contract.status import StatusEvent, in_history_order
from gateway.contract.statuses import Status
from gateway.journal.phases import Phase


@dataclass(frozen=True)
class MessageRecord:
    row: int
    direction: str
    message_id: str
    status_name: str
    phase: Phase
    conversation_id: str | None = None
    claim_id: str | None = None
    drop_name: str | None = None
    sender: str | None = None
    receiver: str | None = None
    message_type: str | None = None
    process: str | None = None
    client_reference: str | None = None
    channel: str | None = None
    route_reason: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    deadline: datetime | None = None
    errors: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    status_dirty: int = 0  # changes since the status file was last written


COLUMNS = (
    "id, direction, message_id, status_name, phase, conversation_id, claim_id, drop_name, sender, receiver, "
    "message_type, process, client_reference, channel, route_reason, attempts, next_attempt_at, deadline, "
    "errors, detail, created_at, updated_at, finished_at, status_dirty"
)


def record_of(row: tuple) -> MessageRecord:
    deadline = datetime.fromisoformat(row[17]) if row[17] else None
    return MessageRecord(
        row=row[0],
        direction=row[1],
        message_id=row[2],
        status_name=row[3],
        phase=Phase(row[4]),
        conversation_id=row[5],
        claim_id=row[6],
        drop_name=row[7],
        sender=row[8],
        receiver=row[9],
        message_type=row[10],
        process=row[11],
        client_reference=row[12],
        channel=row[13],
        route_reason=row[14],
        attempts=row[15],
        next_attempt_at=row[16],
        deadline=deadline,
        errors=tuple(json.loads(row[18])),
        detail=json.loads(row[19]),
        created_at=row[20],
        updated_at=row[21],
        finished_at=row[22],
        status_dirty=row[23],
    )


def history_of(rows: list[tuple[str, str, str | None, str | None]]) -> list[StatusEvent]:
    """A message's events from its (status, at, description, learned_at) rows in recorded order,
    in the order the history reads."""
    return in_history_order([
        StatusEvent(
            Status(status), datetime.fromisoformat(at), description,
            datetime.fromisoformat(learned) if learned else None,
        )
        for status, at, description, learned in rows
    ])


def encode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(fields)
    if "errors" in encoded:
        encoded["errors"] = json.dumps(list(encoded["errors"]), ensure_ascii=False)
    if "detail" in encoded:
        encoded["detail"] = json.dumps(encoded["detail"], ensure_ascii=False)
    return encoded


def retire_failure_event(db: sqlite3.Connection, row: int, note: str) -> None:
    """The message's FEIL becomes history: an ANNET event with FEIL's time and words, and `note`. A message has
    one event per status, so a second retirement adds its words to the ANNET already there."""
    feil = db.execute("SELECT id, description FROM events WHERE message = ? AND status = 'FEIL'", (row,)).fetchone()
    if feil is None:
        return
    words = f"FEIL: {feil[1] or '(no description)'}; {note}"
    annet = db.execute("SELECT id, description FROM events WHERE message = ? AND status = 'ANNET'", (row,)).fetchone()
    if annet is None:
        db.execute("UPDATE events SET status = 'ANNET', description = ? WHERE id = ?", (words, feil[0]))
    else:
        db.execute("UPDATE events SET description = ? WHERE id = ?", (f"{annet[1] or ''} | {words}", annet[0]))
        db.execute("DELETE FROM events WHERE id = ?", (feil[0],))
