"""The node registry: every gateway that shares the journal holds a name (node.name, by default its host name)
with a heartbeat row. Two nodes with the same live name refuse to run: the second one stops at its start with
one line that says who holds the name. A name whose heartbeat is older than the lease is free again, and so is
one whose holder was a process on this host that is gone (a node killed with -9 starts again at once).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.errors import JournalError
from gateway.journal.engine import row_lock
from gateway.journal.store import Journal

LEASE_SECONDS = 30.0  # a node that has not beaten its heart for this long counts as gone

_COLUMNS = "name, instance, host, pid, started_at, heartbeat_at, stopped_at"


@dataclass(frozen=True)
class NodeRow:
    name: str
    instance: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None

    def live(self, now: float, lease_seconds: float) -> bool:
        return self.stopped_at is None and self.heartbeat_at > now - lease_seconds


class NodeNameTaken(JournalError):
    """Another node holds this node's name."""


class NodeRegistry:
    """This node's row in the registry, from join() to leave()."""

    def __init__(self, journal: Journal, name: str, clock: Clock, lease_seconds: float = LEASE_SECONDS) -> None:
        self.journal = journal
        self.name = name
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.instance = uuid.uuid4().hex  # this run of the node: a restarted node is a new instance
        self.host = socket.gethostname()

    def join(self) -> None:
        """Take the name, or raise NodeNameTaken when a live node holds it."""
        now = self.clock.now().timestamp()
        lock = row_lock(self.journal.engine)
        with self.journal.transaction():
            rows = self.journal.query(f"SELECT {_COLUMNS} FROM nodes WHERE name = ?{lock}", (self.name,))  # noqa: S608
            holder = NodeRow(*rows[0]) if rows else None
            if holder is not None and holder.live(now, self.lease_seconds) and not self._gone(holder):
                raise NodeNameTaken(
                    f"another efm-gateway node named {self.name!r} is running (on {holder.host}, pid {holder.pid}, "
                    f"last heartbeat {max(0.0, now - holder.heartbeat_at):.0f} s ago); give this one its own "
                    "node.name, or stop that one first"
                )
            self.journal.execute(
                f"INSERT INTO nodes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (name) DO UPDATE SET "  # noqa: S608
                "instance = excluded.instance, host = excluded.host, pid = excluded.pid, "
                "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
                (self.name, self.instance, self.host, os.getpid(), now, now),
            )

    def _gone(self, holder: NodeRow) -> bool:
        """A holder on this host whose process no longer runs (a node killed with -9, started again)."""
        if holder.host != self.host or holder.pid == os.getpid():
            return False
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def beat(self) -> None:
        """The heartbeat; raises NodeNameTaken when another node took the name over (this one's lapsed)."""
        changed = self.journal.execute(
            "UPDATE nodes SET heartbeat_at = ? WHERE name = ? AND instance = ? AND stopped_at IS NULL",
            (self.clock.now().timestamp(), self.name, self.instance),
        )
        if changed != 1:
            raise NodeNameTaken(
                f"node {self.name!r} lost its name to another node while its heartbeat lapsed; this one stops"
            )

    def leave(self) -> None:
        """Give the name back (a clean stop): the next node with this name starts at once."""
        self.journal.execute(
            "UPDATE nodes SET stopped_at = ? WHERE name = ? AND instance = ?",
            (self.clock.now().timestamp(), self.name, self.instance),
        )

    def nodes(self) -> list[NodeRow]:
        """Every node the registry knows, by name (for `efm-gateway status --nodes` and the metrics)."""
        return [NodeRow(*row) for row in self.journal.query(f"SELECT {_COLUMNS} FROM nodes ORDER BY name")]  # noqa: S608
