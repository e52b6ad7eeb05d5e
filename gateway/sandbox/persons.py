"""Fictional citizens on the sandbox network, as the contact register (KRR) knows them, and the DPI service
records the service registry makes from them.

The real registry asks KRR about a person (with the caller's own token, so the caller needs the KRR scopes),
then picks the records with DpiMessageRouter (efm-service-registry `record/DpiMessageRouter.java`):

    vedtak (obligated):  reserved -> print; not notifiable -> print; else mailbox and active -> DPI, else DPV
    info:                mailbox and active -> DPI, else DPV
    print and DPV both come with a print record when the caller does not ask `print=false`.

A DPI record (`SikkerDigitalPostServiceRecord`) carries the mailbox provider (`orgnrPostkasse`) and address,
`kanVarsles`, e-mail and mobile, `fysiskPost`, the postal and return addresses and the language; a print record
carries the print provider and its certificate instead of the mailbox's. Every number here is synthetic (the
month plus 80, as Tenor's test persons are): no real person has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError
from gateway.identifiers import is_valid_fnr

INFO_PROCESS = "urn:no:difi:profile:digitalpost:info:ver1.0"
VEDTAK_PROCESS = "urn:no:difi:profile:digitalpost:vedtak:ver1.0"
DIGITAL_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital"
PRINT_DOCUMENT = "urn:no:difi:digitalpost:xsd:fysisk::print"
DIGITAL_DPV_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital_dpv"

# The registry's own scope for person records, and the KRR scopes its lookup needs from the caller's token
# (networks.md §1: the legacy unprefixed names; current Altinn examples prefix them with `krr:`).
DPI_REGISTRY_SCOPES = ("eformidling:dpi", "move/dpi.read")
KRR_SCOPES = ("global/kontaktinformasjon.read", "global/sikkerdigitalpost.read", "global/varslingsstatus.read",
              "global/sertifikat.read", "global/navn.read", "global/postadresse.read")

MAILBOX_PROVIDER = ("944444505", "Digital postkasse AS (sandkasse)")
PRINT_PROVIDER = ("944444513", "Utskrift og forsendelse AS (sandkasse)")


@dataclass(frozen=True)
class PostalAddress:
    name: str
    street: str
    postal_code: str
    postal_area: str
    country: str = "NORGE"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "street": self.street, "postalCode": self.postal_code,
                "postalArea": self.postal_area, "country": self.country}


@dataclass(frozen=True)
class SandboxPerson:
    """One citizen in the sandbox's KRR. `moved`: post sent to the address on record comes back."""

    fnr: str
    name: str
    address: PostalAddress
    reserved: bool = False
    status: str = "AKTIV"  # KRR: AKTIV, SLETTET, IKKE_REGISTRERT
    notifiable: bool = True  # KRR varslingsstatus KAN_VARSLES
    email: str | None = None
    mobile: str | None = None
    mailbox_address: str | None = None  # digital_post.postkasseadresse; None: no digital mailbox
    language: str = "nb"
    moved: bool = False

    def __post_init__(self) -> None:
        if not is_valid_fnr(self.fnr):
            raise ConfigError(f"sandbox person {self.name!r}: {self.fnr} is not a valid national identity number")

    @property
    def has_mailbox(self) -> bool:
        return self.mailbox_address is not None

    @property
    def active(self) -> bool:
        return self.status == "AKTIV"


def _address(name: str, street: str, code: str, area: str) -> PostalAddress:
    return PostalAddress(name, street, code, area)


BUILTIN_PERSONS: tuple[SandboxPerson, ...] = (
    SandboxPerson("12857610030", "Kari Postkasse", _address("Kari Postkasse", "Storgata 1", "0155", "OSLO"),
                  email="kari.postkasse@example.com", mobile="+4799000001", mailbox_address="kari.postkasse#1AB2"),
    SandboxPerson("03818810260", "Rolf Reservert", _address("Rolf Reservert", "Kirkeveien 12", "5003", "BERGEN"),
                  reserved=True, email="rolf.reservert@example.com", mobile="+4799000002"),
    SandboxPerson("24869510005", "Nils Utenpostkasse",
                  _address("Nils Utenpostkasse", "Fjordgata 3", "7010", "TRONDHEIM"),
                  email="nils.utenpostkasse@example.com", mobile="+4799000003"),
    SandboxPerson("07896210003", "Vera Ikkevarslet", _address("Vera Ikkevarslet", "Havnegata 7", "9008", "TROMSØ"),
                  notifiable=False, mailbox_address="vera.ikkevarslet#3CD4"),
    SandboxPerson("19915810058", "Frida Flyttet", _address("Frida Flyttet", "Gamleveien 99", "4006", "STAVANGER"),
                  reserved=True, email="frida.flyttet@example.com", mobile="+4799000005", moved=True),
)
PERSON_WITH_MAILBOX, RESERVED_PERSON, PERSON_WITHOUT_MAILBOX, UNNOTIFIABLE_PERSON, MOVED_PERSON = (
    person.fnr for person in BUILTIN_PERSONS
)


@dataclass(frozen=True)
class DpiDirectory:
    """The persons, and what the registry puts in their records: the mailbox and print providers' certificates,
    Corner 2's and DPV's addresses, and where print comes back to (the sender's address, from BRREG)."""

    persons: Mapping[str, SandboxPerson]
    mailbox_certificate_pem: str
    print_certificate_pem: str
    mailbox_provider: str = MAILBOX_PROVIDER[0]
    print_provider: str = PRINT_PROVIDER[0]

    def find(self, identifier: str) -> SandboxPerson | None:
        return self.persons.get(identifier)

    def by_mailbox_address(self, address: str) -> SandboxPerson | None:
        return next((p for p in self.persons.values() if p.mailbox_address == address), None)

    def by_postal_address(self, name: str, street: str, postal_code: str) -> SandboxPerson | None:
        return next((p for p in self.persons.values()
                     if (p.address.name, p.address.street, p.address.postal_code) == (name, street, postal_code)),
                    None)


def route(person: SandboxPerson, process: str) -> str:
    """DPI, PRINT or DPV for `process`, by the real registry's DpiMessageRouter."""
    if process == VEDTAK_PROCESS and (person.reserved or not person.notifiable):
        return "PRINT"
    return "DPI" if person.has_mailbox and person.active else "DPV"


def _base(person: SandboxPerson, process: str, channel: str, endpoint_url: str | None) -> dict[str, Any]:
    return {
        "organisationNumber": person.fnr,
        "pemCertificate": None,
        "process": process,
        "documentTypes": [],
        "service": {"identifier": channel, "endpointUrl": endpoint_url, "serviceCode": None,
                    "serviceEditionCode": None, "securityLevel": None, "resource": None},
    }


def _dpi_record(person: SandboxPerson, process: str, directory: DpiDirectory, endpoint_url: str | None,
                return_address: PostalAddress | None) -> dict[str, Any]:
    printed = return_address is not None
    record = _base(person, process, "DPI", endpoint_url)
    record.update({
        "pemCertificate": directory.print_certificate_pem if printed else directory.mailbox_certificate_pem,
        "documentTypes": [PRINT_DOCUMENT if printed else DIGITAL_DOCUMENT],
        "orgnrPostkasse": directory.print_provider if printed else directory.mailbox_provider,
        "postkasseAdresse": None if printed else person.mailbox_address,
        "mobilnummer": person.mobile,
        "kanVarsles": person.notifiable,
        "epostAdresse": person.email,
        "fysiskPost": printed,
        "postAddress": person.address.to_json() if printed else None,
        "returnAddress": return_address.to_json() if return_address else None,
        "spraak": person.language,
    })
    return record


def _dpv_record(person: SandboxPerson, process: str, endpoint_url: str | None) -> dict[str, Any]:
    record = _base(person, process, "DPV", endpoint_url)
    record["documentTypes"] = [DIGITAL_DPV_DOCUMENT]
    # As the real registry fills it: the default arkivmelding process's service code and resource.
    record["service"].update({"serviceCode": "4255", "serviceEditionCode": "10",
                              "resource": "eformidling-dpv-administrasjon"})
    return record


def person_records(person: SandboxPerson, processes: list[str], directory: DpiDirectory,
                   endpoint_urls: Mapping[str, str], return_address: PostalAddress, print_wanted: bool = True,
                   ) -> list[dict[str, Any]]:
    """The service records the registry answers for `person` and each of `processes` (info, vedtak)."""
    records: list[dict[str, Any]] = []
    for process in processes:
        target = route(person, process)
        if target == "DPI":
            records.append(_dpi_record(person, process, directory, endpoint_urls.get("DPI"), None))
            continue
        if print_wanted:
            records.append(_dpi_record(person, process, directory, endpoint_urls.get("DPI"), return_address))
        if target == "DPV":
            records.append(_dpv_record(person, process, endpoint_urls.get("DPV")))
    return records


def citizen_info(person: SandboxPerson) -> dict[str, Any]:
    """The registry's infoRecord for a citizen (its CitizenInfo: the number and the entity type only)."""
    return {"entityType": {"name": "citizen"}, "identifier": person.fnr}


__all__ = [
    "BUILTIN_PERSONS",
    "DPI_REGISTRY_SCOPES",
    "INFO_PROCESS",
    "KRR_SCOPES",
    "MAILBOX_PROVIDER",
    "MOVED_PERSON",
    "PERSON_WITHOUT_MAILBOX",
    "PERSON_WITH_MAILBOX",
    "PRINT_PROVIDER",
    "RESERVED_PERSON",
    "UNNOTIFIABLE_PERSON",
    "VEDTAK_PROCESS",
    "DpiDirectory",
    "PostalAddress",
    "SandboxPerson",
    "citizen_info",
    "person_records",
    "route",
]
