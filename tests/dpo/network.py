"""Real processes for the DPO tests: a shared sandbox network and gateways that join it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.foundation.process import DaemonProcess, wait_for
from tests.logcheck import assert_clean_log

A = "991825827"
B = "910077473"
PEER = "910075918"
FAST = {
    "intake": {"mode": "events", "scan_interval_seconds": 0.5, "quiet_period_seconds": 0.2},
    "network": {"send_interval_seconds": 0.3},
    "channels": {"dpo": {"inbound_poll_seconds": 0.3}, "dpv": {"status_poll_seconds": 0.3}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SandboxProcess:
    """`efm-gateway sandbox` as its own process, shared by the gateways under test."""

    def __init__(self, data: Path, reply: bool = False, allowed_log: tuple[str, ...] = ()) -> None:
        self.data = data
        self.allowed_log = allowed_log
        self.port = free_port()
        self.log = data.parent / "sandbox.log"
        args = [sys.executable, "-m", "gateway.cli", "sandbox", "--data", str(data), "--port", str(self.port)]
        if reply:
            args.append("--reply")
        data.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as handle:
            self.process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
        network_file = data / "network.yaml"
        try:
            wait_for(lambda: network_file.exists() or self.process.poll() is not None, 120, message="sandbox start")
        except AssertionError:
            self.process.kill()  # a sandbox left running would take the CPU from every test after this one
            self.process.wait(timeout=30)
            raise
        assert self.process.poll() is None, self.log.read_text()
        self.network = yaml.safe_load(network_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/broker/_sandbox/stats", timeout=10).json()

    def stop(self) -> None:
        """Stop it; fails the test when its log holds an unexpected traceback or ERROR line."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        assert_clean_log(self.log, self.allowed_log)


def gateway_config(root: Path, sandbox: SandboxProcess, orgnr: str, **overrides: dict) -> Path:
    """A config.yaml for a gateway of `orgnr` on the shared sandbox, every folder under root/var."""
    root.mkdir(parents=True, exist_ok=True)
    snippet = sandbox.network["gateways"][orgnr]
    config = {
        "organisation": snippet["organisation"],
        "folders": {
            "create_missing": True,
            **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")},
        },
        "intake": dict(FAST["intake"]),
        "network": {**snippet["network"], **FAST["network"]},
        "channels": {
            name: {**block, **FAST["channels"].get(name, {})} for name, block in snippet.get("channels", {}).items()
        },
        "keystore": snippet["keystore"],
        "trust": snippet["trust"],
    }
    for section, values in overrides.items():
        target = config.setdefault(section, {})
        for key, value in values.items():
            # channels.<name> blocks merge: an override of a poll interval keeps the channel's URL
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Gateway:
    def __init__(self, root: Path, config: Path, allowed_log: tuple[str, ...] = ()) -> None:
        self.root = root
        self.config = config
        self.var = root / "var"
        self.allowed_log = allowed_log
        self.process = DaemonProcess(config, root / "daemon.log", allowed_log)

    def start(self) -> Gateway:
        """Start the daemon and return once it says it runs (or has stopped: a test of a refused start reads its
        log). The lock file is no sign: a killed daemon leaves it, and a crash test's kill must find one at work."""
        process = DaemonProcess(self.config, self.root / "daemon.log", self.allowed_log)
        before = process.running_lines()
        self.process = process.start()
        wait_for(lambda: process.running_lines() > before or not process.alive(), 120, interval=0.2,
                 message="gateway start")
        return self

    @property
    def outbox(self) -> Path:
        return self.var / "outbox"

    @property
    def inbox(self) -> Path:
        return self.var / "inbox"

    @property
    def status(self) -> Path:
        return self.var / "status"

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")


def stop_all(gateways: list[Gateway], sandbox: SandboxProcess) -> None:
    """Stop every gateway, then the sandbox, and only then raise the first failure (a log check): one gateway's
    unexpected ERROR line must not leave the others and the sandbox running for the rest of the suite."""
    failures: list[BaseException] = []
    for stop in [gateway.process.stop for gateway in gateways] + [sandbox.stop]:
        try:
            stop()
        except BaseException as exc:  # raised below, once everything is stopped
            failures.append(exc)
    if failures:
        raise failures[0]


def wait(condition, timeout: float = 30, message: str = "") -> None:
    wait_for(condition, timeout, interval=0.1, message=message)


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)
