"""Run the real daemon as a child process, as systemd would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.logcheck import assert_clean_log
from tests.tools import machine_reason, require_tool

RUNNING = "efm-gateway is running for organisation"  # the daemon's line once it has started (gateway/daemon.py)


class DaemonProcess:
    """`efm-gateway run` as a child process. `stop()` fails the test when the log holds a traceback or
    an ERROR line that no pattern in `allowed_log` matches (see tests/logcheck.py)."""

    def __init__(
        self, config: Path, log: Path, allowed_log: Iterable[str] = (), without_dac: bool = False
    ) -> None:
        self.config = config
        self.log = log
        self.allowed_log = tuple(allowed_log)
        # Run as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: file permissions bind it like a
        # service account (see without_dac_command).
        self.without_dac = without_dac
        self.process: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        command = [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)]
        if self.without_dac:
            command = without_dac_command(command)
        self.process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
        )
        handle.close()
        return self

    def start_running(self, timeout: float = 120) -> DaemonProcess:
        """Start, and wait until the daemon says it runs (its folders made, its loops started): a kill meant for
        a daemon at work must not find one still importing (a start takes seconds on a loaded machine)."""
        before = self.running_lines()
        self.start()
        wait_for(lambda: self.running_lines() > before or not self.alive(), timeout, interval=0.2,
                 message=f"the daemon of {self.config} running")
        assert self.alive(), f"the daemon stopped at its start:\n{self.log.read_text(errors='replace')[-3000:]}"
        return self

    def running_lines(self) -> int:
        """How often the log says a daemon began to run (over all the starts that share it)."""
        return self.log.read_text(errors="replace").count(RUNNING) if self.log.exists() else 0

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, check_log: bool = True) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        if check_log:
            self.check_log()
        return self.process.returncode

    def check_log(self) -> None:
        assert_clean_log(self.log, self.allowed_log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def without_dac_command(command: list[str]) -> list[str]:
    """`command` run by root without the capabilities that override file permissions.

    Root's own Python installation stays readable (it is root's), while files the test makes with
    mode 000, or folders it gives to another owner, are closed to the process as to a service account.
    """
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *command]


def without_dac_problem() -> str | None:
    """Why permission cases cannot run here (no setpriv, not root, capabilities not droppable), or None."""
    import tempfile

    if os.geteuid() != 0:
        return machine_reason("not running as root: the permission cases drop root's capabilities with setpriv")
    require_tool("setpriv", package="util-linux")
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "closed"
        probe.write_text("x")
        probe.chmod(0)
        result = subprocess.run(
            without_dac_command([sys.executable, "-c", f"open({str(probe)!r}).read()"]), capture_output=True
        )
        if result.returncode == 0:
            return machine_reason("setpriv could not drop CAP_DAC_OVERRIDE here (a mode-000 file was still readable)")
        if b"PermissionError" not in result.stderr:
            return machine_reason(f"setpriv does not work here: {result.stderr.decode(errors='replace')[-200:]}")
    return None


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05, message: str = "",
             explain: Callable[[], str] | None = None) -> None:
    """Wait until `condition()`; on timeout fail naming `message`, and what `explain()` says of the state then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    seen = f"; {explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {message or condition}{seen}")


def status_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".xml" and not p.name.startswith("."))


def current_status(path: Path) -> str | None:
    """The current status in the status file at `path`; None while there is no such file. A file that does not
    parse fails the test: status files are replaced atomically, so a reader never sees one half-written."""
    from lxml import etree

    try:
        root = etree.parse(str(path)).getroot()
    except OSError:
        if not path.exists():
            return None
        raise
    except etree.XMLSyntaxError as exc:
        raise AssertionError(f"the status file {path} does not parse: {exc}") from None
    return root.findtext("{urn:efm-gateway:status:1}current")


def env_without_notify() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
