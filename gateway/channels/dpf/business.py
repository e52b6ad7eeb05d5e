"""DPF's part of arkivmelding (`dpf`: the forsendelsestype SvarUt files the message under). Registered with the
SBD's formats by the channel registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.formats.business import Arkivmelding, BusinessPart, extra_field, wire


@dataclass(frozen=True)
class DpfSettings:
    forsendelse_type: str | None = wire("forsendelseType")
    extra: Mapping[str, Any] = extra_field()


PART_KEY = "dpf"  # arkivmelding's key for DPF's part


def dpf_settings(business: Any) -> DpfSettings | None:
    """DPF's part of an arkivmelding, None when the message has none (or is no arkivmelding)."""
    return business.parts.get(PART_KEY) if isinstance(business, Arkivmelding) else None


BUSINESS = (BusinessPart(Arkivmelding, PART_KEY, DpfSettings),)
