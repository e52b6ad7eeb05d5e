"""`efm-gateway status`: a table of messages that fits the terminal, and one message's whole story."""

from __future__ import annotations

import re
import shutil
import sys
from datetime import UTC, datetime, timedelta

from gateway.contract.statuses import current_status
from gateway.journal.overview import JournalView, MessageLine
from gateway.journal.records import MessageRecord

_RELATIVE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ID_SHORT = 8


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: an age (90m, 2h, 1d, 1w) or an ISO 8601 date or time (UTC unless it says otherwise)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative["unit"]]: float(relative["amount"])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give an age such as 30m, 2h or 1d, or a date or time such as 2026-12-01 or "
            "2026-12-01T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def terminal_width() -> int | None:
    """The terminal's width ($COLUMNS, else the terminal's own); None when the output is not a terminal:
    a pipe or a file gets whole lines and whole ids, for scripts."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def phase_shown(record: MessageRecord, now: float) -> str:
    """The phase, or "backoff" for a message waiting out a back-off after failed attempts."""
    if record.phase in ("accepted", "sending") and record.attempts and (record.next_attempt_at or 0) > now:
        return "backoff"
    return str(record.phase)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def message_table(lines: list[MessageLine], width: int | None, now: datetime) -> list[str]:
    """One line per message; with a width, the ids shorten and the drop name is cut to fit."""
    epoch = now.timestamp()
    rows = [
        (
            line.record.message_id,
            line.record.direction,
            str(line.current or "-"),
            phase_shown(line.record, epoch),
            line.record.channel or "-",
            line.record.receiver or "-",
            datetime.fromtimestamp(line.record.updated_at, UTC).strftime("%m-%d %H:%M"),
            line.record.drop_name or "",
        )
        for line in lines
    ]
    header = ("MESSAGE", "DIR", "STATUS", "PHASE", "CHANNEL", "RECEIVER", "UPDATED UTC", "DROP")
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(len(header))]
    if width is not None and sum(widths) + len(widths) - 1 > width:
        widths[0] = ID_SHORT  # the start of an id is enough for every command
    rendered = []
    for row in [header, *rows]:
        cells = [row[0][: widths[0]].ljust(widths[0])] + [row[i].ljust(widths[i]) for i in range(1, len(row))]
        text = " ".join(cells).rstrip()
        rendered.append(_clip(text, width) if width is not None else text)
    return rendered


def totals_line(counts: dict[str, int]) -> str:
    return "totals: " + (", ".join(f"{phase} {count}" for phase, count in sorted(counts.items())) or "none")


def message_story(view: JournalView, record: MessageRecord, now: datetime) -> list[str]:
    """Everything the journal knows of one message: ids, route and why, history, errors, operator actions."""
    events = view.events(record.row)
    current = current_status([event.status for event in events])
    direction = "outgoing" if record.direction == "out" else "incoming"
    lines = [
        f"message {record.message_id} ({direction}, drop {record.drop_name or '-'}, current {current or '-'}, "
        f"phase {record.phase})"
    ]
    parties = f"  from {record.sender or '-'} to {record.receiver or '-'}"
    if record.message_type:
        parties += f", type {record.message_type}"
    if record.deadline:
        parties += f", deadline {record.deadline.isoformat(timespec='seconds')}"
    lines.append(parties)
    if record.conversation_id:
        lines.append(f"  conversation {record.conversation_id}")
    if record.client_reference:
        lines.append(f"  client reference {record.client_reference}")
    if record.channel:
        lines.append(f"  route: {record.channel}: {record.route_reason or '(no reason recorded)'}")
    if phase_shown(record, now.timestamp()) == "backoff":
        due = datetime.fromtimestamp(record.next_attempt_at or 0, UTC).isoformat(timespec="seconds")
        lines.append(
            f"  waiting: attempt {record.attempts} failed ({record.detail.get('last_error', '?')}); next at {due}"
            " (`efm-gateway retry` sends it now)"
        )
    for event in events:
        lines.append(f"  {event.at.isoformat(timespec='seconds')}  {event.status:<20} {event.description or ''}")
    for error in record.errors:
        lines.append(f"  error: {error}")
    for earlier in record.detail.get("previous_errors", []):
        lines.append(f"  earlier error: {earlier}")
    for action in record.detail.get("operator", []):
        lines.append(f"  operator: {action.get('at', '?')} {action.get('action', '?')}: {action.get('what', '')}")
    return lines
