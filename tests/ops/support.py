"""Real daemons for the operations tests: a NOTIFY_SOCKET to listen on, the ops endpoint, SIGHUP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from tests.foundation.process import DaemonProcess, wait_for

ENDPOINT = re.compile(r"metrics on (http://\S+)/metrics")


class NotifyListener:
    """A real datagram socket as systemd's NOTIFY_SOCKET; collects (monotonic time, message) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._lock = threading.Lock()
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def since(self, moment: float, prefix: str = "") -> list[str]:
        with self._lock:
            return [text for at, text in self.messages if at >= moment and text.startswith(prefix)]

    def last_status(self) -> str | None:
        with self._lock:
            statuses = [text for _, text in self.messages if text.startswith("STATUS=")]
        return statuses[-1] if statuses else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class OpsDaemon(DaemonProcess):
    """`efm-gateway run` with a notify socket and a watchdog period in its environment."""

    def __init__(self, config: Path, log: Path, notify: NotifyListener | None = None,
                 watchdog_usec: int | None = None, allowed_log: tuple[str, ...] = ()) -> None:
        super().__init__(config, log, allowed_log)
        self.notify = notify
        self.watchdog_usec = watchdog_usec

    def start(self) -> OpsDaemon:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.notify.path)
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
                stdout=handle, stderr=subprocess.STDOUT, cwd=self.config.parent, env=env,
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def endpoint(self, timeout: float = 60) -> str:
        found: list[str] = []

        def named() -> bool:
            assert self.alive(), self.text()
            found.extend(ENDPOINT.findall(self.text()))
            return bool(found)

        wait_for(named, timeout, message="the log naming the ops endpoint")
        return found[-1]

    def hup(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def wait_log(self, text: str, timeout: float = 30, after: int = 0) -> None:
        wait_for(lambda: text in self.text()[after:], timeout, message=f"{text!r} in the log")


def healthz(base: str) -> tuple[int, dict]:
    response = httpx.get(f"{base}/healthz", timeout=10)
    return response.status_code, response.json()


def edit_config(path: Path, **sections: dict) -> None:
    """Change keys of config.yaml in place (section by section; None removes a key)."""
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        target = data.setdefault(section, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
