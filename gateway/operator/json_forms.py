"""The `--json` documents of `efm-gateway status` and `validate`: what their text shows, for scripts.

Keys are stable (the README lists them); a value that is unknown is null, never a missing key. Times are
ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.contract.statuses import current_status
from gateway.fsio import text_name
from gateway.intake.validate import Verdict
from gateway.journal.overview import JournalView, MessageLine
from gateway.journal.records import MessageRecord
from gateway.operator.listing import phase_shown
from gateway.operator.route_check import RouteAnswer


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else _utc(datetime.fromtimestamp(epoch, UTC))


def message(record: MessageRecord, current: str | None, now: datetime) -> dict[str, Any]:
    """One message as a listing row shows it, and the fields of its story that are not its history."""
    in_backoff = phase_shown(record, now.timestamp()) == "backoff"
    return {
        "message_id": record.message_id,
        "direction": record.direction,
        "status": current,
        "phase": str(record.phase),
        "in_backoff": in_backoff,
        "channel": record.channel,
        "route_reason": record.route_reason,
        "sender": record.sender,
        "receiver": record.receiver,
        "drop": record.drop_name,
        "message_type": record.message_type,
        "process": record.process,
        "conversation_id": record.conversation_id,
        "client_reference": record.client_reference,
        "deadline": _utc(record.deadline),
        "created": _time(record.created_at),
        "updated": _time(record.updated_at),
        "finished": _time(record.finished_at),
        "attempts": record.attempts,
        "next_attempt": _time(record.next_attempt_at) if in_backoff else None,
        "last_error": record.detail.get("last_error") if in_backoff else None,
        "errors": list(record.errors),
    }


def listing(lines: list[MessageLine], counts: dict[str, int], now: datetime) -> dict[str, Any]:
    """`status --json` without a message: the newest messages that match, and the totals per phase."""
    return {
        "messages": [message(line.record, line.current, now) for line in lines],
        "totals": dict(sorted(counts.items())),
    }


def stories(view: JournalView, records: list[MessageRecord], now: datetime) -> dict[str, Any]:
    """`status MESSAGEID --json`: each message the key names, with its whole history and operator actions."""
    found = []
    for record in records:
        events = view.events(record.row)
        item = message(record, current_status([event.status for event in events]), now)
        item["history"] = [
            {
                "status": str(event.status),
                "time": _utc(event.at),
                "description": event.description,
                "learned": _utc(event.learned),
            }
            for event in events
        ]
        item["earlier_errors"] = list(record.detail.get("previous_errors", []))
        item["operator_actions"] = [
            {"time": action.get("at"), "action": action.get("action"), "what": action.get("what")}
            for action in record.detail.get("operator", [])
        ]
        found.append(item)
    return {"messages": found}


def validation(drop: Path, verdict: Verdict, route: RouteAnswer | None) -> dict[str, Any]:
    """`validate --json`: the verdict on the drop and, for an accepted one, the route."""
    accepted = verdict.accepted
    document: dict[str, Any] = {
        "drop": text_name(drop.name),
        "path": str(drop),
        "accepted": accepted is not None,
        "problems": list(verdict.problems),
        "warnings": list(verdict.warnings),
        "message": None,
        "route": None,
    }
    if accepted is None:
        return document
    sidecar = accepted.sidecar
    document["message"] = {
        "message_id": accepted.message_id,
        "conversation_id": accepted.conversation_id,
        "status": "OPPRETTET",
        "message_type": sidecar.message_type,
        "process": accepted.process,
        "sender": accepted.sender,
        "receiver": sidecar.receiver,
        "deadline": _utc(accepted.deadline),
        "documents": sidecar.file_names,
        "arkivmelding": accepted.arkivmelding_file,
    }
    if route is not None:
        document["route"] = {
            "outcome": route.outcome,
            "channel": route.channel,
            "reason": route.reason,
            "source": route.source,
            "text": route.lines,
        }
    return document
