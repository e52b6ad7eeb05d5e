"""DPI's business types in the NextMove SBD (the reference's `digital` and `print`, and `utskrift` as Corner 2
names print): what a drop to a person becomes before the channel writes its Corner 2 letter (business.py).
Registered with the SBD's formats by the channel registry; NextMove keys modelled, Corner 2 keys (avsender,
mottaker, …) kept in extra."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.formats.business import BusinessType, extra_field, wire


@dataclass(frozen=True)
class Digital:
    sikkerhetsnivaa: int | None = wire("sikkerhetsnivaa", "int")
    hoveddokument: str | None = wire("hoveddokument")
    avsender_id: str | None = wire("avsenderId")
    faktura_referanse: str | None = wire("fakturaReferanse")
    tittel: str | None = wire("tittel")
    spraak: str | None = wire("spraak")
    digital_post_info: Mapping[str, Any] | None = wire("digitalPostInfo", "obj")
    varsler: Mapping[str, Any] | None = wire("varsler", "obj")
    metadata_filer: Mapping[str, Any] | None = wire("metadataFiler", "obj")
    extra: Mapping[str, Any] = extra_field()


@dataclass(frozen=True)
class Print:
    hoveddokument: str | None = wire("hoveddokument")
    avsender_id: str | None = wire("avsenderId")
    faktura_referanse: str | None = wire("fakturaReferanse")
    mottaker: Mapping[str, Any] | None = wire("mottaker", "obj")
    utskriftsfarge: str | None = wire("utskriftsfarge")
    posttype: str | None = wire("posttype")
    retur: Mapping[str, Any] | None = wire("retur", "obj")
    extra: Mapping[str, Any] = extra_field()


def _digital_from_drop(security_level: int | None, main: str | None, title: str) -> Digital:
    return Digital(sikkerhetsnivaa=security_level, hoveddokument=main, tittel=title)


def _print_from_drop(security_level: int | None, main: str | None, title: str) -> Print:
    return Print(hoveddokument=main)


# `print` before `utskrift`: a new SBD of a Print is a `print`.
BUSINESS = (
    BusinessType("digital", Digital, "urn:no:difi:digitalpost:xsd:digital::digital", _digital_from_drop),
    BusinessType("print", Print, "urn:no:difi:digitalpost:xsd:fysisk::print", _print_from_drop),
    BusinessType("utskrift", Print, "urn:fdc:digdir.no:2020:innbyggerpost:xsd::innbyggerpost"
                 "##urn:fdc:digdir.no:2020:innbyggerpost:schema:utskrift::1.0"),
)
