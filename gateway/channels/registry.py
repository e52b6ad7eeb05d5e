"""The channels this gateway knows, and the adapters built from their config blocks: `{name: adapter}`.

Each channel package brings one `ChannelKind` (gateway/channels/kind.py): its settings block, builder, probe,
environment rows, routing answer, sidecar options and business types. `KINDS` lists them by their config key;
`register` adds one from outside this package (a channel defined elsewhere plugs in the same way, before
config.yaml is read).
By convention a block of a two-way channel has `inbound_poll_seconds`, and one of a channel whose statuses come
by polling has `status_poll_seconds` and `status_batch`: the wiring schedules those jobs from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.channels.base import Channel
from gateway.channels.dpf.kind import KIND as DPF
from gateway.channels.dpi.kind import KIND as DPI
from gateway.channels.dpo.kind import KIND as DPO
from gateway.channels.dpo.kind import dpo_system_user
from gateway.channels.dpv.kind import KIND as DPV
from gateway.channels.kind import ChannelKind, ChannelTools, read_secret
from gateway.errors import ConfigError
from gateway.formats.business import register_business, unregister_business

__all__ = [
    "KINDS",
    "ChannelKind",
    "ChannelTools",
    "build_channels",
    "default_preference",
    "dpo_system_user",
    "kind_named",
    "read_secret",
    "register",
    "registry_scopes",
    "unregister",
]

KINDS: dict[str, ChannelKind] = {kind.key: kind for kind in (DPO, DPV, DPF, DPI)}
# The SBD reads and writes the built-in channels' business types from here on (gateway/channels/__init__.py
# imports this module, so whoever imports any channel module has them).
for _kind in KINDS.values():
    register_business(*_kind.business)


def register(kind: ChannelKind) -> None:
    """Add a channel kind (its key not taken yet) and its business types; config.yaml read after this knows its
    block, and SBDs of its types are read and written."""
    if kind.key in KINDS or any(known.name == kind.name for known in KINDS.values()):
        raise ConfigError(f"a channel named {kind.name} (channels.{kind.key}) is known already")
    try:
        register_business(*kind.business)
    except ValueError as exc:
        raise ConfigError(f"channel {kind.name} cannot be added: {exc}") from None
    KINDS[kind.key] = kind


def unregister(key: str) -> None:
    """Forget a channel kind added with `register`, and its business types."""
    kind = KINDS.pop(key, None)
    if kind is not None:
        unregister_business(*kind.business)


def kind_named(name: str) -> ChannelKind | None:
    """The kind whose channel name (as in service records and status files) is `name`."""
    return next((kind for kind in KINDS.values() if kind.name == name.upper()), None)


def default_preference(receivers: str) -> tuple[str, ...]:
    """The channels' own order for `receivers` (organisations, persons): each kind ranks itself."""
    ranked = [(kind.routing.rank[receivers], kind.name) for kind in KINDS.values()
              if kind.routing is not None and receivers in kind.routing.rank]
    return tuple(name for _rank, name in sorted(ranked))


def registry_scopes(blocks: Mapping[str, Any]) -> tuple[str, ...]:
    """The service registry's scopes for the enabled channels (the reference's eformidling:dpX per channel)."""
    return tuple(dict.fromkeys(KINDS[name].registry_scope for name in blocks)) or (DPO.registry_scope,)


def build_channels(blocks: Mapping[str, Any], tools: ChannelTools) -> dict[str, Channel]:
    """The adapters for the enabled channel blocks, by channel name."""
    built: dict[str, Channel] = {}
    for key, block in blocks.items():
        kind = KINDS[key]
        if kind.build is None:
            continue  # known for routing only: its messages fail as not enabled
        built[kind.name] = kind.build(block, tools)
    return built
