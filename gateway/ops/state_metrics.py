"""Metrics of the daemon's own state, for alerts: its version, our certificate's end, whether each
endpoint answered last time, and each worker's heartbeat (a late one is hung)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.ops.health import Heartbeats
from gateway.ops.httpwatch import HttpOutcomes
from gateway.ops.readiness import CertificateWindow


class StateMetrics(Collector):
    def __init__(
        self,
        certificate: CertificateWindow | None,
        endpoints: Mapping[str, str],
        http_outcomes: HttpOutcomes,
        heartbeats: Heartbeats,
    ) -> None:
        self._certificate = certificate
        self._endpoints = endpoints
        self._http = http_outcomes
        self._heartbeats = heartbeats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        build = GaugeMetricFamily("efm_gateway_build_info", "The running efm-gateway's version (always 1)",
                                  labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        expiry = GaugeMetricFamily(
            "efm_gateway_certificate_expiry_timestamp_seconds",
            "When our own enterprise certificate expires (its notAfter), in seconds since the epoch; "
            "absent without a keystore",
            labels=[],
        )
        if self._certificate is not None:
            expiry.add_metric([], self._certificate.not_after)
        yield expiry
        _errors, last = self._http.snapshot()
        up = GaugeMetricFamily(
            "efm_gateway_endpoint_up",
            "1 when the endpoint answered the last request or probe (an HTTP error below 500 counts), 0 when not",
            labels=["endpoint"],
        )
        for name in sorted(self._endpoints):
            if name in last:
                up.add_metric([name], 1 if last[name].reachable else 0)
        yield up
        late = GaugeMetricFamily(
            "efm_gateway_worker_late", "1 when the worker has been silent past its interval and the grace (hung)",
            labels=["worker"],
        )
        silent = GaugeMetricFamily(
            "efm_gateway_worker_seconds_since_beat", "Seconds since the worker last reported", labels=["worker"]
        )
        for worker in self._heartbeats.workers():
            late.add_metric([worker.name], 1 if worker.late else 0)
            silent.add_metric([worker.name], worker.seconds_since_beat)
        yield late
        yield silent
