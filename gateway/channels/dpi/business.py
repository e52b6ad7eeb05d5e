"""DPI business messages (Corner 2's `digital` and `utskrift`) as dataclasses, to and from their JSON.

Field names follow Digdir's JSON schemas (innbyggerpost_dpi_*_1_0); the JSON each writes has the keys in the
order of Digdir's published examples, so a message we write reads like theirs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from gateway.errors import MessageFormatError

AUTHORITY = "iso6523-actorid-upis"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
PRINT_TYPES = ("FARGE", "SORT_HVIT")
POST_TYPES = ("A", "B")
_NORWAY = {"", "norge", "noreg", "norway", "no", "nor"}
RETURN_HANDLING = ("DIREKTE_RETUR", "MAKULERING_MED_MELDING")


class DpiFormatError(MessageFormatError):
    """A DPI message, package or receipt breaks a rule; the words say which and, where we can, what to do."""


def party_value(orgnr: str) -> str:
    """`0192:<orgnr>` for a bare Norwegian organisation number; an ISO 6523 value is kept as it is."""
    return orgnr if ":" in orgnr else f"0192:{orgnr}"


def bare_orgnr(value: str) -> str:
    return value.split(":", 1)[1] if ":" in value else value


def iso_time(moment: datetime) -> str:
    """A time as the reference's (Java) writer puts it: the offset (`Z` for UTC), and a fraction of a second
    only as long as needed."""
    if moment.tzinfo is None:
        raise DpiFormatError("a DPI time needs a time zone")
    text = moment.isoformat(timespec="microseconds")
    clock, offset = text[:26], text[26:]
    clock = clock.rstrip("0").rstrip(".")
    return clock + ("Z" if offset == "+00:00" else offset)


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DpiFormatError(f"{what} is not a date and time: {value!r}") from None


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DpiFormatError(f"digital.virkningsdato is not a date: {value!r}") from None


def _get(data: dict[str, Any], key: str, what: str) -> Any:
    try:
        return data[key]
    except (KeyError, TypeError):
        raise DpiFormatError(f"{what} lacks {key!r}") from None


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True)
class Fingeravtrykk:
    """`dokumentpakkefingeravtrykk`: SHA-256 of the encrypted package (the CMS bytes, not the zip)."""

    digest_value: str  # base64
    digest_method: str = SHA256_URI

    @classmethod
    def of_digest(cls, sha256: bytes) -> Fingeravtrykk:
        return cls(base64.b64encode(sha256).decode("ascii"))

    def to_json(self) -> dict[str, Any]:
        return {"digestMethod": self.digest_method, "digestValue": self.digest_value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingeravtrykk:
        return cls(_get(data, "digestValue", "dokumentpakkefingeravtrykk"),
                   _get(data, "digestMethod", "dokumentpakkefingeravtrykk"))


@dataclass(frozen=True)
class Avsender:
    orgnr: str  # bare (991825827) or ISO 6523 (0192:991825827)
    avsenderidentifikator: str | None = None
    fakturareferanse: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "virksomhetsidentifikator": {"authority": AUTHORITY, "value": party_value(self.orgnr)},
            "avsenderidentifikator": self.avsenderidentifikator,
            "fakturaReferanse": self.fakturareferanse,
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Avsender:
        identifier = _get(data, "virksomhetsidentifikator", "avsender")
        return cls(bare_orgnr(_get(identifier, "value", "virksomhetsidentifikator")),
                   data.get("avsenderidentifikator"), data.get("fakturaReferanse"))


@dataclass(frozen=True)
class EpostVarsel:
    epostadresse: str
    varslingstekst: str
    repetisjoner: tuple[int, ...] = (1, 7)

    def to_json(self) -> dict[str, Any]:
        return {"epostadresse": self.epostadresse, "varslingstekst": self.varslingstekst,
                "repetisjoner": list(self.repetisjoner)}


@dataclass(frozen=True)
class SmsVarsel:
    mobiltelefonnummer: str
    varslingstekst: str
    repetisjoner: tuple[int, ...] = (1, 7)

    def to_json(self) -> dict[str, Any]:
        return {"mobiltelefonnummer": self.mobiltelefonnummer, "varslingstekst": self.varslingstekst,
                "repetisjoner": list(self.repetisjoner)}


@dataclass(frozen=True)
class Varsler:
    epost: EpostVarsel | None = None
    sms: SmsVarsel | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"epostvarsel": self.epost.to_json() if self.epost else None,
                           "smsvarsel": self.sms.to_json() if self.sms else None})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Varsler:
        epost, sms = data.get("epostvarsel"), data.get("smsvarsel")
        return cls(
            EpostVarsel(_get(epost, "epostadresse", "epostvarsel"), _get(epost, "varslingstekst", "epostvarsel"),
                        tuple(epost.get("repetisjoner", ()))) if epost else None,
            SmsVarsel(_get(sms, "mobiltelefonnummer", "smsvarsel"), _get(sms, "varslingstekst", "smsvarsel"),
                      tuple(sms.get("repetisjoner", ()))) if sms else None,
        )


@dataclass(frozen=True)
class Digital:
    """A letter to a citizen's digital mailbox (`digital`)."""

    avsender: Avsender
    postkasseadresse: str
    ikkesensitivtittel: str
    spraak: str = "NO"
    sikkerhetsnivaa: int = 3
    virkningstidspunkt: datetime | None = None
    virkningsdato: date | None = None  # the older, day-only form; Digdir's examples use virkningstidspunkt
    aapningskvittering: bool = False
    varsler: Varsler = field(default_factory=Varsler)
    fingerprint: Fingeravtrykk | None = None
    maskinportentoken: str | None = None

    name = "digital"

    def __post_init__(self) -> None:
        if self.sikkerhetsnivaa not in (3, 4):
            raise DpiFormatError(f"sikkerhetsnivaa must be 3 or 4, not {self.sikkerhetsnivaa}")
        if not 1 <= len(self.ikkesensitivtittel) <= 255:
            raise DpiFormatError("the non-sensitive title (ikkesensitivtittel) must be 1 to 255 characters")

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "avsender": self.avsender.to_json(),
            "mottaker": {"postkasseadresse": self.postkasseadresse},
            "dokumentpakkefingeravtrykk": self.fingerprint.to_json() if self.fingerprint else None,
            "maskinportentoken": self.maskinportentoken,
            "sikkerhetsnivaa": self.sikkerhetsnivaa,
            "virkningsdato": self.virkningsdato.isoformat() if self.virkningsdato else None,
            "virkningstidspunkt": iso_time(self.virkningstidspunkt) if self.virkningstidspunkt else None,
            "aapningskvittering": self.aapningskvittering,
            "ikkesensitivtittel": self.ikkesensitivtittel,
            "spraak": self.spraak,
            "varsler": self.varsler.to_json(),
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Digital:
        fingerprint = data.get("dokumentpakkefingeravtrykk")
        return cls(
            avsender=Avsender.from_json(_get(data, "avsender", "digital")),
            postkasseadresse=_get(_get(data, "mottaker", "digital"), "postkasseadresse", "digital.mottaker"),
            ikkesensitivtittel=_get(data, "ikkesensitivtittel", "digital"),
            spraak=data.get("spraak", "NO"),
            sikkerhetsnivaa=data.get("sikkerhetsnivaa", 3),
            virkningstidspunkt=_time(data.get("virkningstidspunkt"), "digital.virkningstidspunkt"),
            virkningsdato=_date(data.get("virkningsdato")),
            aapningskvittering=bool(data.get("aapningskvittering", False)),
            varsler=Varsler.from_json(data.get("varsler") or {}),
            fingerprint=Fingeravtrykk.from_json(fingerprint) if fingerprint else None,
            maskinportentoken=data.get("maskinportentoken"),
        )


@dataclass(frozen=True)
class PostAdresse:
    navn: str
    adresselinje1: str | None = None
    adresselinje2: str | None = None
    adresselinje3: str | None = None
    adresselinje4: str | None = None
    postnummer: str | None = None
    poststed: str | None = None
    land: str | None = None  # set for an address abroad, which has no postnummer/poststed

    def __post_init__(self) -> None:
        """A Norwegian address (no land, or Norway) needs a four-digit postnummer and a poststed; one abroad its
        first address line and the land (SDP's NorskPostadresse and UtenlandskPostadresse)."""
        if not (self.navn or "").strip():
            raise DpiFormatError("a postal address needs a name (navn)")
        if self.is_norwegian():
            if not (self.postnummer or "").isdigit() or len(self.postnummer or "") != 4 or not self.poststed:
                raise DpiFormatError(
                    f"the postal address of {self.navn!r} needs a four-digit postnummer and a poststed "
                    f"(given: postnummer {self.postnummer!r}, poststed {self.poststed!r})")
        elif not (self.adresselinje1 or "").strip():
            raise DpiFormatError(f"the address abroad of {self.navn!r} ({self.land}) needs adresselinje1")

    def is_norwegian(self) -> bool:
        return self.land is None or self.land.strip().casefold() in _NORWAY

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "navn": self.navn, "adresselinje1": self.adresselinje1, "adresselinje2": self.adresselinje2,
            "adresselinje3": self.adresselinje3, "adresselinje4": self.adresselinje4,
            "postnummer": self.postnummer, "poststed": self.poststed,
            "land": None if self.is_norwegian() else self.land,  # the reference leaves out "Norway"
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PostAdresse:
        keys = ("navn", "adresselinje1", "adresselinje2", "adresselinje3", "adresselinje4", "postnummer",
                "poststed", "land")
        return cls(**{key: data.get(key) for key in keys})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Retur:
    mottaker: PostAdresse
    returposthaandtering: str = "DIREKTE_RETUR"

    def __post_init__(self) -> None:
        if self.returposthaandtering not in RETURN_HANDLING:
            raise DpiFormatError(f"returposthaandtering must be one of {', '.join(RETURN_HANDLING)}")

    def to_json(self) -> dict[str, Any]:
        return {"mottaker": self.mottaker.to_json(), "returposthaandtering": self.returposthaandtering}


@dataclass(frozen=True)
class Utskrift:
    """A letter printed and posted by the print service (`utskrift`)."""

    avsender: Avsender
    mottaker: PostAdresse
    retur: Retur
    utskriftstype: str = "SORT_HVIT"
    posttype: str = "B"
    fingerprint: Fingeravtrykk | None = None
    maskinportentoken: str | None = None

    name = "utskrift"

    def __post_init__(self) -> None:
        if self.utskriftstype not in PRINT_TYPES:
            raise DpiFormatError(f"utskriftstype must be FARGE or SORT_HVIT, not {self.utskriftstype!r}")
        if self.posttype not in POST_TYPES:
            raise DpiFormatError(f"posttype must be A or B, not {self.posttype!r}")

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "avsender": self.avsender.to_json(),
            "mottaker": self.mottaker.to_json(),
            "dokumentpakkefingeravtrykk": self.fingerprint.to_json() if self.fingerprint else None,
            "maskinportentoken": self.maskinportentoken,
            "utskriftstype": self.utskriftstype,
            "retur": self.retur.to_json(),
            "posttype": self.posttype,
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Utskrift:
        fingerprint = data.get("dokumentpakkefingeravtrykk")
        retur = _get(data, "retur", "utskrift")
        return cls(
            avsender=Avsender.from_json(_get(data, "avsender", "utskrift")),
            mottaker=PostAdresse.from_json(_get(data, "mottaker", "utskrift")),
            retur=Retur(PostAdresse.from_json(_get(retur, "mottaker", "utskrift.retur")),
                        _get(retur, "returposthaandtering", "utskrift.retur")),
            utskriftstype=_get(data, "utskriftstype", "utskrift"),
            posttype=_get(data, "posttype", "utskrift"),
            fingerprint=Fingeravtrykk.from_json(fingerprint) if fingerprint else None,
            maskinportentoken=data.get("maskinportentoken"),
        )


BusinessMessage = Digital | Utskrift


def business_from_json(name: str, data: dict[str, Any]) -> BusinessMessage:
    if name == "digital":
        return Digital.from_json(data)
    if name == "utskrift":
        return Utskrift.from_json(data)
    raise DpiFormatError(f"{name!r} is not a DPI letter (digital or utskrift)")
