"""The operations endpoint of one daemon: its metrics registry, /healthz's report, and the server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from gateway.config import Config
from gateway.journal.overview import JournalView
from gateway.journal.store import Journal
from gateway.ops.checks import endpoint_names
from gateway.ops.disk import MIB, folder_space
from gateway.ops.health import Heartbeats
from gateway.ops.httpwatch import HttpOutcomes
from gateway.ops.metrics import EventFeed, JournalMetrics, PartsMetrics, commit_histogram
from gateway.ops.page import page_routes
from gateway.ops.server import OpsServer

log = logging.getLogger(__name__)



class DaemonView(Protocol):
    """What the endpoint reads of the running daemon (gateway.daemon.Daemon)."""

    config: Config
    journal: Journal | None
    network: Any
    heartbeats: Heartbeats
    hold_reason: Callable[[], str | None]
    restart_needed: tuple[str, ...]

    def status_line(self) -> str: ...


class OpsEndpoint:
    def __init__(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        config = daemon.config
        assert daemon.journal is not None
        self.http_outcomes = HttpOutcomes(endpoint_names(config))
        self.registry = CollectorRegistry(auto_describe=False)
        self._journal_metrics = JournalMetrics(config.folders.journal_path)
        self.registry.register(self._journal_metrics)
        self._events = EventFeed(self._journal_metrics, self.registry)
        commits = commit_histogram(self.registry)
        daemon.journal.on_commit = commits.observe
        self.registry.register(PartsMetrics(lambda: daemon.config, self.http_outcomes, self._registry_counts))
        self.server = OpsServer(
            config.ops.address, config.ops.port, self.registry, self.health, self._events.feed,
            extra_routes=self._operator_page(),
        )

    def _registry_counts(self) -> tuple[int, int]:
        network = self.daemon.network
        registry = network.registry if network else None
        return (registry.cache_hits, registry.cache_misses) if registry else (0, 0)

    def _operator_page(self) -> list[BaseRoute]:
        # A read-only view of its own: the page's requests never wait on the daemon's writer.
        return page_routes(JournalView(self.daemon.config.folders.journal_path, live=True))

    def start(self) -> None:
        self.server.start()
        base = self.server.base_url
        log.info("operations endpoint: metrics on %s/metrics, health on %s/healthz", base, base)
        if self.server.address not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "ops.address is %s, not loopback: anyone who can reach it sees the message counts and health",
                self.server.address,
            )

    def stop(self) -> None:
        self.server.stop()
        self._journal_metrics.close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        daemon = self.daemon
        workers = daemon.heartbeats.workers()
        late = [worker.name for worker in workers if worker.late]
        spaces = folder_space(daemon.config)
        low = [space.key for space in spaces if space.below_floor]
        _errors, last = self.http_outcomes.snapshot()
        now = time.time()
        report = {
            "healthy": not late,
            "late_workers": late,
            "workers": {
                worker.name: {
                    "seconds_since_beat": round(worker.seconds_since_beat, 3),
                    "interval_seconds": worker.interval,
                    "late": worker.late,
                }
                for worker in workers
            },
            "disk": {
                space.key: {
                    "path": str(space.path),
                    "free_mib": None if space.free_bytes is None else round(space.free_bytes / MIB, 1),
                    "floor_mib": round(space.floor_bytes / MIB, 1),
                    "below_floor": space.below_floor,
                }
                for space in spaces
            },
            "intake_held": daemon.hold_reason() if low else None,
            "channels": {
                name: {
                    "reachable": outcome.reachable, "last": outcome.detail, "seconds_ago": round(now - outcome.at, 1)
                }
                for name, outcome in sorted(last.items())
            },
            "status": daemon.status_line(),
            "restart_needed": list(daemon.restart_needed),
        }
        return not late, report
