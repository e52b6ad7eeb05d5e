"""The sandbox's built-in organisations and the service registry catalogue made of them.

Every organisation here is fictional (valid check digits, no real party behind it). A gateway runs an
integration point of its own; a peer is answered inside the sandbox; a DPV-only organisation has an
Altinn mailbox only; a municipality is reached through KS SvarUt/SvarInn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.devcerts import DevPki
from gateway.errors import ConfigError
from gateway.identifiers import orgnr_problem
from gateway.sandbox.catalogue import (
    ARKIVMELDING_PROCESSES,
    AVTALT_PROCESS,
    DIGITALPOST_PROCESSES,
    RESPONSE_PROCESS,
    SandboxCatalogue,
    SandboxOrganisation,
)
from gateway.sandbox.persons import DpiDirectory
from gateway.trust.policy import SANDBOX_SVARUT_ORGNR

GATEWAY = "gateway"  # runs an integration point (an efm-gateway) of its own
PEER = "peer"  # answered by an AutomaticPeer inside the sandbox
DPV_ONLY = "dpv"  # no integration point: reached in its Altinn mailbox only
MUNICIPALITY = "dpf"  # a municipality on KS SvarUt/SvarInn, answered by a MunicipalityPeer
KS_SVARUT = (SANDBOX_SVARUT_ORGNR, "KS SvarUt (sandkasse)")  # whose certificate DPF documents are encrypted to


@dataclass(frozen=True)
class BuiltinOrganisation:
    orgnr: str
    name: str
    role: str  # GATEWAY, PEER or DPV_ONLY


BUILTIN_ORGANISATIONS: dict[str, BuiltinOrganisation] = {
    org.orgnr: org
    for org in (
        BuiltinOrganisation("991825827", "Sandkasse kommune", GATEWAY),
        BuiltinOrganisation("910077473", "Testorganisasjon B", GATEWAY),
        BuiltinOrganisation("910075918", "Automatisk mottaker (sandkasse)", PEER),
        BuiltinOrganisation("974760673", "Postkasse AS (kun Altinn)", DPV_ONLY),
        BuiltinOrganisation("921000014", "Stengt postkasse AS (kun Altinn, feiler)", DPV_ONLY),
        BuiltinOrganisation("944444408", "Fiktiv kommune (SvarInn)", MUNICIPALITY),
        BuiltinOrganisation("944444424", "Nivå 3 kommune (SvarInn, kun nivå 3)", MUNICIPALITY),
    )
}
# The highest security level each municipality's SvarInn takes (default 4).
MUNICIPALITY_LEVELS: dict[str, int] = {"944444424": 3}
MUNICIPALITIES: tuple[str, ...] = tuple(o.orgnr for o in BUILTIN_ORGANISATIONS.values() if o.role == MUNICIPALITY)
# Correspondences to these DPV-only organisations fail (status Failed) instead of being published:
# a way to see FEIL on DPV end to end.
FAILING_DPV_RECIPIENTS: dict[str, str] = {
    "921000014": "the recipient's Altinn mailbox cannot take correspondences (sandbox: this organisation "
                 "always fails)",
}
DPV_PROCESSES: frozenset[str] = frozenset({*ARKIVMELDING_PROCESSES, *DIGITALPOST_PROCESSES})
DEFAULT_GATEWAYS: dict[str, str] = {o.orgnr: o.name for o in BUILTIN_ORGANISATIONS.values() if o.role == GATEWAY}
DEFAULT_PEERS: tuple[str, ...] = tuple(o.orgnr for o in BUILTIN_ORGANISATIONS.values() if o.role == PEER)
DPO_PROCESSES: frozenset[str] = frozenset({*ARKIVMELDING_PROCESSES, RESPONSE_PROCESS, AVTALT_PROCESS})
NETWORK_FILE = "network.yaml"


def name_of(orgnr: str) -> str:
    builtin = BUILTIN_ORGANISATIONS.get(orgnr)
    return builtin.name if builtin else f"Automatisk mottaker {orgnr}"


def check_orgnr(orgnr: str, where: str) -> None:
    problem = orgnr_problem(orgnr)
    if problem:
        raise ConfigError(f"sandbox network, {where}: {problem}")


def registered_jwk(pki: DevPki, orgnr: str) -> tuple[str, Path]:
    """The key registered on `orgnr`'s sandbox Maskinporten client (its kid, and its PEM file), made once."""
    path = pki.folder / f"{orgnr}-maskinporten-jwk.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
    return f"sandbox-jwk-{orgnr}", path



def build_catalogue(
    pki: DevPki, gateways: Mapping[str, str], peers: Sequence[str],
    extra_organisations: Sequence[SandboxOrganisation] = (),
    dpi: DpiDirectory | None = None,
) -> tuple[SandboxCatalogue, dict[str, str]]:
    """The catalogue: gateways and peers on DPO (every arkivmelding process, response, avtalt), the
    DPV-only organisations on DPV. Returns it with orgnr -> name of everyone on it."""
    organisations: list[SandboxOrganisation] = []
    names: dict[str, str] = {}
    for orgnr, name in [*gateways.items(), *((p, name_of(p)) for p in peers)]:
        certificate = (pki.folder / f"{orgnr}-cert.pem").read_text(encoding="ascii")
        organisations.append(SandboxOrganisation(orgnr, name, certificate, {"DPO": set(DPO_PROCESSES)}))
        names[orgnr] = name
    ks_file = pki.folder / f"{KS_SVARUT[0]}-cert.pem"
    ks_certificate = ks_file.read_text(encoding="ascii") if ks_file.exists() else None
    for builtin in BUILTIN_ORGANISATIONS.values():
        if builtin.role == MUNICIPALITY and builtin.orgnr not in names and ks_certificate:
            certificate = (pki.folder / f"{builtin.orgnr}-cert.pem").read_text(encoding="ascii")
            organisations.append(SandboxOrganisation(
                builtin.orgnr, builtin.name, certificate, {"DPF": set(ARKIVMELDING_PROCESSES)},
                dpf_certificate_pem=ks_certificate, dpf_security_level=MUNICIPALITY_LEVELS.get(builtin.orgnr, 4),
            ))
            names[builtin.orgnr] = builtin.name
        if builtin.role == DPV_ONLY and builtin.orgnr not in names:
            organisations.append(
                SandboxOrganisation(builtin.orgnr, builtin.name, None, {"DPV": set(DPV_PROCESSES)})
            )
            names[builtin.orgnr] = builtin.name
    for extra in extra_organisations:
        organisations.append(extra)
        names[extra.orgnr] = extra.name
    # Root and intermediate: grants carry only the leaf in x5c, as Maskinporten's clients send them.
    trusted = [pki.trust_bundle.read_text(encoding="ascii")]
    return SandboxCatalogue(organisations=organisations, trusted_ca_pems=trusted, dpi=dpi), names
