"""DPF's options block in the sidecar (`<dpf>`, options.xsd): the forsendelsestype, carried to the channel as
arkivmelding's dpf part."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.channels.dpf.business import PART_KEY, DpfSettings
from gateway.channels.kind import SidecarOptions
from gateway.channels.options_xml import child_text, put_child


@dataclass(frozen=True)
class DpfOptions:
    forsendelse_type: str | None = None


def read(block: etree._Element) -> DpfOptions:
    return DpfOptions(forsendelse_type=child_text(block, "forsendelseType"))


def write(options: DpfOptions, block: etree._Element) -> None:
    put_child(block, "forsendelseType", options.forsendelse_type)


def business(options: DpfOptions) -> Mapping[str, Any]:
    if not options.forsendelse_type:
        return {}
    return {"parts": {PART_KEY: DpfSettings(forsendelse_type=options.forsendelse_type)}}


OPTIONS = SidecarOptions(element="dpf", schema=Path(__file__).with_name("options.xsd"), read=read, write=write,
                         business=business)
