"""DPV's options block in the sidecar (`<dpv>`, options.xsd): the notification texts and the reply deadline,
carried to the channel as arkivmelding's dpv part."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.channels.dpv.business import PART_KEY, DpvSettings
from gateway.channels.kind import SidecarOptions
from gateway.channels.options_xml import child_text, put_child


@dataclass(frozen=True)
class DpvNotification:
    notification_text: str | None = None
    sensitive_notification_text: str | None = None
    days_to_reply: int | None = None


def read(block: etree._Element) -> DpvNotification:
    days = child_text(block, "daysToReply")
    return DpvNotification(
        notification_text=child_text(block, "notificationText"),
        sensitive_notification_text=child_text(block, "sensitiveNotificationText"),
        days_to_reply=int(days) if days is not None else None,
    )


def write(notification: DpvNotification, block: etree._Element) -> None:
    put_child(block, "notificationText", notification.notification_text)
    put_child(block, "sensitiveNotificationText", notification.sensitive_notification_text)
    put_child(block, "daysToReply", notification.days_to_reply)


def business(notification: DpvNotification) -> Mapping[str, Any]:
    return {"parts": {PART_KEY: DpvSettings(
        varsel_tekst=notification.notification_text,
        taushetsbelagt_varsel_tekst=notification.sensitive_notification_text,
        dager_til_svarfrist=notification.days_to_reply,
    )}}


OPTIONS = SidecarOptions(element="dpv", schema=Path(__file__).with_name("options.xsd"), read=read, write=write,
                         business=business)
