"""config.yaml: load, check, and hand down as typed objects.

Every problem stops the daemon with one line naming the key and the fix.
"""

from __future__ import annotations

import grp
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from gateway.channels.registry import KINDS, default_preference
from gateway.config_fields import build_section, unknown_key
from gateway.environments import ENVIRONMENTS, SANDBOX, TABLE, anchors_file
from gateway.errors import ConfigError
from gateway.identifiers import orgnr_problem


@dataclass(frozen=True)
class OrganisationConfig:
    orgnr: str
    name: str = ""


@dataclass(frozen=True)
class FoldersConfig:
    outbox: Path
    status: Path
    inbox: Path
    failed: Path
    sent: Path
    state: Path
    work: Path | None = None
    # Where a received message is assembled before its rename into the inbox: on the inbox's file
    # system (on the share when the inbox is one). The journal stays in `state` on local disk.
    inbox_staging: Path | None = None
    create_missing: bool = False
    # The archive system's group: what the gateway writes for it (status files, received messages, sent
    # originals) is given to this group, readable by it and by no one else. None: the group files get anyway
    # (the process's own, or a setgid folder's).
    group: str | None = None

    def __post_init__(self) -> None:
        if self.inbox_staging is None:
            object.__setattr__(self, "inbox_staging", self.state / "inbox-staging")
        if self.group is not None:
            self.group_id  # noqa: B018 - checked when read: an unknown group stops the start

    @property
    def group_id(self) -> int | None:
        """The numeric id of `group` (a name, or a number), or None."""
        if self.group is None:
            return None
        if self.group.isdigit():
            return int(self.group)
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ConfigError(
                f"folders.group: there is no group {self.group!r} on this machine; create it (groupadd) or name the "
                "archive system's group"
            ) from None

    @property
    def work_area(self) -> Path:
        return self.work or self.state / "work"

    @property
    def journal_path(self) -> Path:
        return self.state / "journal.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.state / "efm-gateway.lock"


@dataclass(frozen=True)
class IntakeConfig:
    mode: str = "auto"
    scan_interval_seconds: float = 5.0
    quiet_period_seconds: float = 2.0
    incomplete_timeout_seconds: float = 600.0
    max_drops_per_scan: int = 500
    max_drop_bytes: int = 1 << 30
    # The official arkivmelding.xsd (with its metadatakatalog.xsd beside it): supplied arkivmelding.xml
    # files are validated against it. Not shipped with the gateway; without it only structure and
    # file references are checked.
    arkivmelding_schema: Path | None = None


@dataclass(frozen=True)
class MessagesConfig:
    default_lifetime_hours: float = 24.0
    normalise_retired_prefix: bool = False


@dataclass(frozen=True)
class RetentionConfig:
    sent_days: float = 30.0
    journal_days: float = 90.0
    purge_interval_minutes: float = 60.0


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"  # text: one line with key=value fields; json: one JSON object a line


@dataclass(frozen=True)
class OpsConfig:
    """The operations endpoint: /metrics (Prometheus), /healthz and /readyz, on loopback unless set otherwise;
    and the operator page, on a listener of its own (it shows who sends to whom)."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = 9181  # 0: any free port (the log names the one taken)
    # How long past its own interval a worker may stay silent before it counts as hung.
    heartbeat_grace_seconds: float = 30.0
    operator_page: bool = False
    operator_address: str = "127.0.0.1"
    operator_port: int = 9182
    # The names both listeners answer to (the Host header), against DNS rebinding; empty: their listen
    # addresses, localhost, 127.0.0.1 and ::1.
    allowed_hosts: tuple[str, ...] = ()

    def hosts_answered(self) -> frozenset[str]:
        """allowed_hosts, or the default, in the form `host_of` gives a Host header."""
        names = self.allowed_hosts or (self.address, self.operator_address, "localhost", "127.0.0.1", "::1")
        return frozenset(host_name(name) for name in names)


def host_name(host: str) -> str:
    """A host as compared: lower case, no IPv6 brackets, no trailing dot."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


@dataclass(frozen=True)
class DiskFloorsConfig:
    """Free space (MiB) each folder must keep; under a floor new drops wait in the outbox. 0: no floor."""

    outbox: float = 0.0
    status: float = 0.0
    inbox: float = 0.0
    failed: float = 0.0
    sent: float = 0.0
    state: float = 0.0
    work: float = 0.0
    inbox_staging: float = 0.0


@dataclass(frozen=True)
class KeystoreConfig:
    """The organisation's enterprise certificate and key: a PKCS#12 keystore, or PEM files."""

    pkcs12: Path | None = None
    password: str | None = None
    password_file: Path | None = None
    alias: str | None = None
    key_pem: Path | None = None
    certificate_pem: Path | None = None
    chain_pem: Path | None = None

    @property
    def configured(self) -> bool:
        return self.pkcs12 is not None or self.key_pem is not None


@dataclass(frozen=True)
class TrustConfig:
    """CA certificates (roots and intermediates, PEM) that senders' signatures, receivers' certificates and the
    service registry's signing certificate must chain to, and the rules around them (gateway/trust/)."""

    ca_bundle: Path | None = None
    # A shared IT service that signs for others: signer's orgnr -> the senders it may sign for.
    signing_services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # When neither a certificate's CRL nor its OCSP responder answers: refuse it, or accept it with a warning in
    # the status file. Default: refuse in production, warn in test and the sandbox.
    revocation: str | None = None
    # Whose certificate signs the service registry's answers (its x5c): default Digdir's, 991825827.
    registry_orgnr: str | None = None
    # Instead of the x5c chain: the registry's signing keys pinned, as a JWK set (JSON) or PEM certificates.
    registry_keys: Path | None = None
    # Whose certificate DPF documents are encrypted to: default KS's, 971032146.
    svarut_orgnr: str | None = None
    # A receiver served by another organisation's integration point: receiver orgnr -> the organisations whose
    # certificate may stand for it (beyond what the service record itself says).
    served_by: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # How long a certificate that passed (chain and revocation) is trusted before it is checked again; 0: at
    # every message. A revocation shows within this window at the latest.
    recheck_seconds: float = 60.0


@dataclass(frozen=True)
class NetworkConfig:
    """What every channel shares: the service registry, the token endpoint, HTTP and concurrency."""

    # sandbox, test or production: fills in every endpoint below from gateway/environments.py (each stays
    # overridable) and chooses the trust anchors and the certificate policy.
    environment: str = "sandbox"
    service_registry_url: str | None = None
    token_url: str | None = None
    token_audience: str | None = None  # Maskinporten's issuer; by default the token URL's parent, ending in /
    client_id: str | None = None  # the Maskinporten client's id; required outside the sandbox
    altinn_exchange_url: str | None = None  # Maskinporten token -> Altinn token, for the Altinn channels
    # A key registered on the Maskinporten client (its kid, and the private key as PEM): the Altinn grants
    # name it instead of carrying the certificate, as the reference's JWK mode does for synthetic test
    # organisations that have no enterprise certificate of their own. The rest keep the certificate.
    jwk_key_id: str | None = None
    jwk_private_key: Path | None = None
    # Keys of configurations written before the channels section are taken by the channel that declares them
    # (its settings' `legacy`), not kept here.
    registry_cache_seconds: float = 300.0
    send_interval_seconds: float = 1.0
    # How long a channel pauses after Maskinporten refused our grant (or Altinn our token): asking again at
    # once would only be refused again.
    refusal_pause_seconds: float = 60.0
    http_timeout_seconds: float = 30.0
    max_parallel_sends: int = 4
    # Outbound HTTP (gateway/outbound_http.py): one proxy for http and https, used instead of the proxy
    # environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY); the hosts, domains and CIDR networks
    # that go direct (a comma list, instead of NO_PROXY); extra CAs (PEM) trusted for outbound TLS beside
    # the default ones, for a TLS-inspecting proxy.
    proxy: str | None = None
    no_proxy: str | None = None
    tls_ca_bundle: Path | None = None


class ChannelsConfig:
    """The `channels:` section: one block per channel, each parsed by its channel (gateway/channels/<name>/
    settings.py); a channel with its URL set (and not `enabled: false`) is used. `config.channels.<key>` is the
    block of channel <key>; a channel not in config.yaml has its block's defaults (not configured)."""

    def __init__(self, blocks: Mapping[str, Any] | None = None) -> None:
        given = dict(blocks or {})
        ordered = {key: given.pop(key) if key in given else kind.settings.schema()
                   for key, kind in KINDS.items() if kind.settings is not None}
        object.__setattr__(self, "blocks", {**ordered, **given})

    blocks: dict[str, Any]

    def __getattr__(self, key: str) -> Any:
        blocks = self.__dict__.get("blocks", {})
        if key in blocks:
            return blocks[key]
        raise AttributeError(f"no channel block {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("the channels section is read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelsConfig) and self.blocks == other.blocks

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.blocks)))

    def __repr__(self) -> str:
        return f"ChannelsConfig({self.blocks!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChannelsConfig, (self.blocks,))

    def enabled(self) -> dict[str, Any]:
        """The configured channel blocks by key (as in config.yaml), in the registry's order."""
        return {key: block for key, block in self.blocks.items() if block.configured}

    def with_block(self, key: str, block: Any) -> ChannelsConfig:
        return ChannelsConfig({**self.blocks, key: block})


ORGANISATIONS = "organisations"  # the receiver kinds a preference is given for
PERSONS = "persons"


@dataclass(frozen=True)
class RoutingConfig:
    """The order in which channels are asked whether they can carry a message: per receiver kind, and per
    process where `processes` names one. Empty: the channels' own default order (gateway/channels/)."""

    organisations: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()
    processes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def preference(self, process: str, is_person: bool) -> tuple[str, ...]:
        """The channel names to ask, in order, for a message of `process` to a person or an organisation."""
        if process in self.processes:
            return self.processes[process]
        chosen = self.persons if is_person else self.organisations
        return chosen or default_preference(PERSONS if is_person else ORGANISATIONS)


@dataclass(frozen=True)
class SandboxConfig:
    """Run the built-in sandbox network inside the daemon (no Altinn account, test certificates)."""

    enabled: bool = False
    data: Path | None = None
    port: int = 0
    reply: bool = False
    faults: Path | None = None  # a YAML file of the sandbox's fault rules (gateway/sandbox/faults.py)


@dataclass(frozen=True)
class JournalConfig:
    """Where the journal is: without a url, the SQLite file in folders.state (one node); a postgresql:// URL names
    a database that every node shares. Its password comes from password_file (a file only the service can read,
    or ${CREDENTIALS_DIRECTORY}/<name> with systemd's LoadCredential=), never from the URL in config.yaml."""

    url: str | None = None
    password_file: Path | None = None

    def problem(self) -> str | None:
        """What is wrong with this section, in one line; None when nothing is. Never repeats the URL: it may
        hold the very password it is refused for."""
        if self.url is None:
            return "journal.password_file is set without journal.url; remove it, or add the url" \
                if self.password_file is not None else None
        parts = urlsplit(self.url)
        if parts.scheme not in ("postgresql", "postgres"):
            return ("journal.url must be a postgresql://user@host/database URL (leave it out for the SQLite file "
                    "in folders.state)")
        if parts.password or any(key.strip().lower() == "password" for key, _ in parse_qsl(parts.query)):
            return ("journal.url holds a password: take it out of the URL and put it in a file that journal."
                    "password_file names (under systemd: LoadCredential= and ${CREDENTIALS_DIRECTORY}/<name>), "
                    "so that config.yaml holds no secret")
        return None

    def password(self) -> str | None:
        """The first line of password_file; None without one (libpq may then use ~/.pgpass or a peer login)."""
        if self.password_file is None:
            return None
        try:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"journal.password_file {self.password_file}: cannot read it ({exc.strerror}); give the service "
                "read access to it, or name the right file"
            ) from None
        return lines[0] if lines else ""


@dataclass(frozen=True)
class NodeConfig:
    """This gateway among the nodes that share one journal."""

    name: str | None = None  # unique among the nodes; None: the host name

    @property
    def resolved_name(self) -> str:
        return self.name or socket.gethostname()


@dataclass(frozen=True)
class Config:
    source: Path
    organisation: OrganisationConfig
    folders: FoldersConfig
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    keystore: KeystoreConfig = field(default_factory=KeystoreConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    disk_floor_mb: DiskFloorsConfig = field(default_factory=DiskFloorsConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    node: NodeConfig = field(default_factory=NodeConfig)

    @property
    def network_configured(self) -> bool:
        """A network needs the registry, the token endpoint and any one channel."""
        return bool(self.network.service_registry_url and self.network.token_url and self.channels.enabled())


_SECTIONS: dict[str, type] = {
    "organisation": OrganisationConfig,
    "folders": FoldersConfig,
    "intake": IntakeConfig,
    "messages": MessagesConfig,
    "retention": RetentionConfig,
    "logging": LoggingConfig,
    "keystore": KeystoreConfig,
    "trust": TrustConfig,
    "network": NetworkConfig,
    "channels": ChannelsConfig,
    "routing": RoutingConfig,
    "sandbox": SandboxConfig,
    "ops": OpsConfig,
    "disk_floor_mb": DiskFloorsConfig,
    "journal": JournalConfig,
    "node": NodeConfig,
}
_REQUIRED_SECTIONS = ("organisation", "folders")
_CHOICES = {
    "intake.mode": ("auto", "events", "polling"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "logging.format": ("text", "json"),
    "network.environment": ENVIRONMENTS,
    "trust.revocation": ("refuse", "warn"),
}
_POSITIVE = {
    "intake.scan_interval_seconds",
    "intake.max_drops_per_scan",
    "intake.max_drop_bytes",
    "messages.default_lifetime_hours",
    "retention.purge_interval_minutes",
    "network.send_interval_seconds",
    "network.refusal_pause_seconds",
    "network.http_timeout_seconds",
    "network.max_parallel_sends",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' is given twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path) -> Config:
    """Read and check config.yaml; raises ConfigError with one line naming the key and the fix."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass --config with the path of your config.yaml") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(_SECTIONS)})")
    base = path.resolve().parent
    sections: dict[str, Any] = {}
    raw = _with_environment(path, raw)
    for key in raw:
        if key not in _SECTIONS:
            raise ConfigError(unknown_key(path, str(key), _SECTIONS))
    for name in _REQUIRED_SECTIONS:
        if name not in raw:
            raise ConfigError(f"{path}: section '{name}' is missing; add it (see the README's configuration table)")
    for name, section_type in _SECTIONS.items():
        section_raw = raw.get(name) or {}
        if not isinstance(section_raw, dict):
            raise ConfigError(f"{path}: '{name}' must be a mapping of keys, not {type(section_raw).__name__}")
        if section_type is ChannelsConfig:
            sections[name] = _build_channels(path, base, section_raw, raw.get("network") or {})
        elif section_type is RoutingConfig:
            sections[name] = _build_routing(path, section_raw)
        elif section_type is NetworkConfig:
            legacy = {key for kind in KINDS.values() if kind.settings for key in kind.settings.legacy}
            network_raw = {key: value for key, value in section_raw.items() if key not in legacy}
            sections[name] = build_section(path, base, name, section_type, network_raw, _POSITIVE, _CHOICES)
        else:
            sections[name] = build_section(path, base, name, section_type, section_raw, _POSITIVE, _CHOICES)
    config = Config(source=path.resolve(), **sections)
    problem = orgnr_problem(config.organisation.orgnr)
    if problem:
        raise ConfigError(f"{path}: organisation.orgnr: {problem}; set your own organisation number")
    problem = config.journal.problem()
    if problem:
        raise ConfigError(f"{path}: {problem}")
    _check_combinations(path, config)
    return config


def _with_environment(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the endpoints of network.environment filled in where config.yaml leaves them out.

    Outside the sandbox a channel is used when its block is in config.yaml (and not `enabled: false`);
    the block's URLs come from the table. The trust anchors default to the environment's shipped bundle.
    """
    network_raw = raw.get("network")
    environment = network_raw.get("environment", SANDBOX) if isinstance(network_raw, dict) else SANDBOX
    if environment not in TABLE:
        return raw
    endpoints = TABLE[environment]
    filled = dict(raw)
    network = dict(network_raw or {})
    for key in ("service_registry_url", "token_url", "token_audience", "altinn_exchange_url"):
        network.setdefault(key, getattr(endpoints, key))
    filled["network"] = network
    channels_raw = raw.get("channels")
    if isinstance(channels_raw, dict):
        channels = {}
        for name, block in channels_raw.items():
            if isinstance(block, dict) or block is None:
                block = dict(block or {})
                kind = KINDS.get(name)
                settings = kind.settings if kind is not None else None
                for key, url in (settings.urls.get(environment, {}) if settings else {}).items():
                    if key in settings.url_keys:  # type: ignore[union-attr]
                        block.setdefault(key, url)
            channels[name] = block
        filled["channels"] = channels
    trust = raw.get("trust")
    if trust is None or (isinstance(trust, dict) and "ca_bundle" not in trust):
        filled["trust"] = {**(trust or {}), "ca_bundle": str(anchors_file(environment))}
    if isinstance(raw.get("sandbox"), dict) and raw["sandbox"].get("enabled"):
        raise ConfigError(f"{path}: sandbox.enabled is true but network.environment is {environment}; "
                          "remove one (the sandbox is its own environment)")
    return filled


def _check_combinations(path: Path, config: Config) -> None:
    keystore = config.keystore
    if keystore.pkcs12 and (keystore.key_pem or keystore.certificate_pem):
        raise ConfigError(f"{path}: keystore: give either pkcs12 or key_pem/certificate_pem, not both")
    if keystore.key_pem and not keystore.certificate_pem:
        raise ConfigError(f"{path}: keystore.certificate_pem is missing; key_pem needs its certificate")
    if keystore.pkcs12 and keystore.password is None and keystore.password_file is None:
        raise ConfigError(
            f"{path}: keystore.password (or keystore.password_file) is missing; the PKCS#12 keystore needs it"
        )
    network_urls = ("service_registry_url", "token_url", "token_audience", "altinn_exchange_url")
    urls = {f"network.{key}": getattr(config.network, key) for key in network_urls}
    for key, block in config.channels.blocks.items():
        settings = KINDS[key].settings
        for url_key in settings.url_keys if settings else ():
            urls[f"channels.{key}.{url_key}"] = getattr(block, url_key)
    for dotted, value in urls.items():
        if value is not None and not value.startswith(("https://", "http://")):
            raise ConfigError(f"{path}: {dotted} must be an http(s) URL, not {value!r}")
    for key, block in config.channels.blocks.items():
        settings = KINDS[key].settings
        if settings is not None and settings.check is not None:
            settings.check(str(path), block)
    _check_environment(path, config, urls)
    _check_outbound(path, config.network)
    network = config.network
    channel_urls = list(config.channels.enabled())
    partly = [key for key in ("service_registry_url", "token_url") if getattr(network, key)]
    if (partly or channel_urls) and (len(partly) < 2 or not channel_urls):
        missing = sorted({"service_registry_url", "token_url"} - set(partly))
        examples = [f"channels.{key}.{kind.settings.example_url}" for key, kind in KINDS.items()
                    if kind.settings is not None and kind.settings.example_url]
        what = f"network.{missing[0]}" if missing else f"a channel's URL ({', '.join(examples)})"
        raise ConfigError(
            f"{path}: {what} is missing; a network needs the service registry, the token endpoint and a channel"
        )
    if config.sandbox.enabled and (partly or channel_urls):
        raise ConfigError(
            f"{path}: sandbox.enabled is true but network URLs are set too; remove the network URLs "
            "(the sandbox fills them in) or set sandbox.enabled: false"
        )
    schema_path = config.intake.arkivmelding_schema
    if schema_path is not None and not schema_path.is_file():
        raise ConfigError(
            f"{path}: intake.arkivmelding_schema ({schema_path}) is not a file; give the path of arkivmelding.xsd "
            "(with metadatakatalog.xsd in the same folder), or remove the line"
        )
    if config.sandbox.port < 0 or config.sandbox.port > 65535:
        raise ConfigError(f"{path}: sandbox.port must be 0 (any free port) or a port number up to 65535")
    _check_ops(path, config.ops)


def _check_ops(path: Path, ops: OpsConfig) -> None:
    for key in ("port", "operator_port"):
        if getattr(ops, key) > 65535:
            raise ConfigError(f"{path}: ops.{key} must be 0 (any free port) or a port number up to 65535")
    for key in ("address", "operator_address"):
        if not getattr(ops, key).strip():
            raise ConfigError(f"{path}: ops.{key} is empty; give an address to listen on, such as 127.0.0.1")
    if ops.operator_page and not ops.enabled:
        raise ConfigError(f"{path}: ops.operator_page is true but ops.enabled is false; the page is served by the "
                          "operations endpoint, so set ops.enabled: true too")
    same_place = ops.operator_address == ops.address and ops.operator_port == ops.port != 0
    if ops.operator_page and same_place:
        raise ConfigError(f"{path}: ops.operator_port is ops.port ({ops.port}); give the operator page a port of "
                          "its own (or 0 for any free one)")
    for host in ops.allowed_hosts:
        bare = host_name(host)
        if not bare or any(mark in host for mark in ("/", " ", "@")) or (":" in bare and not _is_ipv6(bare)):
            raise ConfigError(f"{path}: ops.allowed_hosts: {host!r} is not a host name or address; give names "
                              "as a browser or Prometheus writes them in a URL, without scheme, port or path")


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _check_environment(path: Path, config: Config, urls: dict[str, str | None]) -> None:
    network = config.network
    if (network.jwk_key_id is None) != (network.jwk_private_key is None):
        raise ConfigError(f"{path}: network.jwk_key_id and network.jwk_private_key go together; give both (the kid "
                          "registered on the Maskinporten client and its private key) or neither")
    if network.jwk_private_key is not None and not network.jwk_private_key.is_file():
        raise ConfigError(f"{path}: network.jwk_private_key ({network.jwk_private_key}) is not a readable file; give "
                          "the PEM file of the key registered on the Maskinporten client")
    if network.environment != SANDBOX:
        if not network.client_id:
            raise ConfigError(
                f"{path}: network.client_id is missing; Maskinporten knows this integration point by the client id "
                f"Samarbeidsportalen gave its client in {network.environment} (see docs/production.md)"
            )
        for dotted, value in urls.items():
            if value is not None and not value.startswith("https://"):
                raise ConfigError(f"{path}: {dotted} must be an https:// URL in {network.environment}, not {value!r}")
    altinn = [KINDS[key].name for key in config.channels.enabled()
              if (settings := KINDS[key].settings) is not None and settings.needs_altinn_exchange]
    if altinn and config.network_configured and not network.altinn_exchange_url:
        raise ConfigError(
            f"{path}: network.altinn_exchange_url is missing; {' and '.join(altinn)} "
            f"{'call' if len(altinn) > 1 else 'calls'} Altinn with an Altinn token exchanged for the Maskinporten "
            "token there (network.environment fills it in)"
        )


def _check_outbound(path: Path, network: NetworkConfig) -> None:
    if network.proxy is not None:
        try:
            proxy = urlsplit(network.proxy)
            proxy.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            found = "a port that is not a number"
        else:
            found = (
                "no scheme" if "://" not in network.proxy
                else f"the scheme {proxy.scheme!r}" if proxy.scheme not in ("http", "https")
                else "" if proxy.hostname else "no host"
            )
        if found:
            # The value itself is not repeated: it may hold the proxy's password.
            raise ConfigError(
                f"{path}: network.proxy must be an http(s) URL with a host, such as http://proxy.example.no:3128 "
                f"(user:password@ before the host when the proxy asks for them); this one has {found}"
            )
    for entry in (network.no_proxy or "").split(","):
        address, slash, bits = (entry.strip().partition("://")[2] or entry.strip()).partition("/")
        if slash and (address.replace(".", "").isdigit() or ":" in address):
            try:
                ipaddress.ip_network(f"{address}/{bits}", strict=False)
            except ValueError:
                raise ConfigError(
                    f"{path}: network.no_proxy: {entry.strip()!r} is not a network; give hosts, "
                    "domains, IP addresses or CIDR networks such as 10.0.0.0/8, separated by commas"
                ) from None
    bundle = network.tls_ca_bundle
    if bundle is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(bundle))
        except ssl.SSLError:
            raise ConfigError(
                f"{path}: network.tls_ca_bundle ({bundle}) holds no PEM CA certificate; give the CA certificates "
                "as PEM (-----BEGIN CERTIFICATE-----)"
            ) from None
        except OSError:
            raise ConfigError(
                f"{path}: network.tls_ca_bundle ({bundle}) is not a readable file; give the PEM file of the CA "
                "certificates to trust for outbound TLS (such as your TLS-inspecting proxy's), or remove the line"
            ) from None


def _build_channels(path: Path, base: Path, raw: dict[str, Any], network_raw: dict[str, Any]) -> ChannelsConfig:
    """Each block parsed as its channel declares it (gateway/channels/<name>/settings.py)."""
    known = {key: kind.settings for key, kind in KINDS.items() if kind.settings is not None}
    for name, block_raw in raw.items():
        if name not in known:
            raise ConfigError(unknown_key(path, f"channels.{name}", [f"channels.{k}" for k in known]))
        if not isinstance(block_raw, dict):
            raise ConfigError(f"{path}: 'channels.{name}' must be a mapping of keys, not {type(block_raw).__name__}")
    blocks: dict[str, Any] = {}
    for name, settings in known.items():
        block_raw = dict(raw.get(name) or {})
        for legacy, key in settings.legacy.items():
            if network_raw.get(legacy) is not None:
                if key in block_raw:
                    raise ConfigError(
                        f"{path}: network.{legacy} and channels.{name}.{key} are both set; keep channels.{name}.{key}"
                    )
                block_raw[key] = network_raw[legacy]
        prefix = f"channels.{name}"
        blocks[name] = build_section(
            path, base, prefix, settings.schema, block_raw,
            positive={f"{prefix}.{key}" for key in settings.positive},
            choices={f"{prefix}.{key}": words for key, words in settings.choices.items()},
        )
    return ChannelsConfig(blocks)


def _build_routing(path: Path, raw: dict[str, Any]) -> RoutingConfig:
    """routing.organisations, routing.persons: lists of channel names; routing.processes: a process -> such a list."""
    routable = {kind.name for kind in KINDS.values() if kind.routing is not None}

    def order(dotted: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
            raise ConfigError(
                f"{path}: {dotted} must be a list of channel names, such as [{', '.join(sorted(routable))}]"
            )
        names = tuple(name.strip().upper() for name in value)
        for name in names:
            if name not in routable:
                raise ConfigError(f"{path}: {dotted}: no channel is named {name!r}; the channels are "
                                  f"{', '.join(sorted(routable))}")
        if len(set(names)) < len(names):
            raise ConfigError(f"{path}: {dotted} names a channel twice; name each once")
        return names

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in (ORGANISATIONS, PERSONS):
            values[key] = order(f"routing.{key}", value)
        elif key == "processes":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: routing.processes must map a process (urn:no:difi:profile:...) to a list "
                                  "of channel names")
            values[key] = {str(process): order(f"routing.processes.{process}", names)
                           for process, names in value.items()}
        else:
            raise ConfigError(unknown_key(path, f"routing.{key}", ["routing.organisations", "routing.persons",
                                                                   "routing.processes"]))
    return RoutingConfig(**values)
