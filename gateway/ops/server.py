"""The daemon's HTTP listeners, with uvicorn in a background thread: the operations endpoint (/metrics in
the Prometheus text format, /healthz and /readyz as JSON) and the operator page's. Each listens on
loopback unless config says otherwise and answers only the host names in ops.allowed_hosts."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import ConfigError
from gateway.ops.hostcheck import HostCheck
from gateway.threaded_uvicorn import ThreadedUvicorn

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
Report = Callable[[], tuple[bool, dict[str, Any]]]


def ops_routes(
    registry: CollectorRegistry, health: Report, readiness: Report, before_scrape: Callable[[], None] | None = None
) -> list[BaseRoute]:
    """/metrics; /healthz (alive: every worker reports) and /readyz (able to work), 200 or 503 with JSON."""

    async def metrics(_request: Request) -> Response:
        def scrape() -> bytes:
            if before_scrape is not None:
                before_scrape()
            return generate_latest(registry)

        body = await asyncio.to_thread(scrape)  # SQL and disk calls: off the event loop
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def report_route(report: Report) -> Callable[[Request], Any]:
        async def answer(_request: Request) -> Response:
            good, body = await asyncio.to_thread(report)
            return JSONResponse(body, status_code=200 if good else 503, headers={"Cache-Control": "no-store"})

        return answer

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", report_route(health), methods=["GET"]),
        Route("/readyz", report_route(readiness), methods=["GET"]),
    ]


class HttpListener:
    """One address and port, its routes behind the Host check. `keys` name its settings in error messages."""

    def __init__(
        self,
        address: str,
        port: int,
        routes: Sequence[BaseRoute],
        allowed_hosts: frozenset[str],
        keys: tuple[str, str] = ("ops.address", "ops.port"),
        switch: str = "turn the endpoint off with ops.enabled: false",
        name: str = "ops-http",
    ) -> None:
        self.address = address
        self.port = port
        self._routes = list(routes)
        self._allowed_hosts = allowed_hosts
        self._keys = keys
        self._switch = switch
        self._name = name
        self._server: ThreadedUvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.address, self.port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"{'/'.join(self._keys)}: cannot listen on {self.address}:{self.port} ({exc.strerror}); "
                f"choose a free port (or 0 for any) or {self._switch}"
            ) from None
        listener.listen(64)
        self.port = listener.getsockname()[1]
        app = HostCheck(Starlette(routes=self._routes), self._allowed_hosts)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        ready = threading.Event()
        self._server = ThreadedUvicorn(config, ready)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name=self._name, daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise ConfigError(f"{'/'.join(self._keys)}: {self.base_url} did not start within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
