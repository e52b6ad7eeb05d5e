"""The operations endpoint: /metrics (Prometheus text format) and /healthz (JSON), with uvicorn in a
background thread. It listens on loopback unless ops.address says otherwise."""

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
from gateway.threaded_uvicorn import ThreadedUvicorn

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class OpsServer:
    def __init__(
        self,
        address: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        before_scrape: Callable[[], None] | None = None,
        extra_routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.address = address
        self.port = port
        self._registry = registry
        self._health = health
        self._before_scrape = before_scrape
        self._routes = [
            Route("/metrics", self._metrics),
            Route("/healthz", self._healthz),
            *extra_routes,
        ]
        self._server: ThreadedUvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    async def _metrics(self, _request: Request) -> Response:
        def scrape() -> bytes:
            if self._before_scrape is not None:
                self._before_scrape()
            return generate_latest(self._registry)

        body = await asyncio.to_thread(scrape)  # SQL and disk calls: off the event loop
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def _healthz(self, _request: Request) -> Response:
        healthy, report = await asyncio.to_thread(self._health)
        return JSONResponse(report, status_code=200 if healthy else 503)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.address, self.port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"ops.address/ops.port: cannot listen on {self.address}:{self.port} ({exc.strerror}); "
                "choose a free port (or 0 for any) or turn the endpoint off with ops.enabled: false"
            ) from None
        listener.listen(64)
        self.port = listener.getsockname()[1]
        app = Starlette(routes=self._routes)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        ready = threading.Event()
        self._server = ThreadedUvicorn(config, ready)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="ops-http", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise ConfigError(f"the operations endpoint on {self.base_url} did not start within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
