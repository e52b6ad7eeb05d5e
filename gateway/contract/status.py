"""Build the status file (status.xsd) for one message from its journal record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from lxml import etree

from gateway.clock import isoformat
from gateway.contract.statuses import Status, current_status, history_order
from gateway.xmlsafe import load_schema

NAMESPACE = "urn:efm-gateway:status:1"
SCHEMA_PATH = Path(__file__).with_name("status.xsd")


@dataclass(frozen=True)
class StatusEvent:
    status: Status
    at: datetime  # when it happened, as its reporter stamped it
    description: str | None = None
    learned: datetime | None = None  # when we learned it


def in_history_order(events: list[StatusEvent]) -> list[StatusEvent]:
    """`events` (in the order they were recorded) in the order the history reads."""
    return [events[index] for index in history_order((event.at, event.status) for event in events)]


@dataclass(frozen=True)
class StatusReport:
    message_id: str
    direction: str  # "outgoing" | "incoming"
    events: tuple[StatusEvent, ...]
    updated: datetime
    conversation_id: str | None = None
    drop_name: str | None = None
    client_reference: str | None = None
    sender: str | None = None
    receiver: str | None = None
    message_type: str | None = None
    process: str | None = None
    deadline: datetime | None = None
    channel: str | None = None
    route_reason: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def current(self) -> Status | None:
        return current_status([event.status for event in self.events])


@cache
def schema() -> etree.XMLSchema:
    return load_schema(SCHEMA_PATH)


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def render_status(report: StatusReport) -> bytes:
    root = etree.Element(_q("messageStatus"), nsmap={None: NAMESPACE}, version="1", updated=isoformat(report.updated))

    def put(parent: etree._Element, name: str, value: object) -> None:
        if value is not None:
            etree.SubElement(parent, _q(name)).text = str(value)

    put(root, "messageId", report.message_id)
    put(root, "conversationId", report.conversation_id)
    put(root, "direction", report.direction)
    put(root, "dropName", report.drop_name)
    put(root, "clientReference", report.client_reference)
    put(root, "sender", report.sender)
    put(root, "receiver", report.receiver)
    put(root, "messageType", report.message_type)
    put(root, "process", report.process)
    put(root, "deadline", isoformat(report.deadline) if report.deadline else None)
    if report.channel:
        route = etree.SubElement(root, _q("route"))
        put(route, "channel", report.channel)
        put(route, "reason", report.route_reason or "")
    put(root, "current", report.current)
    history = etree.SubElement(root, _q("history"))
    for event in in_history_order(list(report.events)):
        element = etree.SubElement(history, _q("status"))
        put(element, "value", event.status.value)
        put(element, "time", isoformat(event.at))
        if event.learned is not None and event.learned != event.at:
            put(element, "learned", isoformat(event.learned))
        put(element, "description", event.description)
    if report.errors:
        errors = etree.SubElement(root, _q("errors"))
        for line in report.errors:
            put(errors, "error", line)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
