"""The operator page: a read-only HTML view of the journal that refreshes by itself.

`/` counts messages by phase and channel and lists the newest ones, filtered by state, channel,
receiver, drop name and age; `/messages/{message_id}` shows one message's whole history with its
route and the reason for it, and why it failed or was rejected. Only GET routes: nothing here
changes anything (the operator's commands do, `efm-gateway retry` and the rest). Every value is
escaped, and national identity numbers are shown as their first six digits (the birth date) and
*****; no document content is shown (the journal holds none).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from gateway.contract.statuses import current_status
from gateway.journal.overview import STATES, JournalView, MessageFilter, MessageLine
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.operator.listing import parse_since, phase_shown
from gateway.operator.nodes_view import NodeStanding, age_text

REFRESH_SECONDS = 10
# An 11-digit run (a fødselsnummer or D-number, valid or mistyped) that is not part of a longer number;
# message ids (UUIDs) are matched first and kept, their hex groups can hold 11 digits in a row.
_IDENTITY_NUMBER = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?<!\d)(?P<birth>\d{6})\d{5}(?!\d)"
)
LIST_LIMIT = 200
_HEADERS = {
    # Nothing runs, nothing loads from elsewhere, nothing frames it: the page is text and a form.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.n { text-align: right; }
code { font-size: 95%; }
.FEIL, .failed, .rejected, .quarantined { color: #a00; font-weight: 600; }
.backoff { color: #a60; }
form label { margin-right: 0.8em; }
.note { color: #555; }
"""


def mask_identity_numbers(text: str) -> str:
    """Every national identity number in `text` as its first six digits and *****."""
    return _IDENTITY_NUMBER.sub(lambda found: found["uuid"] or found["birth"] + "*****", text)


def shown(value: object) -> str:
    """A value as the page shows it: national identity numbers masked, then HTML-escaped."""
    return escape(mask_identity_numbers(str(value)))


def page_routes(journal_reader: JournalView, refresh_seconds: int = REFRESH_SECONDS,
                nodes: Callable[[], list[NodeStanding]] | None = None) -> list[BaseRoute]:
    """The page's routes, for the daemon's operations server to mount. `journal_reader` is a read-only
    view opened once the daemon's journal is: `JournalView(journal_source(config), live=True)`; `nodes`
    reads the nodes that share the journal (JournalMetrics.nodes), shown above the counts."""

    def overview(request: Request) -> HTMLResponse:
        nodes_part = _nodes_table(nodes()) if nodes is not None else ""
        return _html(_overview(journal_reader, request, refresh_seconds, nodes_part))

    def message(request: Request) -> HTMLResponse:
        message_id = request.path_params["message_id"]
        records = journal_reader.find(message_id)
        if not records:
            body = f"<p>No message <code>{shown(message_id)}</code> in the journal.</p>"
            return _html(_document(f"No message {message_id}", body, refresh_seconds), status_code=404)
        return _html(_message_page(journal_reader, records, refresh_seconds))

    return [
        Route("/", overview, methods=["GET"], name="operator-overview"),
        Route("/messages/{message_id}", message, methods=["GET"], name="operator-message"),
    ]


def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code, headers=_HEADERS)


def _document(title: str, body: str, refresh_seconds: int) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"{int(refresh_seconds)}\">"
        f"<title>{shown(title)} · efm-gateway</title><style>{_STYLE}</style></head>"
        f"<body>{body}<p class=\"note\">Read-only; refreshes every {int(refresh_seconds)} s. "
        f"Shown at {shown(_time(datetime.now(UTC).timestamp()))} UTC.</p></body></html>\n"
    )


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---- the overview -----------------------------------------------------------------------------------
def _overview(view: JournalView, request: Request, refresh_seconds: int, nodes_part: str = "") -> str:
    query = request.query_params
    state = query.get("state") or "open_failed"
    problems = []
    since = None
    if query.get("since"):
        try:
            since = parse_since(query["since"], datetime.now(UTC))
        except ValueError as exc:
            problems.append(str(exc))
    chosen = {key: query.get(key, "").strip() for key in ("phase", "channel", "receiver", "drop", "since")}
    phases = {phase.value for phase in Phase}
    if chosen["phase"] and chosen["phase"] not in phases:
        problems.append(f"phase {chosen['phase']!r}: choose one of {', '.join(sorted(phases))}")
        chosen["phase"] = ""
    filters = dict(
        phase=chosen["phase"] or None, channel=chosen["channel"] or None, receiver=chosen["receiver"] or None,
        drop_name=chosen["drop"] or None, since=since,
    )
    parts = [f"<h1>efm-gateway: {sum(view.counts().values())} messages in the journal</h1>"]
    parts.append(nodes_part)
    parts.append(_counts_table(view))
    parts.append(_filter_form(state, chosen))
    for problem in problems:
        parts.append(f"<p class=\"FEIL\">{shown(problem)}</p>")
    if state == "open_failed":
        sections = [("Open messages", "open"), ("Failed, rejected and quarantined", "failed")]
    elif state in STATES:
        sections = [({"open": "Open", "failed": "Failed, rejected and quarantined", "finished": "Finished"}[state]
                     + " messages", state)]
    else:
        sections = [("All messages", None)]
    for title, section_state in sections:
        lines = view.messages(MessageFilter(state=section_state, **filters), limit=LIST_LIMIT)
        parts.append(f"<h2 id=\"{shown(section_state or 'all')}\">{shown(title)} ({len(lines)}"
                     f"{'+' if len(lines) == LIST_LIMIT else ''})</h2>")
        parts.append(_message_table(lines, section_state or "all"))
    return _document("Operator overview", "".join(parts), refresh_seconds)


def _nodes_table(nodes: list[NodeStanding]) -> str:
    if not nodes:
        return ""
    rows = "".join(
        f"<tr data-node=\"{shown(node.row.name)}\" data-state=\"{node.state}\"><td>{shown(node.row.name)}</td>"
        f"<td>{shown(node.row.host)}</td><td class=\"n\">{node.row.pid}</td><td>{_time(node.row.heartbeat_at)}</td>"
        f"<td class=\"n\">{shown(age_text(node.age_seconds))}</td>"
        f"<td class=\"{'' if node.state != 'lapsed' else 'failed'}\">{node.state}</td></tr>"
        for node in nodes
    )
    live = sum(1 for node in nodes if node.live)
    return (f"<table id=\"nodes\"><caption>Nodes on this journal: {live} of {len(nodes)} live</caption>"
            "<tr><th>node</th><th>host</th><th>pid</th><th>last heartbeat (UTC)</th><th>age</th><th>state</th></tr>"
            f"{rows}</table>")


def _counts_table(view: JournalView) -> str:
    by_channel = view.counts_by_channel()
    channels = sorted(by_channel)
    phases = [phase.value for phase in Phase if any(phase.value in counts for counts in by_channel.values())]
    head = "".join(f"<th>{shown(channel)}</th>" for channel in channels)
    rows = []
    for phase in phases:
        cells = "".join(f"<td class=\"n\">{by_channel[channel].get(phase, 0)}</td>" for channel in channels)
        total = sum(by_channel[channel].get(phase, 0) for channel in channels)
        rows.append(f"<tr data-phase=\"{shown(phase)}\"><th class=\"{shown(phase)}\">{shown(phase)}</th>"
                    f"{cells}<td class=\"n\">{total}</td></tr>")
    if not rows:
        return "<p>No messages yet.</p>"
    return (f"<table id=\"counts\"><caption>Messages by phase and channel (\"-\": not routed)</caption>"
            f"<tr><th>phase</th>{head}<th>all</th></tr>{''.join(rows)}</table>")


def _filter_form(state: str, chosen: dict[str, str]) -> str:
    options = [("open_failed", "open and failed"), ("open", "open"), ("failed", "failed"),
               ("finished", "finished"), ("all", "all")]
    select = "".join(
        f"<option value=\"{value}\"{' selected' if value == state else ''}>{label}</option>" for value, label in options
    )
    phase_options = "".join(
        f"<option value=\"{phase.value}\"{' selected' if phase.value == chosen['phase'] else ''}>{phase.value}</option>"
        for phase in Phase
    )
    fields = f"<label>phase <select name=\"phase\"><option value=\"\">any</option>{phase_options}</select></label>"
    fields += "".join(
        f"<label>{label} <input name=\"{name}\" value=\"{shown(chosen[name])}\" size=\"{size}\"></label>"
        for name, label, size in (("channel", "channel", 5), ("receiver", "receiver", 11), ("drop", "drop name", 16),
                                  ("since", "since (2h, 1d, 2026-12-01)", 12))
    )
    return (f"<form method=\"get\" action=\"/\"><label>show <select name=\"state\">{select}</select></label>"
            f"{fields}<button type=\"submit\">filter</button></form>")


def _message_table(lines: list[MessageLine], section: str) -> str:
    if not lines:
        return "<p>None.</p>"
    now = datetime.now(UTC).timestamp()
    rows = []
    for line in lines:
        record = line.record
        current = str(line.current or "-")
        phase = phase_shown(record, now)
        note = record.errors[0] if record.errors else record.detail.get("last_error") or ""
        rows.append(
            f"<tr data-message-id=\"{shown(record.message_id)}\" data-status=\"{shown(current)}\">"
            f"<td><a href=\"/messages/{quote(record.message_id)}\"><code>{shown(record.message_id)}</code></a></td>"
            f"<td>{'out' if record.direction == 'out' else 'in'}</td>"
            f"<td class=\"{shown(current)}\">{shown(current)}</td><td class=\"{shown(phase)}\">{shown(phase)}</td>"
            f"<td>{shown(record.channel or '-')}</td><td>{shown(record.sender or '-')}</td>"
            f"<td>{shown(record.receiver or '-')}</td><td>{shown(record.drop_name or '')}</td>"
            f"<td>{_time(record.created_at)}</td><td>{_time(record.updated_at)}</td>"
            f"<td>{shown(_clip(mask_identity_numbers(note), 160))}</td></tr>"
        )
    head = "".join(f"<th>{name}</th>" for name in (
        "messageId", "dir", "status", "phase", "channel", "sender", "receiver", "drop", "created (UTC)",
        "updated (UTC)", "note"))
    return f"<table class=\"messages\" data-section=\"{shown(section)}\"><tr>{head}</tr>{''.join(rows)}</table>"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- one message -------------------------------------------------------------------------------------
def _message_page(view: JournalView, records: list[MessageRecord], refresh_seconds: int) -> str:
    parts = ["<p><a href=\"/\">← overview</a></p>"]
    for record in records:
        events = view.events(record.row)
        current = current_status([event.status for event in events])
        direction = "outgoing" if record.direction == "out" else "incoming"
        parts.append(f"<h1>Message <code>{shown(record.message_id)}</code> ({direction})</h1>")
        facts = [
            ("current status", str(current or "-")),
            ("phase", phase_shown(record, datetime.now(UTC).timestamp())),
            ("drop", record.drop_name or "-"),
            ("conversation", record.conversation_id or "-"),
            ("sender", record.sender or "-"),
            ("receiver", record.receiver or "-"),
            ("type", record.message_type or "-"),
            ("process", record.process or "-"),
            ("client reference", record.client_reference or "-"),
            ("deadline", record.deadline.isoformat(timespec="seconds") if record.deadline else "-"),
            ("channel", record.channel or "-"),
            ("route reason", record.route_reason or "-"),
            ("attempts", str(record.attempts)),
        ]
        if record.attempts and record.next_attempt_at and record.phase in (Phase.ACCEPTED, Phase.SENDING):
            facts.append(("next attempt (UTC)", _time(record.next_attempt_at)))
            facts.append(("last error", str(record.detail.get("last_error", "-"))))
        rows = "".join(
            f"<tr><th>{shown(name)}</th><td id=\"{shown(name.replace(' ', '-'))}\">{shown(value)}</td></tr>"
            for name, value in facts
        )
        parts.append(f"<table class=\"facts\">{rows}</table>")
        history = "".join(
            f"<tr data-status=\"{shown(event.status)}\"><td>{shown(event.at.isoformat(timespec='seconds'))}</td>"
            f"<td class=\"{shown(event.status)}\">{shown(event.status)}</td>"
            f"<td>{shown(event.description or '')}</td>"
            f"<td>{shown(event.learned.isoformat(timespec='seconds')) if event.learned else ''}</td></tr>"
            for event in events
        )
        parts.append("<h2>History</h2><table id=\"history\"><tr><th>time</th><th>status</th><th>description</th>"
                     f"<th>learned</th></tr>{history}</table>")
        if record.errors:
            heading = "Why it was rejected" if record.phase == Phase.REJECTED else "Why it failed"
            items = "".join(f"<li>{shown(error)}</li>" for error in record.errors)
            parts.append(f"<h2>{heading}</h2><ul id=\"errors\">{items}</ul>")
        if record.detail.get("previous_errors"):
            items = "".join(f"<li>{shown(str(error))}</li>" for error in record.detail["previous_errors"])
            parts.append(f"<h2>Earlier errors</h2><ul>{items}</ul>")
        if record.detail.get("operator"):
            items = "".join(
                f"<li>{shown(str(action.get('at', '?')))} {shown(str(action.get('action', '?')))}: "
                f"{shown(str(action.get('what', '')))}</li>" for action in record.detail["operator"]
            )
            parts.append(f"<h2>Operator actions</h2><ul id=\"operator\">{items}</ul>")
        hint = _command_hint(record)
        if hint:
            parts.append(f"<p class=\"note\">{hint}</p>")
    return _document(f"Message {records[0].message_id}", "".join(parts), refresh_seconds)


def _command_hint(record: MessageRecord) -> str:
    command = {
        Phase.FAILED: "retry", Phase.QUARANTINED: "release", Phase.ACCEPTED: "cancel",
    }.get(record.phase)
    if command is None or (command == "retry" and record.direction != "out"):
        return ""
    return f"On the gateway's host: <code>efm-gateway {command} {shown(record.message_id)}</code>"

