"""The nodes that share the journal, as operators see them (`efm-gateway status --nodes`, the metrics, the operator
page): each node's name, host, pid, last heartbeat and its age, and whether it is live, lapsed or stopped.

Read from the registry's table (gateway.journal.nodes) on any read-only connection: a node is live while its
heartbeat is younger than the registry's lease; lapsed when it is older and the node never said it stopped (a
node killed, paused, or cut off from the database); stopped when it left cleanly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.journal.nodes import LEASE_SECONDS, NodeRow

NODES_SQL = "SELECT name, instance, host, pid, started_at, heartbeat_at, stopped_at FROM nodes ORDER BY name"


@dataclass(frozen=True)
class NodeStanding:
    row: NodeRow
    age_seconds: float  # since the last heartbeat
    state: str  # "live", "lapsed" or "stopped"

    @property
    def live(self) -> bool:
        return self.state == "live"


def standings(rows: list[tuple], now: float, lease_seconds: float = LEASE_SECONDS) -> list[NodeStanding]:
    found = []
    for values in rows:
        row = NodeRow(*values)
        state = "stopped" if row.stopped_at is not None else "live" if row.live(now, lease_seconds) else "lapsed"
        found.append(NodeStanding(row, max(0.0, now - row.heartbeat_at), state))
    return found


def read_nodes(query: Callable[[str], list[tuple]], now: float) -> list[NodeStanding]:
    """The registry's nodes by name; `query` runs one SQL statement on a read-only connection."""
    return standings(query(NODES_SQL), now)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def nodes_table(nodes: list[NodeStanding]) -> list[str]:
    """`efm-gateway status --nodes` as text: a line per node, then a count."""
    if not nodes:
        return ["no node has run on this journal yet"]
    header = ("node", "host", "pid", "last heartbeat (UTC)", "age", "state")
    rows = [(n.row.name, n.row.host, str(n.row.pid), _when(n.row.heartbeat_at), age_text(n.age_seconds), n.state)
            for n in nodes]
    widths = [max(len(line[column]) for line in (header, *rows)) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in (header, *rows)]
    live = sum(1 for n in nodes if n.live)
    lines.append(f"{live} of {len(nodes)} node(s) live (a heartbeat within {LEASE_SECONDS:g} s)")
    return lines


def nodes_json(nodes: list[NodeStanding]) -> dict[str, Any]:
    """`efm-gateway status --nodes --json`."""
    return {
        "lease_seconds": LEASE_SECONDS,
        "live": sum(1 for n in nodes if n.live),
        "nodes": [
            {
                "name": n.row.name, "host": n.row.host, "pid": n.row.pid, "state": n.state,
                "started_at": _iso(n.row.started_at), "last_heartbeat": _iso(n.row.heartbeat_at),
                "heartbeat_age_seconds": round(n.age_seconds, 1), "stopped_at": _iso(n.row.stopped_at),
            }
            for n in nodes
        ],
    }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
