"""Who lives on the sandbox network: fictional organisations, their channels and certificates.

A catalogue can be built in code or read from the small mapping form that config.yaml uses:

    trusted_ca_pem_files: [var/sandbox/ca.pem]     # or trusted_ca_pems: ["-----BEGIN ..."]
    organisations:
      - orgnr: "910075918"
        name: "Sandbox kommune"
        certificate_pem_file: var/sandbox/910075918.pem   # or certificate_pem; absent for DPV-only
        channels:
          DPO: [arkivmelding, response]                   # groups or full process URNs
      - orgnr: "910077473"
        name: "Sandbox etat uten integrasjonspunkt"
        channels: {DPV: [arkivmelding]}

Process groups: `arkivmelding` (every arkivmelding process), `response`, `avtalt`, `digitalpost`
(info and vedtak); anything starting with `urn:` is taken as one process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.formats.sbd import ARKIVMELDING_AREAS, RESPONSE_PROCESS
from gateway.identifiers import is_valid_fnr, orgnr_problem
from gateway.sandbox.persons import DpiDirectory

CHANNELS = ("DPO", "DPF", "DPV", "DPI")

ARKIVMELDING_PROCESSES = tuple(
    f"urn:no:difi:profile:arkivmelding:{area}:ver1.0" for area in ARKIVMELDING_AREAS
)
AVTALT_PROCESS = "urn:no:difi:profile:avtalt:avtalt:ver1.0"
DIGITALPOST_PROCESSES = (
    "urn:no:difi:profile:digitalpost:info:ver1.0",
    "urn:no:difi:profile:digitalpost:vedtak:ver1.0",
)

PROCESS_GROUPS: dict[str, tuple[str, ...]] = {
    "arkivmelding": ARKIVMELDING_PROCESSES,
    "response": (RESPONSE_PROCESS,),
    "avtalt": (AVTALT_PROCESS,),
    "digitalpost": DIGITALPOST_PROCESSES,
}

ARKIVMELDING_DOCUMENT = "urn:no:difi:arkivmelding:xsd::arkivmelding"
RESPONSE_DOCUMENTS = (
    "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering",
    "urn:no:difi:eformidling:xsd::status",
)
AVTALT_DOCUMENT = "urn:no:difi:avtalt:xsd::avtalt"
DIGITAL_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital"
DIGITAL_DPV_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital_dpv"
PRINT_DOCUMENT = "urn:no:difi:digitalpost:xsd:fysisk::print"


def dpv_resource_for(process: str) -> str:
    """The Altinn resource a DPV correspondence for `process` is sent on: one per arkivmelding area
    (`eformidling-dpv-administrasjon`, `eformidling-dpv-taushetsbelagt`, ...), lower case as Altinn
    resource ids are; digital post to an organisation goes as administrasjon."""
    for area in ARKIVMELDING_AREAS:
        if process == f"urn:no:difi:profile:arkivmelding:{area}:ver1.0":
            return f"eformidling-dpv-{area.lower()}"
    return "eformidling-dpv-administrasjon"


DPV_RESOURCES = frozenset(dpv_resource_for(process) for process in ARKIVMELDING_PROCESSES)


def document_types_for(process: str, channel: str) -> list[str]:
    """The document types a receiver accepts for `process` on `channel`, as the SR lists them."""
    if process in ARKIVMELDING_PROCESSES:
        return [ARKIVMELDING_DOCUMENT]
    if process == RESPONSE_PROCESS:
        return list(RESPONSE_DOCUMENTS)
    if process == AVTALT_PROCESS:
        return [AVTALT_DOCUMENT]
    if process in DIGITALPOST_PROCESSES:
        if channel == "DPV":
            return [DIGITAL_DPV_DOCUMENT]
        return [DIGITAL_DOCUMENT, PRINT_DOCUMENT]
    return []


@dataclass(frozen=True)
class SandboxOrganisation:
    """One fictional party: an organisation (9 digits) or, for DPI, a person (11 digits)."""

    orgnr: str
    name: str
    certificate_pem: str | None
    channels: dict[str, set[str]] = field(default_factory=dict)
    # DPF records carry KS SvarUt's certificate (documents are encrypted to KS, not to the receiver)
    # and the highest security level the receiver's SvarInn takes.
    dpf_certificate_pem: str | None = None
    dpf_security_level: int = 4

    def __post_init__(self) -> None:
        if not is_valid_fnr(self.orgnr):
            problem = orgnr_problem(self.orgnr)
            if problem:
                raise ConfigError(f"sandbox organisation {self.name!r}: {problem}")
        for channel in self.channels:
            if channel not in CHANNELS:
                raise ConfigError(
                    f"sandbox organisation {self.orgnr}: unknown channel {channel!r}; "
                    f"use one of {', '.join(CHANNELS)}"
                )
        needs_certificate = {"DPO", "DPF", "DPI"} & set(self.channels)
        if needs_certificate and not self.certificate_pem:
            raise ConfigError(
                f"sandbox organisation {self.orgnr}: channel(s) {', '.join(sorted(needs_certificate))} "
                "need a certificate (certificate_pem or certificate_pem_file)"
            )

    def channels_for(self, process: str) -> list[str]:
        """Channels on which this party receives `process`, in the order of CHANNELS."""
        return [channel for channel in CHANNELS if process in self.channels.get(channel, set())]


@dataclass(frozen=True)
class SandboxCatalogue:
    organisations: list[SandboxOrganisation]
    trusted_ca_pems: list[str]
    # The citizens DPI reaches and their mailbox and print providers (persons.py); None: no persons in KRR.
    dpi: DpiDirectory | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for organisation in self.organisations:
            if organisation.orgnr in seen:
                raise ConfigError(f"sandbox organisation {organisation.orgnr} is declared twice")
            seen.add(organisation.orgnr)

    def find(self, identifier: str) -> SandboxOrganisation | None:
        bare = identifier.removeprefix("0192:")
        for organisation in self.organisations:
            if organisation.orgnr == bare:
                return organisation
        return None

    def knows(self, identifier: str) -> bool:
        """Whether `identifier` is on the network: an organisation, or a citizen in the DPI directory (who can
        be sent to in Altinn too, DPV being the registry's answer for a person without a mailbox)."""
        bare = identifier.removeprefix("0192:")
        return self.find(bare) is not None or (self.dpi is not None and self.dpi.find(bare) is not None)


def expand_processes(names: str | Iterable[str], where: str) -> set[str]:
    """Group names and URNs to a set of process URNs; `where` names the config spot in errors."""
    if isinstance(names, str):
        names = [names]
    processes: set[str] = set()
    for name in names:
        if name in PROCESS_GROUPS:
            processes.update(PROCESS_GROUPS[name])
        elif isinstance(name, str) and name.startswith("urn:"):
            processes.add(name)
        else:
            raise ConfigError(
                f"{where}: {name!r} is neither a process URN nor one of the groups "
                f"{', '.join(sorted(PROCESS_GROUPS))}"
            )
    return processes


def _read_pem(entry: Mapping[str, Any], key: str, base_dir: Path, where: str) -> str | None:
    if entry.get(key):
        return str(entry[key])
    file_key = f"{key}_file"
    if entry.get(file_key):
        path = Path(entry[file_key])
        if not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text(encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"{where}.{file_key}: cannot read {path}: {exc.strerror}") from exc
    return None


def catalogue_from_dict(data: Mapping[str, Any], base_dir: Path | None = None) -> SandboxCatalogue:
    """Build a catalogue from the config.yaml form (see the module docstring)."""
    base_dir = base_dir or Path.cwd()
    organisations = []
    for index, entry in enumerate(data.get("organisations") or []):
        where = f"sandbox.organisations[{index}]"
        if "orgnr" not in entry or "name" not in entry:
            raise ConfigError(f"{where}: each organisation needs orgnr and name")
        channels = {
            str(channel): expand_processes(processes, f"{where}.channels.{channel}")
            for channel, processes in (entry.get("channels") or {}).items()
        }
        organisations.append(
            SandboxOrganisation(
                orgnr=str(entry["orgnr"]),
                name=str(entry["name"]),
                certificate_pem=_read_pem(entry, "certificate_pem", base_dir, where),
                channels=channels,
            )
        )
    trusted = [str(pem) for pem in data.get("trusted_ca_pems") or []]
    for index, file_name in enumerate(data.get("trusted_ca_pem_files") or []):
        trusted_entry = {"trusted_ca_pem_file": file_name}
        pem = _read_pem(trusted_entry, "trusted_ca_pem", base_dir, f"sandbox.trusted_ca_pem_files[{index}]")
        if pem:
            trusted.append(pem)
    if not trusted:
        raise ConfigError(
            "sandbox: no trusted CA for the token endpoint; set trusted_ca_pems or trusted_ca_pem_files"
        )
    return SandboxCatalogue(organisations=organisations, trusted_ca_pems=trusted)
