"""SIGHUP: which settings of a re-read config.yaml can change in a running daemon, and which need a restart.

Applied live: the log level, every interval, intake's limits and timings, the default lifetime,
retention, the disk floors and the heartbeat grace. Everything else (folders, organisation, keys,
trust, the network's and channels' URLs, their notification defaults, concurrency, the operations
endpoint) is built into the network parts once, so a change to it is named as needing a restart and
the running value stays in force: rebuilding the channels under in-flight sends is not worth the risk.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from gateway.config import ChannelsConfig, Config

LIVE_KEYS = re.compile(
    r"^(logging\.level"
    r"|intake\.(scan_interval_seconds|quiet_period_seconds|incomplete_timeout_seconds|max_drops_per_scan"
    r"|max_drop_bytes)"
    r"|messages\.default_lifetime_hours"
    r"|retention\.\w+"
    r"|network\.send_interval_seconds"
    r"|channels\.\w+\.(inbound_poll_seconds|status_poll_seconds)"
    r"|disk_floor_mb\.\w+"
    r"|ops\.heartbeat_grace_seconds)$"
)
# A key spelled the old way (in network:) lands in its channel's block: the flattened view only sees that.
_SKIPPED = {"source"}


@dataclass(frozen=True)
class ReloadPlan:
    live: dict[str, Any]  # dotted key -> new value, applied now
    needs_restart: tuple[str, ...]  # dotted keys whose new value waits for a restart
    effective: Config  # the running config with the live changes in it


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, ChannelsConfig):  # each channel's block under its key, as config.yaml spells it
        flat_blocks: dict[str, Any] = {}
        for key, block in value.blocks.items():
            flat_blocks.update(flatten(block, f"{prefix}{key}."))
        return flat_blocks
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        flat: dict[str, Any] = {}
        for spec in dataclasses.fields(value):
            flat.update(flatten(getattr(value, spec.name), f"{prefix}{spec.name}."))
        return flat
    return {prefix.rstrip("."): value}


def plan_reload(running: Config, fresh: Config) -> ReloadPlan:
    before, after = flatten(running), flatten(fresh)
    changed = sorted(key for key in after if key not in _SKIPPED and before.get(key) != after[key])
    live = {key: after[key] for key in changed if LIVE_KEYS.match(key)}
    effective = running
    for key, value in live.items():
        effective = _with_value(effective, key.split("."), value)
    return ReloadPlan(live, tuple(key for key in changed if key not in live), effective)


def _with_value(holder: Any, path: list[str], value: Any) -> Any:
    if isinstance(holder, ChannelsConfig):
        return holder.with_block(path[0], _with_value(holder.blocks[path[0]], path[1:], value))
    if len(path) == 1:
        return dataclasses.replace(holder, **{path[0]: value})
    return dataclasses.replace(holder, **{path[0]: _with_value(getattr(holder, path[0]), path[1:], value)})
