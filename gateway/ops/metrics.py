"""Prometheus metrics, read at scrape time from the journal (cheap SQL on indexed columns) and from
the few counters the running parts keep, so the pipeline needs almost no hooks.

Counts of statuses and the latency histograms are fed incrementally: each scrape reads the status
events committed since the last one (events.id only grows).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.config import Config
from gateway.journal.engine import Connection, Engine
from gateway.journal.nodes import LEASE_SECONDS
from gateway.journal.phases import FINISHED, Phase
from gateway.operator.journal_source import read_connection
from gateway.operator.nodes_view import NodeStanding, read_nodes
from gateway.ops.disk import folder_space
from gateway.ops.httpwatch import HttpOutcomes

log = logging.getLogger(__name__)
OPEN_PHASES = tuple(phase.value for phase in Phase if phase not in FINISHED)
INCOMING_PHASES = frozenset({Phase.RECEIVED, Phase.IN_INBOX, Phase.TAKEN, Phase.QUARANTINED})
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600)
SENT_BY_THE_SENDER = "sent by the sender"  # the receive latency starts at the SBD's creation time
EVENTS_PER_SCRAPE = 100_000  # bounded work: a large backlog of events is observed over several scrapes


class JournalMetrics(Collector):
    """Counts and ages from the journal, on a read-only connection of its own: the SQLite file opened read-only,
    or a reader of the PostgreSQL engine (journal_source.journal_source)."""

    def __init__(self, source: Path | Engine) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | Connection | None = None
        self.readable = True

    def _connection(self) -> sqlite3.Connection | Connection:
        if self._db is None:
            self._db = read_connection(self._source, live=True)
        return self._db

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if not isinstance(self._source, Path):
                self._source.close()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The journal's figures, or none while the journal cannot be read (a PostgreSQL that does not answer):
        efm_gateway_journal_readable says which, and the rest of /metrics is served either way."""
        try:
            families = list(self._journal_families())
        except sqlite3.Error as exc:
            if self.readable:
                log.warning("metrics: the journal cannot be read (%s); its figures are left out until it can", exc)
            self.readable = False
            families = []
        else:
            if not self.readable:
                log.info("metrics: the journal can be read again")
            self.readable = True
        yield GaugeMetricFamily("efm_gateway_journal_readable",
                                "1 when the journal's figures could be read at this scrape, 0 when not",
                                value=1 if self.readable else 0)
        yield from families

    def _journal_families(self) -> Iterable[GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "efm_gateway_messages", "Messages in the journal by direction, channel and phase",
            labels=["direction", "channel", "phase"],
        )
        # (channel, phase) is read from its index alone; a phase says its direction, except `expired`
        # (an outgoing message past its deadline, or an incoming one that arrived after it).
        for channel, phase, count in self.query(
            "SELECT coalesce(channel, ''), phase, count(*) FROM messages GROUP BY channel, phase"
        ):
            if phase != Phase.EXPIRED:
                messages.add_metric([_direction(phase), channel, phase], count)
        for channel, direction, count in self.query(
            "SELECT coalesce(channel, ''), direction, count(*) FROM messages WHERE phase = 'expired' "
            "GROUP BY channel, direction"
        ):
            messages.add_metric([direction, channel, Phase.EXPIRED.value], count)
        yield messages
        depth = GaugeMetricFamily(
            "efm_gateway_queue_depth", "Unfinished messages in each phase of the pipeline", labels=["phase"]
        )
        counts = dict(self.query(
            f"SELECT phase, count(*) FROM messages WHERE phase IN ({','.join('?' * len(OPEN_PHASES))}) GROUP BY phase",  # noqa: S608
            OPEN_PHASES,
        ))
        for phase in OPEN_PHASES:
            depth.add_metric([phase], counts.get(phase, 0))
        yield depth
        now = time.time()
        oldest_unsent = self.query("SELECT min(created_at) FROM messages WHERE phase IN ('accepted', 'sending')")[0][0]
        yield GaugeMetricFamily(
            "efm_gateway_oldest_unsent_age_seconds",
            "Age of the oldest accepted message not yet sent (0 when none waits)",
            value=max(0.0, now - oldest_unsent) if oldest_unsent else 0.0,
        )
        oldest_inbox = self.query("SELECT min(updated_at) FROM messages WHERE phase = 'in_inbox'")[0][0]
        yield GaugeMetricFamily(
            "efm_gateway_oldest_inbox_age_seconds",
            "How long the oldest message in the inbox has waited for the archive system to take it (0 when none)",
            value=max(0.0, now - oldest_inbox) if oldest_inbox else 0.0,
        )
        yield from self._nodes(now)

    def nodes(self, now: float) -> list[NodeStanding]:
        """The registry's nodes (for the metrics and the operator page)."""
        return read_nodes(self.query, now)

    def _nodes(self, now: float) -> Iterable[GaugeMetricFamily]:
        nodes = self.nodes(now)
        age = GaugeMetricFamily(
            "efm_gateway_node_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat (nodes that stopped cleanly are left out)", labels=["node"],
        )
        for node in nodes:
            if node.state != "stopped":
                age.add_metric([node.row.name], node.age_seconds)
        yield age
        yield GaugeMetricFamily(
            "efm_gateway_nodes_live", f"Nodes on this journal with a heartbeat within the lease ({LEASE_SECONDS:g} s)",
            value=sum(1 for node in nodes if node.live),
        )


class EventFeed:
    """Reads the status events committed since the last scrape (events.id only grows) into counters
    and histograms, so no scrape walks the whole journal. They count from the daemon's start.

    Statuses recorded by direction, channel and status; send latency (OPPRETTET → SENDT), delivery
    latency (SENDT → LEVERT), inbox pick-up (INNKOMMENDE_MOTTATT → INNKOMMENDE_LEVERT).
    """

    def __init__(self, journal: JournalMetrics, registry: CollectorRegistry) -> None:
        self._journal = journal
        self._lock = threading.Lock()
        self._after = journal.query("SELECT coalesce(max(id), 0) FROM events")[0][0]
        self.statuses = Counter(
            "efm_gateway_statuses", "Statuses recorded since the start, by direction, channel and status",
            ["direction", "channel", "status"], registry=registry,
        )
        self.send = Histogram(
            "efm_gateway_send_latency_seconds", "From accepted (OPPRETTET) to taken by the channel (SENDT)",
            ["channel"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.delivery = Histogram(
            "efm_gateway_delivery_latency_seconds", "From SENDT to LEVERT at the receiver",
            ["channel"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.receive = Histogram(
            "efm_gateway_receive_latency_seconds",
            "From the sender making a received message (its SBD's creation time) to it being in our inbox",
            ["channel"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.pick_up = Histogram(
            "efm_gateway_inbox_pickup_seconds", "From a received message in the inbox to the archive system taking it",
            ["channel"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self._latencies = {
            "SENDT": ("OPPRETTET", self.send),
            "LEVERT": ("SENDT", self.delivery),
            "INNKOMMENDE_LEVERT": ("INNKOMMENDE_MOTTATT", self.pick_up),
            "INNKOMMENDE_MOTTATT": (SENT_BY_THE_SENDER, self.receive),
        }

    def feed(self) -> None:
        """Take in the events committed since the last scrape; while the journal cannot be read they wait for a later
        one (JournalMetrics says so)."""
        try:
            self._feed()
        except sqlite3.Error:
            return

    def _feed(self) -> None:
        with self._lock:
            rows = self._journal.query(
                "SELECT e.id, e.message, e.status, e.at, m.direction, coalesce(m.channel, '') FROM events e "
                "JOIN messages m ON m.id = e.message WHERE e.id > ? ORDER BY e.id LIMIT ?",
                (self._after, EVENTS_PER_SCRAPE),
            )
            for _row_id, message, status, at, direction, channel in rows:
                self.statuses.labels(direction, channel, status).inc()
                latency = self._latencies.get(status)
                if latency is None:
                    continue
                start_status, histogram = latency
                if start_status == SENT_BY_THE_SENDER:
                    started = self._journal.query(
                        "SELECT json_extract(detail, '$.sent_at') FROM messages WHERE id = ? "
                        "AND json_extract(detail, '$.sent_at') IS NOT NULL", (message,)
                    )
                else:
                    started = self._journal.query(
                        "SELECT at FROM events WHERE message = ? AND status = ?", (message, start_status)
                    )
                if started:
                    seconds = (datetime.fromisoformat(at) - datetime.fromisoformat(started[0][0])).total_seconds()
                    histogram.labels(channel).observe(max(0.0, seconds))
            if rows:
                self._after = rows[-1][0]


def _direction(phase: str) -> str:
    return "in" if phase in INCOMING_PHASES else "out"


class PartsMetrics(Collector):
    """What the running parts count: registry cache, HTTP errors, journal commits, free disk."""

    def __init__(
        self,
        config_now: Callable[[], Config],
        http_outcomes: HttpOutcomes | None,
        registry_counts: Callable[[], tuple[int, int]] | None,
    ) -> None:
        self._config_now = config_now
        self._http = http_outcomes
        self._registry_counts = registry_counts

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        if self._registry_counts is not None:
            hits, misses = self._registry_counts()
            lookups = CounterMetricFamily(
                "efm_gateway_registry_cache_lookups", "Service-registry look-ups, answered from the cache or not",
                labels=["result"],
            )
            lookups.add_metric(["hit"], hits)
            lookups.add_metric(["miss"], misses)
            yield lookups
        if self._http is not None:
            errors, _last = self._http.snapshot()
            family = CounterMetricFamily(
                "efm_gateway_channel_errors",
                "Failed HTTP exchanges by endpoint (service_registry, token, each channel's own), kind and HTTP status",
                labels=["endpoint", "kind", "status"],
            )
            for (endpoint, kind, status), count in sorted(errors.items()):
                family.add_metric([endpoint, kind, status], count)
            yield family
        free = GaugeMetricFamily(
            "efm_gateway_disk_free_bytes", "Free space on each folder's file system", labels=["folder"]
        )
        floor = GaugeMetricFamily(
            "efm_gateway_disk_floor_bytes", "The configured floor of free space per folder (0: none)", labels=["folder"]
        )
        for space in folder_space(self._config_now()):
            if space.free_bytes is not None:
                free.add_metric([space.key], space.free_bytes)
            floor.add_metric([space.key], space.floor_bytes)
        yield free
        yield floor


def commit_histogram(registry: CollectorRegistry) -> Histogram:
    """For Journal.on_commit: each COMMIT's duration (one fsync of the WAL)."""
    return Histogram(
        "efm_gateway_journal_commit_seconds", "Duration of each journal COMMIT (an fsync)",
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
    )
