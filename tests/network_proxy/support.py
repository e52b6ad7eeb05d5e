"""The parts of the proxy tests: an observer of every request the sandbox network (run in the test
process) receives, and gateway daemons (and check-config) run as child processes with a proxy
environment of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.sandbox.network import SandboxNetwork
from tests.dpo.network import gateway_config
from tests.foundation.process import DaemonProcess, wait_for

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
FAST_DPF = {"inbound_poll_seconds": 0.3, "status_poll_seconds": 0.3}
FAST_DPI = {"status_poll_seconds": 0.5}  # by default every 30 s: a letter's MOTTATT, then its LEST, took a minute


@dataclass(frozen=True)
class Seen:
    """One request the sandbox received."""

    method: str
    path: str
    user_agent: str
    via: str | None
    client_port: int
    from_this_process: bool  # the connection's other end is a socket of the test process (its peers, the proxy)


class SandboxObserver:
    """ASGI middleware around the whole sandbox app (test-only): who asked what, and by which way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
                client_port = (scope.get("client") or ("", 0))[1]
                server_port = (scope.get("server") or ("", 0))[1]
                seen = Seen(scope["method"], scope["path"], headers.get(b"user-agent", ""), headers.get(b"via"),
                            client_port, _socket_here(client_port, server_port))
                with self._lock:
                    self._seen.append(seen)
            await app(scope, receive, send)

        return observed

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def _socket_here(client_port: int, server_port: int) -> bool:
    """Whether this process holds the client end of the connection client_port -> server_port."""
    return any(
        connection.laddr and connection.raddr
        and (connection.laddr.port, connection.raddr.port) == (client_port, server_port)
        for connection in psutil.Process().net_connections(kind="tcp")
    )


def environment_without_proxies(**proxies: str) -> dict[str, str]:
    """This process's environment with every proxy variable (either case) replaced by `proxies`."""
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env.update(proxies)
    return env


def config_for(root: Path, sandbox: SandboxNetwork, orgnr: str, **overrides: dict) -> Path:
    """A config.yaml for a gateway of `orgnr` on `sandbox` (fast intervals, the ops endpoint on)."""
    overrides.setdefault("ops", {"enabled": True, "port": 0})
    channels = overrides.setdefault("channels", {})
    channels["dpf"] = {**FAST_DPF, **channels.get("dpf", {})}
    channels["dpi"] = {**FAST_DPI, **channels.get("dpi", {})}
    return gateway_config(root, SimpleNamespace(network=sandbox.describe()), orgnr, **overrides)


class ProxiedDaemon(DaemonProcess):
    """`efm-gateway run` with an environment of its own (its proxy variables)."""

    def __init__(self, config: Path, log: Path, env: dict[str, str], allowed_log: tuple[str, ...] = ()) -> None:
        super().__init__(config, log, allowed_log)
        self.env = env

    def start(self) -> ProxiedDaemon:
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
                stdout=handle, stderr=subprocess.STDOUT, cwd=self.config.parent, env=self.env,
            )
        return self


class ProxiedGateway:
    def __init__(self, root: Path, config: Path, env: dict[str, str]) -> None:
        self.root = root
        self.var = root / "var"
        self.process = ProxiedDaemon(config, root / "daemon.log", env)

    def start(self) -> ProxiedGateway:
        self.process.start()
        wait_for(lambda: "efm-gateway is running" in self.log() or not self.process.alive(), 60,
                 message="gateway start")
        assert self.process.alive(), self.log()
        return self

    def log(self) -> str:
        path = self.root / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def outbox(self) -> Path:
        return self.var / "outbox"

    @property
    def inbox(self) -> Path:
        return self.var / "inbox"

    @property
    def status(self) -> Path:
        return self.var / "status"


def check_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=120,
    )
