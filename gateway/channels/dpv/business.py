"""DPV's business types: its part of arkivmelding (`dpv`: the notification and the reply deadline Altinn shows) and
`digital_dpv`, digital post to a person through Altinn. Registered with the SBD's formats by the channel registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.formats.business import Arkivmelding, BusinessPart, BusinessType, extra_field, wire


@dataclass(frozen=True)
class DpvSettings:
    varsel_type: str | None = wire("varselType")
    varsel_transport_type: str | None = wire("varselTransportType")
    varsel_tekst: str | None = wire("varselTekst")
    taushetsbelagt_varsel_tekst: str | None = wire("taushetsbelagtVarselTekst")
    dager_til_svarfrist: int | None = wire("dagerTilSvarfrist", "int")
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class DigitalDpv:
    tittel: str | None = wire("tittel")
    sammendrag: str | None = wire("sammendrag")
    innhold: str | None = wire("innhold")
    extra: Mapping[str, Any] = extra_field()


PART_KEY = "dpv"  # arkivmelding's key for DPV's part


def dpv_settings(business: Any) -> DpvSettings | None:
    """DPV's part of an arkivmelding, None when the message has none (or is no arkivmelding)."""
    return business.parts.get(PART_KEY) if isinstance(business, Arkivmelding) else None


BUSINESS = (
    BusinessPart(Arkivmelding, PART_KEY, DpvSettings),
    BusinessType("digital_dpv", DigitalDpv, "urn:no:difi:digitalpost:xsd:digital::digital_dpv"),
)
