"""The operations endpoint of one daemon: its metrics registry, /healthz's and /readyz's reports, its
listener, and the operator page's listener when ops.operator_page is on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector

from gateway.config import Config
from gateway.credentials import load_identity
from gateway.journal.overview import JournalView
from gateway.journal.store import Journal
from gateway.operator.journal_source import journal_source
from gateway.ops.checks import endpoint_names
from gateway.ops.disk import MIB, folder_space
from gateway.ops.health import Heartbeats
from gateway.ops.httpwatch import HttpOutcomes
from gateway.ops.metrics import EventFeed, JournalMetrics, PartsMetrics, commit_histogram
from gateway.ops.page import page_routes
from gateway.ops.readiness import CertificateWindow, Check, readiness
from gateway.ops.server import HttpListener, ops_routes
from gateway.ops.state_metrics import StateMetrics

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")

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
        self.endpoints = endpoint_names(config)
        self.http_outcomes = HttpOutcomes(self.endpoints)
        self.certificate = _certificate_window(config)
        self.registry = CollectorRegistry(auto_describe=False)
        self._journal_metrics = JournalMetrics(journal_source(config))
        self.registry.register(self._journal_metrics)
        self._events = EventFeed(self._journal_metrics, self.registry)
        commits = commit_histogram(self.registry)
        daemon.journal.on_commit = commits.observe
        self.registry.register(PartsMetrics(lambda: daemon.config, self.http_outcomes, self._registry_counts))
        self.registry.register(
            StateMetrics(self.certificate, self.endpoints, self.http_outcomes, daemon.heartbeats)
        )
        ProcessCollector(registry=self.registry)  # process_*: CPU, resident memory, open fds, start time
        hosts = config.ops.hosts_answered()
        self.server = HttpListener(
            config.ops.address, config.ops.port,
            ops_routes(self.registry, self.health, self.readiness, self._events.feed), hosts,
        )
        self.page: HttpListener | None = None
        self._page_view: JournalView | None = None
        if config.ops.operator_page:
            # A read-only view of its own: the page's requests never wait on the daemon's writer.
            self._page_view = JournalView(journal_source(config), live=True)
            self.page = HttpListener(
                config.ops.operator_address, config.ops.operator_port, page_routes(
                    self._page_view, nodes=lambda: self._journal_metrics.nodes(time.time())
                ), hosts,
                keys=("ops.operator_address", "ops.operator_port"),
                switch="turn the page off with ops.operator_page: false", name="operator-page",
            )

    def _registry_counts(self) -> tuple[int, int]:
        network = self.daemon.network
        registry = network.registry if network else None
        return (registry.cache_hits, registry.cache_misses) if registry else (0, 0)

    def start(self) -> None:
        self.server.start()
        base = self.server.base_url
        log.info("operations endpoint: metrics on %s/metrics, health on %s/healthz, readiness on %s/readyz",
                 base, base, base)
        _warn_if_open("ops.address", self.server.address, "the message counts and health")
        if self.page is not None:
            try:
                self.page.start()
            except Exception:
                self.server.stop()
                raise
            log.info("operator page on %s/", self.page.base_url)
            _warn_if_open("ops.operator_address", self.page.address, "who sends what to whom")

    def stop(self) -> None:
        if self.page is not None:
            self.page.stop()
        self.server.stop()
        self._journal_metrics.close()
        if self._page_view is not None:
            self._page_view.close()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        _errors, last = self.http_outcomes.snapshot()
        journal = self.daemon.journal
        answers = None if journal is None else Check(not journal.outage.down, journal.outage.detail)
        return readiness(self.endpoints, last, folder_space(self.daemon.config), self.certificate, time.time(),
                         answers)

    def health(self) -> tuple[bool, dict[str, Any]]:
        daemon = self.daemon
        workers = daemon.heartbeats.workers()
        late = [worker.name for worker in workers if worker.late]
        troubled = [worker.name for worker in workers if worker.trouble]
        spaces = folder_space(daemon.config)
        low = [space.key for space in spaces if space.below_floor]
        _errors, last = self.http_outcomes.snapshot()
        now = time.time()
        report = {
            "healthy": not late and not troubled,
            "late_workers": late,
            "troubled_workers": troubled,
            "workers": {
                worker.name: {
                    "seconds_since_beat": round(worker.seconds_since_beat, 3),
                    "interval_seconds": worker.interval,
                    "late": worker.late,
                    "trouble": worker.trouble,
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
        return not late and not troubled, report


def _certificate_window(config: Config) -> CertificateWindow | None:
    """Our certificate as the daemon loaded it at start (a new one takes a restart)."""
    if not config.keystore.configured:
        return None
    certificate = load_identity(config, datetime.now(UTC)).certificate
    return CertificateWindow(
        certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp(),
        certificate.subject.rfc4514_string(),
    )


def _warn_if_open(key: str, address: str, what: str) -> None:
    if address not in LOOPBACK:
        log.warning(
            "%s is %s, not loopback: anyone who can reach it sees %s; only the names in ops.allowed_hosts are "
            "answered", key, address, what,
        )
