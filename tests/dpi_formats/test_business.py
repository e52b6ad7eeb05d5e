"""The business messages: what the reference refuses we refuse, and JSON round trips keep every field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from gateway.channels.dpi import (
    Avsender,
    Digital,
    DpiFormatError,
    EpostVarsel,
    Fingeravtrykk,
    PostAdresse,
    Retur,
    SmsVarsel,
    Utskrift,
    Varsler,
    business_from_json,
)

from .conftest import VECTORS

CUCUMBER = VECTORS / "ip-cucumber"


def _address(data: dict) -> PostAdresse:
    keys = ("navn", "adresselinje1", "adresselinje2", "adresselinje3", "adresselinje4", "postnummer", "poststed",
            "land")
    return PostAdresse(**{key: data.get(key) for key in keys})


def _print(scenario: str) -> dict:
    return json.loads((CUCUMBER / scenario / "input-nextmove-message.json").read_text())["print"]


def test_the_reference_scenarios_addresses_are_taken_or_refused_as_the_reference_does() -> None:
    accepted = _print("utskrift-scenario1")  # 200 OK in the reference
    assert _address(accepted["mottaker"]).is_norwegian()  # land "Norway", postnummer 3400
    _address(accepted["retur"]["mottaker"])
    # scenario 2: the return address has an empty postnummer and poststed -> 400 in the reference
    with pytest.raises(DpiFormatError, match=r"'Dr\. Sprøyte Gal' needs a four-digit postnummer and a poststed"):
        _address(_print("utskrift-scenario2")["retur"]["mottaker"])
    # scenario 3: the receiver's address has only a name (and the land) -> 400 in the reference
    with pytest.raises(DpiFormatError, match="'Ola Nordmann' needs a four-digit postnummer"):
        _address(_print("utskrift-scenario3")["mottaker"])


def test_an_address_abroad_needs_its_first_line() -> None:
    assert not PostAdresse("Kari", "Storgatan 1", land="Sverige").is_norwegian()
    with pytest.raises(DpiFormatError, match=r"abroad of 'Kari' \(Sverige\) needs adresselinje1"):
        PostAdresse("Kari", land="Sverige")


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Digital(Avsender("1"), "p", "t", sikkerhetsnivaa=2), "sikkerhetsnivaa must be 3 or 4"),
        (lambda: Digital(Avsender("1"), "p", ""), "ikkesensitivtittel"),
        (lambda: Digital(Avsender("1"), "p", "x" * 256), "1 to 255 characters"),
        (lambda: Retur(PostAdresse("A", postnummer="1234", poststed="B"), "KASTES"), "returposthaandtering"),
    ],
)
def test_values_dpi_does_not_know_are_refused(build, words: str) -> None:
    with pytest.raises(DpiFormatError, match=words):
        build()


def test_print_options_are_checked() -> None:
    address = PostAdresse("A", postnummer="1234", poststed="B")
    with pytest.raises(DpiFormatError, match="utskriftstype must be FARGE or SORT_HVIT"):
        Utskrift(Avsender("1"), address, Retur(address), utskriftstype="GRAA")
    with pytest.raises(DpiFormatError, match="posttype must be A or B"):
        Utskrift(Avsender("1"), address, Retur(address), posttype="C")


def test_every_field_survives_json_and_back() -> None:
    digital = Digital(
        Avsender("991825827", "avsender-1", "faktura-1"), "ola#1", "Vedtak", spraak="EN", sikkerhetsnivaa=4,
        virkningstidspunkt=datetime(2026, 12, 8, 7, 0, 0, 500000, tzinfo=UTC), virkningsdato=date(2026, 12, 8),
        aapningskvittering=True,
        varsler=Varsler(EpostVarsel("a@b.no", "Du har post", (1, 3)), SmsVarsel("99999999", "Post", (2,))),
        fingerprint=Fingeravtrykk("abc="), maskinportentoken="token",
    )
    utskrift = Utskrift(
        Avsender("991825827"), PostAdresse("Kari", "Storgatan 1", "c/o", land="Sverige"),
        Retur(PostAdresse("Etat", "Gate 1", postnummer="0150", poststed="OSLO"), "MAKULERING_MED_MELDING"),
        utskriftstype="FARGE", posttype="A", fingerprint=Fingeravtrykk("abc="), maskinportentoken="token",
    )
    for letter in (digital, utskrift):
        assert business_from_json(letter.name, json.loads(json.dumps(letter.to_json()))) == letter
    assert digital.to_json()["virkningstidspunkt"] == "2026-12-08T07:00:00.5Z"
    with pytest.raises(DpiFormatError, match="not a DPI letter"):
        business_from_json("feil", {})
