"""The whole sandbox network in one call: dev PKI, catalogue, server on loopback, automatic peers.

    network = start_network(Path("var/sandbox"))
    settings = network.gateway_settings("991825827")   # network URLs, keystore, trust for config.yaml
    ...
    network.stop()

`efm-gateway sandbox` runs `serve_network_forever` (sandbox/serve.py), which prints the same settings as YAML for each
gateway organisation and keeps the network up until SIGTERM or SIGINT. Either way the settings are
also written to `<data_dir>/network.yaml`.

Every organisation and citizen here is fictional (valid check digits, no real party behind them; the citizens'
numbers are synthetic, month plus 80). DPI's Corner 2, its mailbox and print service are at `corner2_url` (/dpi).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.types import ASGIApp

from gateway.devcerts import P12_PASSWORD, DevPki, create_dev_pki, dev_identity
from gateway.errors import ConfigError
from gateway.formats.keys import TrustStore
from gateway.maskinporten import default_client_id
from gateway.sandbox.broker_options import BrokerOptions
from gateway.sandbox.catalogue import (
    SandboxOrganisation,
)
from gateway.sandbox.corner2_app import Corner2Service
from gateway.sandbox.corner2_store import Corner2Options
from gateway.sandbox.correspondence_app import CorrespondenceService
from gateway.sandbox.correspondence_records import CorrespondenceOptions
from gateway.sandbox.faults import FaultPlan
from gateway.sandbox.krr_print_app import PRINT_CERTIFICATE_PATH, krr_print_app
from gateway.sandbox.organisations import (
    BUILTIN_ORGANISATIONS,
    DEFAULT_GATEWAYS,
    DEFAULT_PEERS,
    DPO_PROCESSES,
    DPV_PROCESSES,
    FAILING_DPV_RECIPIENTS,
    GATEWAY,
    KS_SVARUT,
    MUNICIPALITIES,
    MUNICIPALITY,
    MUNICIPALITY_LEVELS,
    NETWORK_FILE,
    PEER,
    BuiltinOrganisation,
    build_catalogue,
    check_orgnr,
    name_of,
    registered_jwk,
)
from gateway.sandbox.peer import AutomaticPeer
from gateway.sandbox.persons import BUILTIN_PERSONS, MAILBOX_PROVIDER, PRINT_PROVIDER, DpiDirectory
from gateway.sandbox.revocation_app import revocation_app
from gateway.sandbox.server import SandboxContext, SandboxServer
from gateway.sandbox.signing import SandboxSigningKey
from gateway.sandbox.svarut_app import SvarUtService
from gateway.sandbox.svarut_peer import MunicipalityPeer
from gateway.sandbox.svarut_store import (
    Party,
    SvarUtStore,
    account_id_for,
    integration_id_for,
    password_for,
)
from gateway.trust.policy import SANDBOX_REGISTRY
from gateway.trust.registry import RegistrySigners

log = logging.getLogger(__name__)

@dataclass
class SandboxNetwork:
    """A running sandbox network. `stop()` stops the peers, then the server."""

    server: SandboxServer
    peers: dict[str, AutomaticPeer]
    pki: DevPki
    data_dir: Path
    gateways: dict[str, str]
    organisations: dict[str, str] = field(default_factory=dict)  # orgnr -> name, everyone on the network
    correspondence: CorrespondenceService = field(default_factory=CorrespondenceService)
    svarut: SvarUtService | None = None
    municipalities: dict[str, MunicipalityPeer] = field(default_factory=dict)
    corner2: Corner2Service | None = None  # DPI: Corner 2 with its digital mailbox and print service

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def corner2_url(self) -> str:
        """DPI's Corner 2 API root (`<root>/messages/out`), as the registry's DPI records name it."""
        return f"{self.server.url}/dpi"

    @property
    def print_certificate_url(self) -> str:
        """KRR's anonymous print certificate endpoint (the real one: kontaktregisteret.no/rest/v2/printSertifikat)."""
        return f"{self.server.url}/kontaktregisteret{PRINT_CERTIFICATE_PATH}"

    @property
    def correspondence_url(self) -> str:
        """The DPV correspondence API's root, as `broker_url` is the broker's."""
        return f"{self.server.url}/correspondence/api/v1"

    @property
    def svarut_url(self) -> str:
        return f"{self.server.url}/svarut/api"

    @property
    def svarinn_url(self) -> str:
        return f"{self.server.url}/svarut/tjenester/svarinn"

    def dpf_settings(self, orgnr: str) -> dict[str, Any]:
        """channels.dpf for `orgnr`: its SvarUt account and SvarInn receiving system (passwords in files)."""
        secrets = self.data_dir / "svarut-secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        files = {}
        for what in ("integrasjon", "svarinn"):
            path = secrets / f"{orgnr}.{what}"
            path.write_text(password_for(orgnr, what) + "\n", encoding="utf-8")
            path.chmod(0o600)
            files[what] = str(path)
        return {
            "svarut_url": self.svarut_url,
            "account_id": account_id_for(orgnr),
            "integration_id": integration_id_for(orgnr),
            "integration_password_file": files["integrasjon"],
            "svarinn_url": self.svarinn_url,
            "svarinn_username": orgnr,
            "svarinn_password_file": files["svarinn"],
        }

    @property
    def network_file(self) -> Path:
        return self.data_dir / NETWORK_FILE

    def gateway_settings(self, orgnr: str) -> dict[str, Any]:
        """What a gateway's config.yaml needs to join this network as `orgnr` (paths as strings)."""
        keystore = self.pki.folder / f"{orgnr}.p12"
        if orgnr not in self.organisations or not keystore.exists():
            raise ConfigError(
                f"{orgnr} has no keystore on this sandbox network; the organisations with one are "
                f"{', '.join(sorted(o for o in self.organisations if (self.pki.folder / f'{o}.p12').exists()))}"
            )
        return {
            "network": {
                "environment": "sandbox",
                "service_registry_url": self.server.registry_url,
                "token_url": self.server.token_url,
                "token_audience": self.server.token_audience,
                "client_id": default_client_id(orgnr),  # the sandbox registers MOVE_IP_<orgnr> for everyone
                "altinn_exchange_url": self.server.altinn_exchange_url,
            },
            "channels": {
                "dpo": {
                    "broker_url": self.server.broker_url,
                    # As on Digdir's resource, the broker admits only the organisation's system user.
                    **({"system_user_org": orgnr} if self.server.broker.system_users_only else {}),
                },
                "dpv": {"correspondence_url": self.correspondence_url},
                "dpf": self.dpf_settings(orgnr),
                "dpi": {"corner2_url": self.corner2_url, "print_certificate_url": self.print_certificate_url},
            },
            "keystore": {"pkcs12": str(keystore), "password": P12_PASSWORD},
            "trust": {"ca_bundle": str(self.pki.trust_bundle)},
        }

    def registry_signers(self) -> RegistrySigners:
        """Who signs this network's registry answers, as a gateway on it checks them: the registry's own
        certificate from the dev CA (chained to the PKI's trust bundle)."""
        return RegistrySigners(TrustStore.from_pem_files([self.pki.trust_bundle]), SANDBOX_REGISTRY[0])

    def jwk_settings(self, orgnr: str) -> dict[str, str]:
        """network.jwk_key_id and jwk_private_key of the key registered on `orgnr`'s client (JWK mode)."""
        key_id, path = registered_jwk(self.pki, orgnr)
        return {"jwk_key_id": key_id, "jwk_private_key": str(path)}

    def config_snippet(self, orgnr: str) -> dict[str, Any]:
        """gateway_settings plus the organisation block: the part of config.yaml to paste."""
        return {"organisation": {"orgnr": orgnr, "name": self.organisations[orgnr]}, **self.gateway_settings(orgnr)}

    def describe(self) -> dict[str, Any]:
        """The content of network.yaml."""
        return {
            "url": self.url,
            "token_url": self.server.token_url,
            "token_audience": self.server.token_audience,
            "altinn_exchange_url": self.server.altinn_exchange_url,
            "service_registry_url": self.server.registry_url,
            "broker_url": self.server.broker_url,
            "correspondence_url": self.correspondence_url,
            "svarut_url": self.svarut_url,
            "svarinn_url": self.svarinn_url,
            "corner2_url": self.corner2_url,
            "print_certificate_url": self.print_certificate_url,
            "persons": {person.fnr: {"name": person.name, "reserved": person.reserved,
                                     "mailbox": person.mailbox_address, "notifiable": person.notifiable,
                                     "moved": person.moved} for person in BUILTIN_PERSONS},
            "organisations": {
                orgnr: {"name": name, "role": role_of(orgnr, self)} for orgnr, name in self.organisations.items()
            },
            "gateways": {orgnr: self.config_snippet(orgnr) for orgnr in self.gateways},
            # Keys registered on the gateways' Maskinporten clients, for network.jwk_key_id/jwk_private_key.
            "maskinporten_keys": {orgnr: self.jwk_settings(orgnr) for orgnr in self.gateways},
            "peers": {orgnr: {"name": self.organisations[orgnr], "reply": peer.reply}
                      for orgnr, peer in self.peers.items()},
        }

    def write_network_file(self) -> Path:
        """Write network.yaml atomically (temporary name, fsync, rename)."""
        target = self.network_file
        temp = target.with_name(f".{target.name}.tmp")
        text = "# Written by efm-gateway's sandbox network; rewritten on every start.\n" + yaml.safe_dump(
            self.describe(), sort_keys=False, allow_unicode=True
        )
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        return target

    def stop(self) -> None:
        for municipality in self.municipalities.values():
            municipality.stop()
        for peer in self.peers.values():
            peer.stop()
        self.server.stop()
        self.correspondence.close()

    def __enter__(self) -> SandboxNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def role_of(orgnr: str, network: SandboxNetwork) -> str:
    if orgnr in network.gateways:
        return GATEWAY
    if orgnr in network.peers:
        return PEER
    if orgnr in network.municipalities:
        return MUNICIPALITY
    builtin = BUILTIN_ORGANISATIONS.get(orgnr)
    return builtin.role if builtin else PEER


def start_network(
    data_dir: Path,
    gateways: Mapping[str, str] | None = None,
    peers: Sequence[str] = DEFAULT_PEERS,
    reply: bool = False,
    port: int = 0,
    poll_interval: float = 0.5,
    correspondence: CorrespondenceOptions | None = None,
    faults: FaultPlan | None = None,
    broker: BrokerOptions | None = None,
    extra_organisations: Callable[[DevPki], Sequence[SandboxOrganisation]] | None = None,
    corner2: Corner2Options | None = None,
) -> SandboxNetwork:
    """Start the sandbox network on 127.0.0.1:`port` (0: a free port) with its state in `data_dir`.

    `gateways` maps orgnr -> name of the organisations that run their own gateway (default: the two
    built-in ones); `peers` are the orgnrs answered by an AutomaticPeer. The dev PKI in
    `data_dir/certs` is created or extended with a keystore for each of them. `correspondence` sets
    how the DPV service behaves (default: published at once, read after 3 s, the failing built-in
    organisation failing). `faults` are the server's first fault rules (the peers' own requests go
    through them too). `broker` sets how the DPO broker behaves (default: as the real one, system
    users only and a short virus scan). `extra_organisations` adds registry entries made with the PKI (tests:
    receivers whose record serves an expired, revoked or foreign certificate); nobody answers for them.
    `corner2` sets DPI's timing (when SENDT, the open receipt and returned post come).
    """
    data_dir = Path(data_dir)
    gateways = dict(DEFAULT_GATEWAYS if gateways is None else gateways)
    peers = list(dict.fromkeys(peers))
    for orgnr in gateways:
        check_orgnr(orgnr, f"gateway {orgnr}")
    for orgnr in peers:
        check_orgnr(orgnr, f"peer {orgnr}")
        if orgnr in gateways:
            raise ConfigError(f"sandbox network: {orgnr} cannot be both a gateway and an automatic peer")
    data_dir.mkdir(parents=True, exist_ok=True)
    municipalities = {orgnr: name_of(orgnr) for orgnr in MUNICIPALITIES}
    # The PKI's CRLs and OCSP responder are on the sandbox server: at `port` when one is asked for, else at the
    # port the PKI recorded when it was made (certificates name that address).
    pki = create_dev_pki(data_dir / "certs", {**gateways, **{p: name_of(p) for p in peers}, **municipalities,
                                              KS_SVARUT[0]: KS_SVARUT[1], SANDBOX_REGISTRY[0]: SANDBOX_REGISTRY[1],
                                              MAILBOX_PROVIDER[0]: MAILBOX_PROVIDER[1],
                                              PRINT_PROVIDER[0]: PRINT_PROVIDER[1]},
                         revocation_port=port or None)
    mailbox_identity, print_identity = dev_identity(pki, MAILBOX_PROVIDER[0]), dev_identity(pki, PRINT_PROVIDER[0])
    directory = DpiDirectory(
        {person.fnr: person for person in BUILTIN_PERSONS},
        (pki.folder / f"{MAILBOX_PROVIDER[0]}-cert.pem").read_text(encoding="ascii"),
        (pki.folder / f"{PRINT_PROVIDER[0]}-cert.pem").read_text(encoding="ascii"),
    )
    catalogue, names = build_catalogue(pki, gateways, peers, extra_organisations(pki) if extra_organisations else (),
                                       dpi=directory)
    corner2_service = Corner2Service(mailbox_identity, print_identity, corner2 or Corner2Options())
    correspondence_service = CorrespondenceService(
        correspondence or CorrespondenceOptions(failing_recipients=FAILING_DPV_RECIPIENTS)
    )
    ks_identity = dev_identity(pki, KS_SVARUT[0])
    svarut_parties = {
        orgnr: Party(orgnr, names[orgnr], dev_identity(pki, orgnr).certificate, MUNICIPALITY_LEVELS.get(orgnr, 4))
        for orgnr in [*gateways, *peers, *municipalities]
    }

    def svarut_store(context: SandboxContext) -> SvarUtStore:
        return SvarUtStore(context.data_dir / "svarut", ks_identity, svarut_parties, context.clock)

    svarut_service = SvarUtService(svarut_store)

    def krr_app(context: SandboxContext) -> ASGIApp:
        return krr_print_app(PRINT_PROVIDER[0], directory.print_certificate_pem)

    def pki_app(context: SandboxContext) -> ASGIApp:
        return revocation_app(pki, lambda: datetime.now(UTC))  # real time: gateways check CRLs against theirs

    def server_on(server_port: int) -> SandboxServer:
        return SandboxServer(data_dir / "server", catalogue, port=server_port,
                             extra_apps={"/correspondence": correspondence_service, "/svarut": svarut_service,
                                         "/pki": pki_app, "/dpi": corner2_service,
                                         "/kontaktregisteret": krr_app},
                             faults=faults, broker=broker,
                             signing_key=SandboxSigningKey.from_identity(dev_identity(pki, SANDBOX_REGISTRY[0])))

    server = server_on(port or pki.revocation_port or 0)
    try:
        try:
            server.start()
        except OSError as exc:
            if port or exc.errno != errno.EADDRINUSE:
                raise
            log.warning("the dev PKI's revocation address (port %s) is taken; the sandbox serves on another port, "
                        "and its certificates' CRL and OCSP addresses go unanswered", pki.revocation_port)
            server = server_on(0)
            server.start()
    except BaseException:
        correspondence_service.close()
        raise
    network = SandboxNetwork(server, {}, pki, data_dir, gateways, names, correspondence_service, svarut_service,
                             corner2=corner2_service)
    for orgnr in gateways:
        key_id, key_file = registered_jwk(pki, orgnr)
        # Only its public key is registered (and registered_jwk made the file): no RSA key check needed.
        registered = serialization.load_pem_private_key(key_file.read_bytes(), password=None,
                                                        unsafe_skip_rsa_key_validation=True)
        assert isinstance(registered, rsa.RSAPrivateKey)
        server.grants.register_key(key_id, registered.public_key(), orgnr)
    try:
        for orgnr, name in municipalities.items():
            municipality = MunicipalityPeer(
                orgnr, name, dev_identity(pki, orgnr), ks_identity.certificate, network.svarut_url,
                network.svarinn_url, server.token_url, server.token_audience, data_dir / "municipalities" / orgnr,
                reply=reply, poll_interval=poll_interval,
            )
            network.municipalities[orgnr] = municipality
            municipality.start()
        trust = TrustStore.from_pem_files([pki.trust_bundle])
        for orgnr in peers:
            peer = AutomaticPeer(
                orgnr,
                dev_identity(pki, orgnr),
                trust,
                token_url=server.token_url,
                token_audience=server.token_audience,
                broker_url=server.broker_url,
                registry_url=server.registry_url,
                work_dir=data_dir / "peers" / orgnr,
                reply=reply,
                poll_interval=poll_interval,
                name=names[orgnr],
                system_user=server.broker.system_users_only,
                altinn_exchange_url=server.altinn_exchange_url,
            )
            network.peers[orgnr] = peer
            peer.start()
        network.write_network_file()
    except BaseException:
        network.stop()
        raise
    return network


__all__ = [
    "BUILTIN_ORGANISATIONS",
    "DEFAULT_GATEWAYS",
    "DEFAULT_PEERS",
    "DPO_PROCESSES",
    "DPV_PROCESSES",
    "FAILING_DPV_RECIPIENTS",
    "MUNICIPALITIES",
    "MUNICIPALITY_LEVELS",
    "BuiltinOrganisation",
    "SandboxNetwork",
    "build_catalogue",
    "start_network",
]
