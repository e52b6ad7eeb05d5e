"""The sandbox network on loopback: one HTTP server, one app per service.

    /sr      service registry (signed answers)        registry_app.py
    /token   Maskinporten-like token endpoint         token_app.py
    /authentication  the Altinn platform's token exchange  altinn_app.py
    /broker  Altinn-3-broker-like DPO transport       broker_app.py
    /_faults the fault-injection control endpoint     faults.py

`SandboxServer` runs uvicorn in a background thread (the aiosmtpd controller pattern): the same
object serves `efm-gateway sandbox` (through `serve_forever`) and the test fixtures. It listens on
loopback only. Other sandbox services plug in through `extra_apps` without touching this file. Every
app, extra ones included, sits behind the fault-injection middleware (`SandboxServer.faults`). Tests may
watch every answer the apps give (`observe`, observer.py); unobserved, nothing stands in the way.
"""

from __future__ import annotations

import email.utils
import logging
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.clock import Clock, SystemClock
from gateway.sandbox.altinn_app import altinn_platform_app
from gateway.sandbox.auth import AccessTokens
from gateway.sandbox.broker_app import broker_app
from gateway.sandbox.broker_options import BrokerOptions
from gateway.sandbox.broker_store import BrokerStore
from gateway.sandbox.catalogue import SandboxCatalogue
from gateway.sandbox.faults import FaultInjector, FaultMiddleware, FaultPlan, control_route, uvicorn_transport_finder
from gateway.sandbox.observer import Observer, ObservingMiddleware
from gateway.sandbox.registry_app import registry_app
from gateway.sandbox.signing import SandboxSigningKey
from gateway.sandbox.token_app import GrantVerifier, token_app
from gateway.signals import CaughtSignals
from gateway.threaded_uvicorn import ThreadedUvicorn

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
START_TIMEOUT_S = 15.0
KEEP_ALIVE_S = 75


@dataclass(frozen=True)
class SandboxContext:
    """What every sandbox app may need: where it lives, who is on the network, how to check tokens."""

    url: str
    data_dir: Path
    catalogue: SandboxCatalogue
    signing_key: SandboxSigningKey
    access_tokens: AccessTokens
    clock: Clock


class DateHeader:
    """Every answer's Date from the sandbox's own clock, as a real service's comes from its clock: a test that
    sets the sandbox's clock off sees a gateway measure the skew."""

    def __init__(self, app: ASGIApp, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = email.utils.formatdate(self.clock.now().timestamp(), usegmt=True).encode("ascii")
                message = {**message, "headers": [*message.get("headers", []), (b"date", stamp)]}
            await send(message)

        await self.app(scope, receive, dated)


class SandboxServer:
    """The sandbox services on http://127.0.0.1:<port>; `port=0` picks a free port."""

    def __init__(
        self,
        data_dir: Path,
        catalogue: SandboxCatalogue,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        extra_apps: Mapping[str, Callable[[SandboxContext], ASGIApp]] | None = None,
        faults: FaultPlan | None = None,
        broker: BrokerOptions | None = None,
        signing_key: SandboxSigningKey | None = None,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the sandbox listens on loopback only, not on {host!r}")
        self.data_dir = Path(data_dir)
        self.catalogue = catalogue
        self.host = host
        self.port = port
        self.clock = clock or SystemClock()
        self.extra_apps = dict(extra_apps or {})
        self.faults = FaultInjector(faults or FaultPlan())
        self.broker = broker or BrokerOptions()  # the real broker's ways by default
        self.signing_key = signing_key  # None: a self-signed key of its own, made at start
        self.url = ""
        self._server: ThreadedUvicorn | None = None
        self._thread: threading.Thread | None = None
        self._store: BrokerStore | None = None
        self._observer: Observer | None = None
        self._routed: ASGIApp | None = None  # the apps, inside the fault middleware
        self._faulted: FaultMiddleware | None = None

    # Where the services are, for config.yaml and for clients.
    @property
    def token_url(self) -> str:
        return f"{self.url}/token/token"

    @property
    def token_audience(self) -> str:
        return f"{self.url}/token/"

    @property
    def altinn_exchange_url(self) -> str:
        return f"{self.url}/authentication/api/v1/exchange/maskinporten"

    @property
    def registry_url(self) -> str:
        return f"{self.url}/sr"

    @property
    def broker_url(self) -> str:
        return f"{self.url}/broker/api/v1"

    @property
    def faults_url(self) -> str:
        return f"{self.url}/_faults"

    def _open_connections(self) -> list[object]:
        server = self._server
        return list(server.server_state.connections) if server is not None else []

    def _build_app(self) -> ASGIApp:
        signing_key = self.signing_key or SandboxSigningKey.load_or_create(self.data_dir)
        self.signing_key = signing_key
        access_tokens = AccessTokens(signing_key, self.token_audience, self.clock,
                                     altinn_issuer=f"{self.url}/authentication/api/v1/openid/")
        clients = [org.orgnr for org in self.catalogue.organisations if org.certificate_pem]
        self.grants = GrantVerifier.for_organisations(self.catalogue.trusted_ca_pems, self.token_audience, self.clock,
                                                      clients)
        self.access_tokens = access_tokens
        self._store = BrokerStore(self.data_dir / "broker")
        endpoint_urls = {
            "DPO": self.broker_url,
            "DPF": f"{self.url}/svarut",
            "DPV": f"{self.url}/correspondence",
            "DPI": f"{self.url}/dpi",
        }
        context = SandboxContext(
            self.url, self.data_dir, self.catalogue, signing_key, access_tokens, self.clock
        )
        routes = [
            Mount("/sr", registry_app(self.catalogue, signing_key, access_tokens, endpoint_urls)),
            Mount("/token", token_app(self.grants, access_tokens)),
            Mount("/authentication", altinn_platform_app(access_tokens)),
            Mount("/broker", broker_app(self._store, access_tokens, self.catalogue, self.clock, self.broker)),
        ]
        routes += [Mount(prefix, factory(context)) for prefix, factory in self.extra_apps.items()]
        routes.append(control_route(self.faults))
        self._routed = Starlette(routes=routes)
        self._faulted = FaultMiddleware(self._observed(), self.faults, uvicorn_transport_finder(self._open_connections))
        return DateHeader(self._faulted, self.clock)

    def _observed(self) -> ASGIApp:
        assert self._routed is not None
        if self._observer is None:
            return self._routed
        return ObservingMiddleware(self._routed, self._observer)

    def observe(self, observer: Observer | None) -> None:
        """Hand every request the apps answer, with its answer, to `observer` (None: stop watching); before
        or after `start`. The apps' own answers are seen, before any injected fault changes them."""
        self._observer = observer
        if self._faulted is not None:
            self._faulted.app = self._observed()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sandbox server is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the socket says
        # it is TCP, and without it uvicorn's separate head and body writes wait ~40 ms for a delayed ACK.
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        display_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{display_host}:{self.port}"
        try:
            app = self._build_app()
        except BaseException:
            listener.close()
            raise
        ready = threading.Event()
        self.faults.arm_stalls()
        # Idle connections are kept for a while, as real services keep them (uvicorn's 5 s would race
        # clients that keep theirs 5 s too: a request sent on a connection the server is closing).
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=KEEP_ALIVE_S,
            date_header=False,  # DateHeader writes it from the sandbox's clock
        )
        self._server = ThreadedUvicorn(config, ready)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="efm-sandbox", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or not self._thread.is_alive():
            self.stop()
            raise RuntimeError(f"the sandbox server did not start on {self.url}")
        log.info("sandbox network serving on %s", self.url)

    def stop(self) -> None:
        self.faults.release_stalls()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=START_TIMEOUT_S)
        if self._store is not None:
            self._store.close()
        self._server, self._thread, self._store = None, None, None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(
    data_dir: Path, catalogue: SandboxCatalogue, port: int, host: str = "127.0.0.1", faults: FaultPlan | None = None
) -> None:
    """Run the sandbox until SIGTERM or SIGINT, then stop cleanly (for `efm-gateway sandbox`)."""
    caught = CaughtSignals((signal.SIGTERM, signal.SIGINT))  # a handler that set an Event could deadlock
    server = SandboxServer(data_dir, catalogue, host=host, port=port, faults=faults)
    try:
        server.start()
        print(f"sandbox network on {server.url}", flush=True)
        print(f"  token endpoint   {server.token_url} (aud {server.token_audience})", flush=True)
        print(f"  service registry {server.registry_url}", flush=True)
        print(f"  DPO broker       {server.broker_url}", flush=True)
        print(f"  fault rules      {server.faults_url} ({len(server.faults.plan.rules)} in force)", flush=True)
        while not caught.wait(0.5):
            pass
    finally:
        server.stop()
        caught.restore()


__all__ = ["SandboxContext", "SandboxServer", "serve_forever"]
