"""What a channel brings to the gateway, as one value: `ChannelKind`.

A channel package (gateway/channels/<name>/) exports one `KIND`; the registry lists them. From it config.yaml's
`channels.<key>:` block is parsed (`settings`), the environment table gets its rows (`urls`), the operations
endpoint its endpoints, the sidecar its options block (`options`), routing its answer to "can you carry this
message to this receiver, and why" (`routing`), the SBD its business types (`business`), and the wiring its
adapter (`build`). Nothing outside
gateway/channels/ needs a channel's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.authorisation import Authorisation
from gateway.channels.base import Channel
from gateway.channels.records import ServiceRecord
from gateway.clock import Clock
from gateway.errors import ConfigError
from gateway.formats.business import BusinessPart, BusinessType
from gateway.formats.keys import OrgIdentity, TrustStore
from gateway.trust.receivers import ReceiverTrust


@dataclass(frozen=True)
class ChannelTools:
    """What every channel may use: our identity, the trusted CAs, tokens by use, an HTTP pool and the clock."""

    orgnr: str
    identity: OrgIdentity
    trust: TrustStore
    auth: Authorisation
    http: httpx.Client
    clock: Clock
    normalise_retired_prefix: bool = False
    organisation_name: str = ""  # ours, as receivers' systems show it
    # The certificates we encrypt to, checked before we do (default: the trust store, no one served by another)
    receivers: ReceiverTrust | None = None
    # The daemon's journal, for what a channel must write down before its network forgets it (None: no journal)
    journal: Any = None

    def receiver_trust(self) -> ReceiverTrust:
        return self.receivers or ReceiverTrust(self.trust)


@dataclass(frozen=True)
class SettingsBlock:
    """A channel's `channels.<key>:` block in config.yaml.

    `schema` is a frozen dataclass whose fields are the block's keys (an instance with `configured`: the channel
    is used); `url_keys` the keys that hold URLs (checked as http(s), https outside the sandbox, filled from
    `urls` per environment); `positive` and `choices` keys (without the prefix) that must be above 0 or one of a
    few words; `legacy` the network.<old key> -> <block key> of configurations written before the channels
    section; `check(prefix, block)` the block's own rules, raising ConfigError with `prefix` (the file) first;
    `secret_files` keys of password files, read at check-config and start; `example_url` the key a reader is
    pointed to when no channel is set up at all (None: the channel needs more than a URL).
    """

    schema: type
    url_keys: tuple[str, ...] = ()
    urls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # environment -> {url key: URL}
    positive: frozenset[str] = frozenset()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    legacy: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[str, Any], None] | None = None
    secret_files: tuple[str, ...] = ()
    example_url: str | None = None
    needs_altinn_exchange: bool = False  # its calls carry an Altinn token exchanged for Maskinporten's


@dataclass(frozen=True)
class MessageFacts:
    """What routing knows of a message when it asks a channel: who, which process, which document, how secret;
    and in `earlier` the words of the channels before this one in the preference that could not carry it."""

    receiver: str  # the receiver's identifier, or "the receiver"
    process: str
    document_type: str
    is_person: bool
    security_level: int | None
    earlier: tuple[RouteWords, ...] = ()
    # The sidecar's channel options blocks by channel key: a channel's own may steer its answer (print fallback).
    options: Mapping[str, Any] = field(default_factory=dict)
    # The channels the registry offers the receiver for this message: which records came beside a channel's own
    # can say why (the registry answers a person's vedtak with DPV beside print only for a want of a mailbox).
    offered: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RouteWords:
    """How a channel is named in another channel's reason: `absent` when the receiver has no route on it ("no
    DPO record"), `route` as a route ("DPO")."""

    absent: str
    route: str


@dataclass(frozen=True)
class Verdict:
    """A channel's answer to routing. `carries`: it takes the message on `record`, for `reason`. Otherwise
    `final` stops routing with `reason` as the error (a rule no later channel may get around), and a plain no
    lets the next channel in the preference answer."""

    carries: bool
    reason: str = ""
    record: ServiceRecord | None = None
    is_print: bool = False
    final: bool = False


def record_fits(record: ServiceRecord, facts: MessageFacts, check_document_type: bool = True) -> bool:
    """A record counts for a message when it is for its process, takes its document type and offers its level."""
    if record.process and record.process != facts.process:
        return False
    if check_document_type and record.document_types and facts.document_type not in record.document_types:
        return False
    return not (
        facts.security_level is not None and record.security_level is not None
        and record.security_level < facts.security_level
    )


@dataclass(frozen=True)
class ChannelRouting:
    """A channel's part of routing: which of the receiver's records count (`fits`), and `can_carry` over the
    records of this channel that do (all of them, in the registry's order: a channel may choose among several)."""

    words: RouteWords
    can_carry: Callable[[MessageFacts, Sequence[ServiceRecord]], Verdict]
    # Its place in the default preference per receiver kind (organisations, persons): lower is asked first.
    rank: Mapping[str, int] = field(default_factory=dict)
    fits: Callable[[ServiceRecord, MessageFacts], bool] = record_fits


@dataclass(frozen=True)
class SidecarOptions:
    """A channel's options block in the drop sidecar: `<element>` in the sidecar's namespace, described by
    `schema` (an XSD whose root element it is), which validates it with the sidecar and explains what is wrong
    in the sidecar's words. `read` turns the valid element into the channel's value (kept in Sidecar.options
    under the channel's key), `write` puts a value back into an empty element (the inbox's message.xml), and
    `business` gives the value's parts of the business message (arkivmelding's keyword arguments)."""

    element: str
    schema: Path
    read: Callable[[Any], Any]
    write: Callable[[Any, Any], None]
    business: Callable[[Any], Mapping[str, Any]]


@dataclass(frozen=True)
class ChannelKind:
    name: str  # DPO, DPV, ... as in service records and status files
    key: str  # its block in config.yaml: channels.<key>
    registry_scope: str  # what the service registry asks of a caller that looks receivers up for this channel
    settings: SettingsBlock | None  # None: no block in config.yaml (the channel cannot be enabled yet)
    build: Callable[[Any, ChannelTools], Channel] | None = None  # None: known for routing, not built here yet
    # Each endpoint asked once with the channel's real authentication and nothing changed: (config key, URL,
    # what answered); a ChannelError when it does not answer or refuses.
    probe: Callable[[Any, ChannelTools], list[tuple[str, str, str]]] | None = None
    routing: ChannelRouting | None = None
    options: SidecarOptions | None = None
    # Its business types (a message type of its own, its part of another), registered with the SBD's formats.
    business: tuple[BusinessType | BusinessPart, ...] = ()
    # Senders encrypt what they send us on this channel to the certificate the service registry holds for us:
    # a missing or wrong one there is an error at start, not a warning.
    encrypted_to_registered_certificate: bool = False

    def endpoints(self, block: Any) -> dict[str, str]:
        """The block's URLs by their labels in metrics and /healthz: the channel's key where it has one URL key
        (dpo), else the key and the URL's name (dpf_svarut)."""
        url_keys = self.settings.url_keys if self.settings else ()
        urls = {url_key: getattr(block, url_key) for url_key in url_keys}
        single = len(url_keys) == 1
        return {
            self.key if single else f"{self.key}_{url_key.removesuffix('_url')}": url
            for url_key, url in urls.items() if url
        }

    def endpoint_keys(self, block: Any) -> dict[str, str]:
        """The same URLs by config key (channels.dpo.broker_url)."""
        url_keys = self.settings.url_keys if self.settings else ()
        return {f"channels.{self.key}.{url_key}": getattr(block, url_key)
                for url_key in url_keys if getattr(block, url_key)}


def secret_paths(kind: ChannelKind, block: Any) -> list[tuple[str, Path]]:
    """The block's password files as (config key, path), those that are set."""
    secret_files = kind.settings.secret_files if kind.settings else ()
    return [(f"channels.{kind.key}.{key}", getattr(block, key)) for key in secret_files
            if getattr(block, key) is not None]


def read_secret(path: Any, key: str) -> str:
    """A password alone in a file (a systemd credential, say); ConfigError naming `key` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{key} ({path}) cannot be read ({why}); write the password alone in it, readable by "
                          "the gateway's user only") from None
