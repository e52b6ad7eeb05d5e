"""What the network parts' HTTP clients saw: errors by endpoint, kind and status, and the last outcome
of each endpoint (for /healthz's "reachable"). A transport wrapper, so no channel needs a hook."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Outcome:
    reachable: bool
    at: float  # wall clock
    detail: str  # "HTTP 503", "ConnectError", "OK"


class HttpOutcomes:
    """Shared by every client of one daemon. `endpoints` maps a name (dpo, service_registry...) to its URL."""

    def __init__(self, endpoints: Mapping[str, str | None]) -> None:
        # The longest URL first: the broker under the same host as the registry is still the broker.
        self._prefixes = sorted(
            ((url.rstrip("/"), name) for name, url in endpoints.items() if url), key=lambda item: -len(item[0])
        )
        self._lock = threading.Lock()
        self.errors: Counter[tuple[str, str, str]] = Counter()  # (endpoint, kind, status) -> count
        self.last: dict[str, Outcome] = {}

    def endpoint_of(self, url: str) -> str:
        for prefix, name in self._prefixes:
            if url == prefix or url.startswith(prefix + "/") or url.startswith(prefix + "?"):
                return name
        return "other"

    def record(self, url: str, status: int | None, error: BaseException | None) -> None:
        endpoint = self.endpoint_of(url)
        with self._lock:
            if error is not None:
                kind = _kind(error)
                self.errors[(endpoint, kind, "")] += 1
                self.last[endpoint] = Outcome(False, time.time(), type(error).__name__)
            elif status is not None and status >= 400:
                self.errors[(endpoint, "http", str(status))] += 1
                # An answer, even an error, means the service is reachable; 5xx means it is not well.
                self.last[endpoint] = Outcome(status < 500, time.time(), f"HTTP {status}")
            else:
                self.last[endpoint] = Outcome(True, time.time(), "OK")

    def note_probe(self, url: str, reachable: bool, detail: str) -> None:
        """The start-up probe's answer: reachable or not, never counted as an error."""
        with self._lock:
            self.last[self.endpoint_of(url)] = Outcome(reachable, time.time(), detail)

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], dict[str, Outcome]]:
        with self._lock:
            return dict(self.errors), dict(self.last)


def _kind(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connect"
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection_lost"
    return "transport"


class WatchedTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, outcomes: HttpOutcomes) -> None:
        self._inner = inner
        self._outcomes = outcomes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            self._outcomes.record(url, None, exc)
            raise
        self._outcomes.record(url, response.status_code, None)
        return response

    def close(self) -> None:
        self._inner.close()
